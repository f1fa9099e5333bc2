"""Tokenized examples held in memory, served as tf.data pipelines.

Text is tokenized once inside tf.data (tf-text ops, parallel map), then kept
as padded int32 arrays. Training shuffles example *indices*, groups similar
lengths into buckets and trims every batch to its longest row rounded up to
`bucket_width`, which bounds the number of distinct batch shapes.

A dataset has one or more *sequence groups*: a padding-mask key and the
feature and target keys padded along with it. Classification has one group;
seq2seq has an encoder group and a decoder group (which includes the labels).
"""

import dataclasses

import numpy as np
import tensorflow as tf

_TOKENIZE_BATCH = 512


@dataclasses.dataclass(frozen=True)
class SequenceGroup:
    mask: str
    features: tuple
    targets: tuple = ()  # Keys of a dict of targets trimmed with this group.


def run_in_batches(fn, columns):
    """Maps `fn(*string_tensors) -> dict of tensors` over text columns in tf.data.

    Returns a dict of numpy arrays, the batches concatenated.
    """
    tensors = tuple(tf.constant(column, dtype=tf.string) for column in columns)
    dataset = tf.data.Dataset.from_tensor_slices(tensors).batch(_TOKENIZE_BATCH)
    dataset = dataset.map(fn, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    chunks = list(dataset.as_numpy_iterator())
    return {k: np.concatenate([c[k] for c in chunks]) for k in chunks[0]}


def trim_to_longest(arrays, mask_key, keys):
    """Cuts `keys` of `arrays` to the longest row of `arrays[mask_key]` (at least 1)."""
    longest = max(1, int(arrays[mask_key].sum(axis=1).max()))
    return dict(arrays, **{k: arrays[k][:, :longest] for k in keys})


def tokenize(preprocessor, texts):
    """Runs a KerasHub classifier preprocessor over text columns; dict of int32 arrays.

    Args:
      preprocessor: a KerasHub preprocessor taking one string tensor, or a
        tuple of two for sentence pairs.
      texts: list of text columns (lists of str), all the same length.
    """
    def run(*batch):
        # By keyword: KerasHub reads a positional tuple as (x, y).
        features = preprocessor(x=batch if len(batch) > 1 else batch[0])
        return {k: tf.cast(v, tf.int32) for k, v in features.items()}

    features = run_in_batches(run, texts)
    return trim_to_longest(features, "padding_mask", list(features))


def bucketed_length(mask, bucket_width):
    """Longest row of a [B, T] padding mask, rounded up to `bucket_width`, within [1, T].

    Trimming a batch to it bounds the number of distinct shapes; results are
    unchanged because padding is masked out of attention and pooling.
    """
    longest = tf.reduce_max(tf.reduce_sum(mask, axis=1))
    length = tf.minimum((longest + bucket_width - 1) // bucket_width * bucket_width, tf.shape(mask)[1])
    return tf.maximum(length, 1)


def trim_to_bucketed_length(features, mask_key, bucket_width=16):
    """Cuts every feature of a batch to its longest row rounded up to `bucket_width` (see `bucketed_length`).

    Short requests run fast, and the few lengths keep retracing small.
    """
    length = bucketed_length(features[mask_key], bucket_width)
    return {k: v[:, :length] for k, v in features.items()}


def _trim_batch(groups, bucket_width):
    def trim(features, targets):
        features, targets = dict(features), dict(targets) if isinstance(targets, dict) else targets
        for group in groups:
            length = bucketed_length(features[group.mask], bucket_width)
            for key in group.features:
                features[key] = features[key][:, :length]
            for key in group.targets:
                targets[key] = targets[key][:, :length]
        return features, targets

    return trim


def _distribute_options():
    options = tf.data.Options()
    # Each worker reads the whole (in-memory) data and keeps its own shard of
    # every batch; file-based sharding does not apply to in-memory data.
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return options


class TokenizedDataset:
    """Features (dict of int32 arrays [N, T]) with per-example targets.

    Targets are an array [N] (class ids) or a dict of arrays named in the
    sequence groups (e.g. seq2seq labels and label weights).
    """

    def __init__(self, features, targets, groups=None):
        self.features = features
        self.targets = {k: np.asarray(v) for k, v in targets.items()} if isinstance(targets, dict) \
            else np.asarray(targets)
        self.groups = tuple(groups or (SequenceGroup("padding_mask", tuple(features)),))
        self.lengths = np.max([features[g.mask].sum(axis=1) for g in self.groups], axis=0)
        self.max_length = max(features[g.mask].shape[1] for g in self.groups)

    def __len__(self):
        return len(self.lengths)

    def training(self, batch_size, seed, bucket_width=16, pad_to_length=0):
        """An endless shuffled, length-bucketed stream of batches.

        pad_to_length: instead of bucketing, pad every batch to this many
          tokens (static shapes, e.g. for TPUs); single-group data only.
        """
        if pad_to_length:
            return self._static_training(batch_size, seed, pad_to_length)
        features = {k: tf.constant(v) for k, v in self.features.items()}
        targets = tf.nest.map_structure(tf.constant, self.targets)
        lengths = tf.constant(self.lengths.astype(np.int32))
        dataset = tf.data.Dataset.range(len(self)).shuffle(
            len(self), seed=seed, reshuffle_each_iteration=True
        ).repeat()
        dataset = dataset.map(
            lambda i: ({k: v[i] for k, v in features.items()},
                       tf.nest.map_structure(lambda t: t[i], targets), lengths[i])
        )
        boundaries = list(range(bucket_width + 1, self.max_length + 1, bucket_width))
        dataset = dataset.bucket_by_sequence_length(
            lambda x, y, length: length,
            bucket_boundaries=boundaries,
            bucket_batch_sizes=[batch_size] * (len(boundaries) + 1),
            drop_remainder=True,
        )
        dataset = dataset.map(lambda x, y, length: (x, y))
        dataset = dataset.map(_trim_batch(self.groups, bucket_width))
        return dataset.prefetch(tf.data.AUTOTUNE).with_options(_distribute_options())

    def _static_training(self, batch_size, seed, length):
        if len(self.groups) != 1 or isinstance(self.targets, dict):
            raise ValueError("static padding is for single-sequence data (classification)")
        features = {k: np.pad(v, [(0, 0), (0, max(0, length - v.shape[1]))])[:, :length]
                    for k, v in self.features.items()}
        dataset = tf.data.Dataset.from_tensor_slices((features, self.targets)).shuffle(
            len(self), seed=seed, reshuffle_each_iteration=True).repeat().batch(batch_size, drop_remainder=True)
        return dataset.prefetch(tf.data.AUTOTUNE).with_options(_distribute_options())

    def evaluation(self, batch_size, bucket_width=16):
        """One pass in file order (so predictions line up with the rows)."""
        dataset = tf.data.Dataset.from_tensor_slices((self.features, self.targets))
        dataset = dataset.batch(batch_size).map(_trim_batch(self.groups, bucket_width))
        return dataset.prefetch(tf.data.AUTOTUNE).with_options(_distribute_options())

    def steps_per_epoch(self, batch_size):
        return max(1, len(self) // batch_size)
