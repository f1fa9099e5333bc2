"""Our BLEU / chrF / ROUGE against sacreBLEU and rouge-score on fixed strings."""

import pytest

from tflm.metrics import generation_metrics

sacrebleu = pytest.importorskip("sacrebleu")
rouge_scorer = pytest.importorskip("rouge_score.rouge_scorer")

HYPOTHESES = [
    "Ein Mann fährt mit dem Fahrrad durch die Stadt.",
    "Zwei Hunde spielen im Schnee",
    "Eine Frau, die ein rotes Kleid trägt, tanzt auf der Bühne!",
    "Kinder spielen.",
    "",
    "Der Preis ist 3.50 Euro, nicht 4,20 - oder?",
    "a b c d e f g",
    "&quot;Hallo&quot; sagt der Mann & lacht <skipped>",
    "running runners ran quickly to the stations",
]
REFERENCES = [
    "Ein Mann fährt Fahrrad in der Stadt.",
    "Zwei Hunde spielen im Schnee.",
    "Eine Frau in einem roten Kleid tanzt auf einer Bühne.",
    "Die Kinder spielen draußen im Garten.",
    "Ein leerer Satz.",
    "Der Preis beträgt 3.50 Euro und nicht 4,20-5 Euro.",
    "a b c d e f g",
    "\"Hallo\" sagt der Mann und lacht",
    "the runner runs quickly to the station\nthen he stopped running",
]
SECOND_REFERENCES = [
    "Ein Mann fährt mit einem Fahrrad durch die Stadt.",
    "Zwei Hunde spielen draußen im Schnee.",
    "Eine Frau tanzt im roten Kleid auf der Bühne.",
    "Kinder spielen.",
    "Nichts.",
    "Es kostet 3.50 Euro.",
    "a b c",
    "Der Mann sagt hallo.",
    "runners ran",
]


@pytest.mark.parametrize("references", [[REFERENCES], [REFERENCES, SECOND_REFERENCES]])
def test_corpus_bleu_equals_sacrebleu(references):
    ours = generation_metrics.corpus_bleu(HYPOTHESES, references)
    theirs = sacrebleu.corpus_bleu(HYPOTHESES, references)
    assert ours["bleu"] == pytest.approx(theirs.score, abs=1e-9)
    assert ours["precisions"] == pytest.approx(theirs.precisions, abs=1e-9)
    assert (ours["sys_len"], ours["ref_len"]) == (theirs.sys_len, theirs.ref_len)


@pytest.mark.parametrize("hypotheses,references", [
    (["kein Treffer hier"], ["völlig anders"]),  # No matching n-gram: 0.
    (["Hunde"], ["Hunde spielen im Schnee"]),  # No 2-grams at all: exp smoothing / early break.
    (["ein zwei drei vier fünf"], ["ein zwei drei vier fünf"]),
    (["x y z w v u"], ["x y q w v u t s"]),  # Brevity penalty and zero counts.
])
def test_corpus_bleu_edge_cases(hypotheses, references):
    ours = generation_metrics.corpus_bleu(hypotheses, [references])["bleu"]
    assert ours == pytest.approx(sacrebleu.corpus_bleu(hypotheses, [references]).score, abs=1e-9)


def test_tokenize_13a_matches_sacrebleu():
    from sacrebleu.tokenizers.tokenizer_13a import Tokenizer13a

    for line in HYPOTHESES + REFERENCES:
        assert generation_metrics.tokenize_13a(line) == Tokenizer13a()(line).split()


@pytest.mark.parametrize("references", [[REFERENCES], [REFERENCES, SECOND_REFERENCES]])
def test_corpus_chrf_equals_sacrebleu(references):
    ours = generation_metrics.corpus_chrf(HYPOTHESES, references)
    assert ours == pytest.approx(sacrebleu.corpus_chrf(HYPOTHESES, references).score, abs=1e-9)


@pytest.mark.parametrize("use_stemmer", [True, False])
def test_rouge_equals_rouge_score(use_stemmer):
    types = list(generation_metrics.ROUGE_TYPES)
    scorer = rouge_scorer.RougeScorer(types, use_stemmer=use_stemmer)
    expected = dict.fromkeys(types, 0.0)
    for hypothesis, reference in zip(HYPOTHESES, REFERENCES):
        scores = scorer.score(reference, hypothesis)
        for name in types:
            expected[name] += 100 * scores[name].fmeasure / len(HYPOTHESES)
    ours = generation_metrics.rouge_scores(HYPOTHESES, REFERENCES, use_stemmer=use_stemmer)
    assert ours == pytest.approx(expected, abs=1e-9)


def test_rouge_lsum_differs_from_rouge_l_on_multi_sentence_summaries():
    # The newline split must matter, or Lsum silently equals L.
    hypothesis = "he stopped running\nthe runner runs quickly"
    reference = "the runner runs quickly to the station\nthen he stopped running"
    scores = generation_metrics.rouge_scores([hypothesis], [reference])
    assert scores["rougeLsum"] > scores["rougeL"]


def test_mismatched_lengths_are_rejected():
    with pytest.raises(ValueError, match="2 hypotheses"):
        generation_metrics.corpus_bleu(["a", "b"], [["a"]])
    with pytest.raises(ValueError, match="2 hypotheses"):
        generation_metrics.rouge_scores(["a", "b"], ["a"])
