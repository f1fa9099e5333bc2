"""Corpus BLEU and chrF (as sacreBLEU computes them) and ROUGE (as rouge-score).

Implemented here, in plain Python, so evaluation and serving need neither
package; tests check every score against the reference packages on fixed
strings. Scores are on a 0-100 scale.

- BLEU: sacreBLEU's defaults: 13a tokenization, case-sensitive, 4-grams,
  "exp" smoothing, closest reference length (shorter on ties).
- chrF: sacreBLEU's chrF2: character 6-grams, whitespace removed, beta 2,
  statistics summed over the corpus.
- ROUGE-1/2/L/Lsum: Google's rouge-score with its default tokenizer
  (lowercase, non-alphanumerics become spaces) and the Porter stemmer (nltk's,
  as rouge-score uses). ROUGE-Lsum splits summaries on newlines. Corpus figures
  are the mean per-example F-measure.
"""

import collections
import math
import re

_MAX_ORDER = 4

# sacreBLEU's TokenizerRegexp rules, applied after 13a's unescaping.
_BLEU_RULES = [
    (re.compile(r"([\{-\~\[-\` -\&\(-\+\:-\@\/])"), r" \1 "),
    (re.compile(r"([^0-9])([\.,])"), r"\1 \2 "),
    (re.compile(r"([\.,])([^0-9])"), r" \1 \2"),
    (re.compile(r"([0-9])(-)"), r"\1 \2 "),
]


def tokenize_13a(line):
    line = line.replace("<skipped>", "").replace("-\n", "").replace("\n", " ")
    if "&" in line:
        line = (line.replace("&quot;", '"').replace("&amp;", "&")
                .replace("&lt;", "<").replace("&gt;", ">"))
    line = f" {line} "
    for pattern, replacement in _BLEU_RULES:
        line = pattern.sub(replacement, line)
    return line.split()


def _ngrams(tokens, lowest, highest):
    return collections.Counter(
        tuple(tokens[i:i + n]) for n in range(lowest, highest + 1) for i in range(len(tokens) - n + 1)
    )


def _check_lengths(hypotheses, references):
    for refs in references:
        if len(refs) != len(hypotheses):
            raise ValueError(f"{len(hypotheses)} hypotheses but a reference stream of {len(refs)}")


def corpus_bleu(hypotheses, references):
    """Corpus BLEU of `hypotheses` against one or more reference streams.

    Args:
      hypotheses: list of str.
      references: list of reference streams, each a list of str parallel to
        `hypotheses` (sacreBLEU's `[refs]` convention).
    Returns a dict: bleu, precisions (1-4), brevity_penalty, sys_len, ref_len.
    """
    _check_lengths(hypotheses, references)
    correct, total = [0] * _MAX_ORDER, [0] * _MAX_ORDER
    sys_len = ref_len = 0
    for i, hypothesis in enumerate(hypotheses):
        hyp_tokens = tokenize_13a(hypothesis.rstrip())
        ref_counts, ref_lengths = collections.Counter(), []
        for stream in references:
            tokens = tokenize_13a(stream[i].rstrip())
            ref_lengths.append(len(tokens))
            for ngram, count in _ngrams(tokens, 1, _MAX_ORDER).items():
                ref_counts[ngram] = max(ref_counts[ngram], count)
        sys_len += len(hyp_tokens)
        # Closest reference length; the shorter one on ties.
        ref_len += min(ref_lengths, key=lambda n: (abs(len(hyp_tokens) - n), n))
        for ngram, count in _ngrams(hyp_tokens, 1, _MAX_ORDER).items():
            total[len(ngram) - 1] += count
            correct[len(ngram) - 1] += min(count, ref_counts.get(ngram, 0))
    brevity_penalty = 1.0
    if sys_len < ref_len:
        brevity_penalty = math.exp(1 - ref_len / sys_len) if sys_len > 0 else 0.0
    precisions = [0.0] * _MAX_ORDER
    result = {"brevity_penalty": brevity_penalty, "sys_len": sys_len, "ref_len": ref_len}
    if not any(correct):
        return dict(result, bleu=0.0, precisions=precisions)
    smooth = 1.0
    for n in range(_MAX_ORDER):
        if total[n] == 0:
            break
        if correct[n] == 0:
            smooth *= 2  # sacreBLEU's "exp" smoothing (mteval-v13a).
            precisions[n] = 100.0 / (smooth * total[n])
        else:
            precisions[n] = 100.0 * correct[n] / total[n]
    log_sum = sum(math.log(p) if p > 0 else -9999999999 for p in precisions)
    return dict(result, bleu=brevity_penalty * math.exp(log_sum / _MAX_ORDER), precisions=precisions)


def _char_ngrams(text, order):
    text = "".join(text.split())
    return [collections.Counter(text[i:i + n] for i in range(len(text) - n + 1)) for n in range(1, order + 1)]


def _chrf_from_stats(stats, beta):
    factor = beta ** 2
    precision_sum = recall_sum = 0.0
    effective_order = 0
    for n_hyp, n_ref, n_match in stats:
        if n_hyp > 0 and n_ref > 0:
            precision_sum += n_match / n_hyp
            recall_sum += n_match / n_ref
            effective_order += 1
    if effective_order == 0:
        return 0.0
    precision, recall = precision_sum / effective_order, recall_sum / effective_order
    if precision + recall == 0:
        return 0.0
    return 100 * (1 + factor) * precision * recall / (factor * precision + recall)


def corpus_chrf(hypotheses, references, order=6, beta=2):
    """sacreBLEU's corpus chrF (character n-grams only) in 0-100."""
    _check_lengths(hypotheses, references)
    totals = [[0, 0, 0] for _ in range(order)]
    for i, hypothesis in enumerate(hypotheses):
        hyp_ngrams = _char_ngrams(hypothesis, order)
        best, best_score = None, -1.0
        for stream in references:
            stats = []
            for hyp, ref in zip(hyp_ngrams, _char_ngrams(stream[i], order)):
                match = sum(min(count, ref[g]) for g, count in hyp.items() if g in ref)
                stats.append((sum(hyp.values()), sum(ref.values()), match))
            score = _chrf_from_stats(stats, beta)
            if score > best_score:
                best, best_score = stats, score
        for total, stat in zip(totals, best):
            for k in range(3):
                total[k] += stat[k]
    return _chrf_from_stats(totals, beta)


# -- ROUGE -------------------------------------------------------------------
_NON_ALPHANUMERIC = re.compile(r"[^a-z0-9]+")
_VALID_TOKEN = re.compile(r"^[a-z0-9]+$")
ROUGE_TYPES = ("rouge1", "rouge2", "rougeL", "rougeLsum")
GENERATION_METRICS = ("bleu", "chrf") + ROUGE_TYPES


class RougeTokenizer:
    def __init__(self, use_stemmer=True):
        self._stemmer = None
        if use_stemmer:
            from nltk.stem import porter

            self._stemmer = porter.PorterStemmer()
        self._cache = {}

    def __call__(self, text):
        tokens = re.split(r"\s+", _NON_ALPHANUMERIC.sub(" ", text.lower()))
        if self._stemmer:
            tokens = [self._stem(t) if len(t) > 3 else t for t in tokens]
        return [t for t in tokens if _VALID_TOKEN.match(t)]

    def _stem(self, token):
        if token not in self._cache:
            self._cache[token] = self._stemmer.stem(token)
        return self._cache[token]


def _f_measure(hits, hyp_count, ref_count):
    precision = hits / hyp_count if hyp_count else 0.0
    recall = hits / ref_count if ref_count else 0.0
    return 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0


def _rouge_n(ref_tokens, hyp_tokens, n):
    ref, hyp = _ngrams(ref_tokens, n, n), _ngrams(hyp_tokens, n, n)
    hits = sum(min(count, hyp[g]) for g, count in ref.items())
    return _f_measure(hits, max(sum(hyp.values()), 1), max(sum(ref.values()), 1))


def _lcs_table(ref, hyp):
    table = [[0] * (len(hyp) + 1) for _ in range(len(ref) + 1)]
    for i in range(1, len(ref) + 1):
        row, previous = table[i], table[i - 1]
        for j in range(1, len(hyp) + 1):
            row[j] = previous[j - 1] + 1 if ref[i - 1] == hyp[j - 1] else max(previous[j], row[j - 1])
    return table


def _lcs_indices(ref, hyp):
    """Indices into `ref` of one longest common subsequence (rouge-score's backtrack)."""
    table, i, j, indices = _lcs_table(ref, hyp), len(ref), len(hyp), []
    while i > 0 and j > 0:
        if ref[i - 1] == hyp[j - 1]:
            indices.append(i - 1)
            i, j = i - 1, j - 1
        elif table[i][j - 1] > table[i - 1][j]:
            j -= 1
        else:
            i -= 1
    return indices


def _rouge_l(ref_tokens, hyp_tokens):
    if not ref_tokens or not hyp_tokens:
        return 0.0
    hits = _lcs_table(ref_tokens, hyp_tokens)[-1][-1]
    return _f_measure(hits, len(hyp_tokens), len(ref_tokens))


def _rouge_lsum(ref_sentences, hyp_sentences):
    """Summary-level LCS (union LCS over sentences), section 3.2 of the ROUGE paper."""
    ref_count, hyp_count = sum(map(len, ref_sentences)), sum(map(len, hyp_sentences))
    if not ref_sentences or not hyp_sentences or not ref_count or not hyp_count:
        return 0.0
    ref_left = collections.Counter(t for s in ref_sentences for t in s)
    hyp_left = collections.Counter(t for s in hyp_sentences for t in s)
    hits = 0
    for ref in ref_sentences:
        union = sorted(set().union(*(_lcs_indices(ref, hyp) for hyp in hyp_sentences)))
        for token in (ref[i] for i in union):
            if ref_left[token] > 0 and hyp_left[token] > 0:
                hits += 1
                ref_left[token] -= 1
                hyp_left[token] -= 1
    return _f_measure(hits, hyp_count, ref_count)


def rouge_scores(hypotheses, references, use_stemmer=True):
    """Mean ROUGE-1/2/L/Lsum F-measures (0-100) of hypotheses vs references (lists of str)."""
    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses but {len(references)} references")
    tokenize = RougeTokenizer(use_stemmer)
    sums = dict.fromkeys(ROUGE_TYPES, 0.0)
    for hypothesis, reference in zip(hypotheses, references):
        ref_tokens, hyp_tokens = tokenize(reference), tokenize(hypothesis)
        sums["rouge1"] += _rouge_n(ref_tokens, hyp_tokens, 1)
        sums["rouge2"] += _rouge_n(ref_tokens, hyp_tokens, 2)
        sums["rougeL"] += _rouge_l(ref_tokens, hyp_tokens)
        sums["rougeLsum"] += _rouge_lsum(
            [tokenize(s) for s in reference.split("\n") if s], [tokenize(s) for s in hypothesis.split("\n") if s]
        )
    count = max(len(hypotheses), 1)
    return {name: 100.0 * total / count for name, total in sums.items()}


def generation_report(hypotheses, references):
    """Every generation metric for single-reference outputs, as one flat dict."""
    bleu = corpus_bleu(hypotheses, [references])
    report = {"bleu": bleu["bleu"], "chrf": corpus_chrf(hypotheses, [references])}
    report.update(rouge_scores(hypotheses, references))
    report.update({
        "bleu_precisions": bleu["precisions"], "bleu_brevity_penalty": bleu["brevity_penalty"],
        "num_examples": len(hypotheses),
    })
    return report


def format_generation_report(report):
    names = [n for n in GENERATION_METRICS if n in report]
    return (" ".join(f"{n:>9}" for n in names) + "\n" + " ".join(f"{report[n]:9.2f}" for n in names)
            + f"\n({report['num_examples']} examples)")
