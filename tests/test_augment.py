"""Token-level augmentation and back-translation of classification data (tiny fake translation exports)."""

import collections
import logging

import pytest
import tensorflow as tf

from tflm.data.augment import AugmentConfig
from tflm.data.augment import augment_classification_examples
from tflm.data.augment import augment_texts
from tflm.data.back_translation import back_translate
from tflm.data.back_translation import back_translate_classification_examples
from tflm.data.classification_examples import ClassificationExamples
from tflm.errors import UserError

WORDS = "the film was a quiet joy to watch from start till end".split()
# Distinct words, 4 to 12 of them, so every swap changes the text.
TEXTS = [" ".join(WORDS[i % 3:i % 3 + 4 + i % 9]) for i in range(60)]


def _is_subsequence(short, long):
    remaining = iter(long)
    return all(word in remaining for word in short)


def test_same_seed_same_output_and_other_seed_differs():
    config = AugmentConfig(rate=0.3, copies=2, seed=3)
    first, second = augment_texts(TEXTS, config), augment_texts(TEXTS, config)
    assert first[0] == second[0] and first[1].tolist() == second[1].tolist()
    other = augment_texts(TEXTS, AugmentConfig(rate=0.3, copies=2, seed=4))
    assert other[0] != first[0]


def test_delete_only_removes_words_keeps_order_and_never_empties():
    texts, index = augment_texts(TEXTS, AugmentConfig(operations=("delete",), rate=0.3, copies=3))
    assert texts
    for text, i in zip(texts, index):
        source = TEXTS[i].split()
        assert 1 <= len(text.split()) < len(source) and _is_subsequence(text.split(), source)
    everything, index = augment_texts(TEXTS, AugmentConfig(operations=("delete",), rate=1.0))
    assert len(everything) == len(TEXTS)  # All words would go: one random word stays.
    assert all(len(t.split()) == 1 and t in TEXTS[i].split() for t, i in zip(everything, index))


def test_swap_keeps_the_words():
    # One swap of distinct words always changes the text.
    texts, index = augment_texts(TEXTS, AugmentConfig(operations=("swap",), rate=0.05, copies=2))
    assert len(texts) == 2 * len(TEXTS)
    for text, i in zip(texts, index):
        assert sum(a != b for a, b in zip(text.split(), TEXTS[i].split())) == 2
    # Several swaps may undo each other, but always keep the words.
    texts, index = augment_texts(TEXTS, AugmentConfig(operations=("swap",), rate=0.5))
    assert len(texts) > len(TEXTS) / 2
    for text, i in zip(texts, index):
        assert text != TEXTS[i] and collections.Counter(text.split()) == collections.Counter(TEXTS[i].split())


def test_insert_adds_words_of_the_sentence_around_the_original_order():
    texts, index = augment_texts(TEXTS, AugmentConfig(operations=("insert",), rate=0.25, copies=2))
    assert len(texts) == 2 * len(TEXTS)
    for text, i in zip(texts, index):
        source, words = TEXTS[i].split(), text.split()
        assert len(words) == len(source) + max(1, round(0.25 * len(source)))
        assert set(words) <= set(source) and _is_subsequence(source, words)


def test_probability_skips_copies_and_source_index_points_at_the_source():
    texts = [f"{w} number {i}" for i, w in enumerate(WORDS * 40)]
    new, index = augment_texts(texts, AugmentConfig(operations=("swap",), copies=2, probability=0.5, seed=1))
    assert 0.4 * len(texts) < len(new) / 2 < 0.6 * len(texts)
    assert all(sorted(t.split()) == sorted(texts[i].split()) for t, i in zip(new, index))
    # Copy-major order: the first copy of every example, then the second.
    boundary = next(k for k in range(1, len(index)) if index[k] <= index[k - 1])
    assert list(index[:boundary]) == sorted(index[:boundary]) and list(index[boundary:]) == sorted(index[boundary:])


def test_unchanged_and_empty_texts_are_dropped_and_output_uses_single_spaces():
    texts, index = augment_texts(["", "   ", "same same", "a  b\tc"], AugmentConfig(operations=("swap",)))
    assert index.tolist() == [3] and sorted(texts[0].split(" ")) == ["a", "b", "c"]
    empty, empty_index = augment_texts([], AugmentConfig())
    assert empty == [] and empty_index.size == 0


def test_classification_examples_copy_labels_and_second_text(caplog):
    examples = ClassificationExamples([TEXTS[:20], [f"second {i}" for i in range(20)]],
                                      [str(i % 3) for i in range(20)], origin="train.tsv")
    with caplog.at_level(logging.INFO, logger="absl"):
        augmented = augment_classification_examples(examples, AugmentConfig(copies=2, rate=0.3))
    added = len(augmented) - len(examples)
    assert added > 0 and f"added {added} examples" in caplog.text
    assert augmented.origin == "train.tsv" and len(augmented.texts) == 2
    assert augmented.texts[0][:20] == examples.texts[0] and augmented.labels[:20] == examples.labels
    _, index = augment_texts(examples.texts[0], AugmentConfig(copies=2, rate=0.3))
    assert augmented.labels[20:] == [examples.labels[i] for i in index]
    assert augmented.texts[1][20:] == [examples.texts[1][i] for i in index]
    assert len(examples) == 20  # The input is left alone.


@pytest.mark.parametrize("kwargs, flag", [
    (dict(operations=("delete", "foo")), "--augment=delete,foo: use delete, swap, insert"),
    (dict(operations=()), "--augment="),
    (dict(rate=0.0), "--augment_rate"),
    (dict(rate=1.5), "--augment_rate"),
    (dict(copies=0), "--augment_copies"),
    (dict(probability=0.0), "--augment_probability"),
    (dict(probability=1.1), "--augment_probability"),
])
def test_bad_config_is_a_user_error(kwargs, flag):
    with pytest.raises(UserError, match=flag):
        AugmentConfig(**kwargs)


# -- back-translation with fake translation exports -------------------------

class _FakeTranslator(tf.Module):
    def __init__(self, translate, input_name="text"):
        super().__init__()
        self._translate = translate
        self.serve = tf.function(self._serve, input_signature=[tf.TensorSpec([None], tf.string, name=input_name)])

    def _serve(self, text):
        return {"output_text": self._translate(text)}


def _save(module, path):
    tf.saved_model.save(module, str(path), signatures={"serving_default": module.serve})
    return str(path)


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    root = tmp_path_factory.mktemp("translators")
    forward = _save(_FakeTranslator(tf.strings.upper), root / "en_de")
    backward = _save(_FakeTranslator(
        lambda text: tf.strings.regex_replace(tf.strings.lower(text), "good", "fine")), root / "de_en")
    return forward, backward


def test_back_translate_round_trips_in_order(exports):
    texts = [f"a good film {i}" for i in range(7)] + ["Dull"]
    assert back_translate(texts, *exports, batch_size=3) == [f"a fine film {i}" for i in range(7)] + ["dull"]


def test_back_translated_examples_drop_unchanged_paraphrases(exports, caplog):
    examples = ClassificationExamples([["Good plot", "Bad plot", "good good"], ["x", "y", "z"]], ["1", "0", "1"],
                                      origin="pairs.tsv")
    with caplog.at_level(logging.INFO, logger="absl"):
        augmented = back_translate_classification_examples(examples, *exports)
    assert augmented.texts == [["Good plot", "Bad plot", "good good", "fine plot", "fine fine"],
                               ["x", "y", "z", "x", "z"]]
    assert augmented.labels == ["1", "0", "1", "1", "1"] and augmented.origin == "pairs.tsv"
    assert "added 2 paraphrases" in caplog.text


def test_back_translate_bad_exports_are_user_errors(exports, tmp_path):
    missing = str(tmp_path / "missing")
    with pytest.raises(UserError, match=f"--back_translate: {missing}: no such directory"):
        back_translate(["x"], exports[0], missing)
    not_saved_model = tmp_path / "empty"
    not_saved_model.mkdir()
    with pytest.raises(UserError, match="--back_translate: .*empty: cannot load"):
        back_translate(["x"], str(not_saved_model), exports[1])
    wrong_input = _save(_FakeTranslator(tf.strings.upper, input_name="sentence"), tmp_path / "wrong")
    with pytest.raises(UserError, match="--back_translate: .*wrong: serving_default takes \\['sentence'\\]"):
        back_translate(["x"], wrong_input, exports[1])
