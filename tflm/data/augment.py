"""Token-level augmentation of classification training text (EDA, Wei & Zou 2019).

Each augmented copy of an example applies one operation, picked at random, to
the words (whitespace-separated tokens) of its first text column: delete words,
swap two words, or insert a copy of a word of the same sentence (EDA inserts
WordNet synonyms, which are not available offline). Copies that come out
unchanged are dropped.

The work runs in a parallel tf.data map using only stateless random ops seeded
by (seed, example, copy), so the result does not depend on thread scheduling
and is identical run to run. (keras_hub's RandomDeletion and RandomSwap layers
draw from stateful generators, which a parallel map makes irreproducible.)
"""

import dataclasses

from absl import logging
import numpy as np
import tensorflow as tf

from tflm.data.classification_examples import ClassificationExamples
from tflm.errors import UserError

OPERATIONS = ("delete", "swap", "insert")
_BATCH = 512


@dataclasses.dataclass(frozen=True)
class AugmentConfig:
    """Which operations, how strong, how many copies; validated as flags."""

    operations: tuple = OPERATIONS  # One is picked uniformly for each copy.
    rate: float = 0.1  # Fraction of words an operation touches (EDA's alpha); at least one word.
    copies: int = 1  # Augmented copies made of each example.
    probability: float = 1.0  # Chance that a copy is made at all; the others are skipped.
    seed: int = 0

    def __post_init__(self):
        object.__setattr__(self, "operations", tuple(self.operations))
        if not self.operations or not set(self.operations) <= set(OPERATIONS):
            raise UserError(f"--augment={','.join(self.operations)}: use {', '.join(OPERATIONS)}")
        if not 0 < self.rate <= 1:
            raise UserError(f"--augment_rate={self.rate}: must be in (0, 1]")
        if self.copies < 1:
            raise UserError(f"--augment_copies={self.copies}: must be at least 1")
        if not 0 < self.probability <= 1:
            raise UserError(f"--augment_probability={self.probability}: must be in (0, 1]")


def _touched(words, rate):
    """How many words an operation touches: `rate` of them, rounded, at least one."""
    return tf.maximum(1, tf.cast(tf.round(rate * tf.cast(tf.size(words), tf.float64)), tf.int32))


def _uniform_int(seed, maxval):
    return tf.random.stateless_uniform([], seed, minval=0, maxval=maxval, dtype=tf.int32)


def _delete(words, rate, seed):
    """Drops each word with probability `rate`; keeps one random word if all would go."""
    seeds = tf.random.experimental.stateless_split(seed, 2)
    keep = tf.random.stateless_uniform(tf.shape(words), seeds[0]) >= rate
    lone = tf.one_hot(_uniform_int(seeds[1], tf.size(words)), tf.size(words), on_value=True, off_value=False)
    return tf.boolean_mask(words, tf.where(tf.reduce_any(keep), keep, lone))


def _swap(words, rate, seed):
    """Swaps two distinct random positions (when there are two), `_touched` times."""
    size = tf.size(words)

    def body(step, order):
        seeds = tf.random.experimental.stateless_split(tf.random.experimental.stateless_fold_in(seed, step), 2)
        first = _uniform_int(seeds[0], size)
        second = (first + 1 + _uniform_int(seeds[1], tf.maximum(size - 1, 1))) % size
        pair = tf.stack([first, second])
        return step + 1, tf.tensor_scatter_nd_update(order, pair[:, None], tf.gather(order, pair[::-1]))

    _, order = tf.while_loop(lambda step, _: step < _touched(words, rate), body, (0, tf.range(size)))
    return tf.gather(words, order)


def _insert(words, rate, seed):
    """Inserts copies of random words of the sentence at random positions, `_touched` of them."""
    size, count = tf.size(words), _touched(words, rate)
    seeds = tf.random.experimental.stateless_split(seed, 2)
    new = tf.gather(words, tf.random.stateless_uniform([count], seeds[0], minval=0, maxval=size, dtype=tf.int32))
    # Inserting words one at a time at uniform positions leaves them at a uniformly
    # random set of positions of the result: draw that set in one go.
    slots = tf.random.experimental.stateless_shuffle(tf.range(size + count), seeds[1])
    return tf.dynamic_stitch([slots[:count], tf.sort(slots[count:])], [new, words])


_FUNCTIONS = {"delete": _delete, "swap": _swap, "insert": _insert}


def _augment_fn(config):
    """(text, example, copy) -> (augmented text, whether to keep it)."""
    functions = [_FUNCTIONS[name] for name in config.operations]
    root = tf.constant([config.seed, 0], tf.int64)

    def augment(text, example, copy):
        seed = tf.random.experimental.stateless_fold_in(tf.random.experimental.stateless_fold_in(root, example), copy)
        draw, choice, operation = tf.unstack(tf.random.experimental.stateless_split(seed, 3))
        words = tf.strings.split(text)
        branches = [lambda f=f: f(words, config.rate, operation) for f in functions]
        new_words = tf.cond(tf.size(words) > 0,
                            lambda: tf.switch_case(_uniform_int(choice, len(functions)), branches),
                            lambda: words)
        new_text = tf.strings.reduce_join(new_words, separator=" ")
        made = tf.random.stateless_uniform([], draw) < config.probability
        return new_text, made & (new_text != tf.strings.reduce_join(words, separator=" "))

    return augment


def augment_texts(texts, config):
    """Augmented copies of `texts` (list of str) per `config`: (new_texts, source_index).

    `source_index[k]` is the index into `texts` of the text `new_texts[k]` was
    made from. Copies are ordered by copy number, then by example; a copy is
    made with probability `config.probability` and dropped when its words
    equal the source's.
    """
    if not texts:
        return [], np.zeros([0], np.int64)
    example = np.tile(np.arange(len(texts), dtype=np.int64), config.copies)
    copy = np.repeat(np.arange(config.copies, dtype=np.int64), len(texts))
    sources = tf.data.Dataset.from_tensor_slices(tf.constant(texts, tf.string)).repeat(config.copies)
    dataset = tf.data.Dataset.zip(sources, tf.data.Dataset.from_tensor_slices(example),
                                  tf.data.Dataset.from_tensor_slices(copy))
    dataset = dataset.map(_augment_fn(config), num_parallel_calls=tf.data.AUTOTUNE, deterministic=True).batch(_BATCH)
    new_texts, keep = [], []
    for batch_texts, batch_keep in dataset.as_numpy_iterator():
        new_texts.extend(t.decode("utf-8") for t, k in zip(batch_texts, batch_keep) if k)
        keep.append(batch_keep)
    return new_texts, example[np.concatenate(keep)]


def augment_classification_examples(examples, config):
    """A new ClassificationExamples: the originals, then augmented copies of them.

    Only the first text column is augmented; labels, and the second text of
    sentence pairs, are copied from the source example.
    """
    new_texts, source_index = augment_texts(examples.texts[0], config)
    texts = [examples.texts[0] + new_texts]
    texts += [column + [column[i] for i in source_index] for column in examples.texts[1:]]
    labels = examples.labels + [examples.labels[i] for i in source_index]
    logging.info("Augmentation (%s, rate %g, %d copies) added %d examples to %d", ",".join(config.operations),
                 config.rate, config.copies, len(new_texts), len(examples))
    return ClassificationExamples(texts, labels, origin=examples.origin)
