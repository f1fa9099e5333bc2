"""Tokenized examples held in memory, served as tf.data pipelines.

Text is tokenized once with the backbone's preprocessor inside tf.data
(tf-text ops, parallel map), then kept as padded int32 arrays. Training
shuffles example *indices* (so a checkpointed iterator stays small), groups
similar lengths into buckets and trims every batch to its longest row rounded
up to `bucket_width`, which bounds the number of distinct batch shapes.
"""

import numpy as np
import tensorflow as tf

_TOKENIZE_BATCH = 512


def tokenize(preprocessor, texts):
    """Runs `preprocessor` over text columns; returns a dict of int32 arrays.

    Args:
      preprocessor: a KerasHub preprocessor taking one string tensor, or a
        tuple of two for sentence pairs.
      texts: list of text columns (lists of str), all the same length.
    """
    columns = tuple(tf.constant(column, dtype=tf.string) for column in texts)
    dataset = tf.data.Dataset.from_tensor_slices(columns).batch(_TOKENIZE_BATCH)

    def run(*batch):
        # By keyword: KerasHub reads a positional tuple as (x, y).
        features = preprocessor(x=batch if len(batch) > 1 else batch[0])
        return {k: tf.cast(v, tf.int32) for k, v in features.items()}

    dataset = dataset.map(run, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    chunks = list(dataset.as_numpy_iterator())
    features = {k: np.concatenate([c[k] for c in chunks]) for k in chunks[0]}
    longest = max(1, int(features["padding_mask"].sum(axis=1).max()))
    return {k: v[:, :longest] for k, v in features.items()}


def _trim_batch(bucket_width, max_length):
    def trim(features, labels):
        length = tf.reduce_max(tf.reduce_sum(features["padding_mask"], axis=1))
        length = tf.minimum((length + bucket_width - 1) // bucket_width * bucket_width, max_length)
        return {k: v[:, :length] for k, v in features.items()}, labels

    return trim


def _distribute_options():
    options = tf.data.Options()
    # Each worker reads the whole (in-memory) data and keeps its own shard of
    # every batch; file-based sharding does not apply to in-memory data.
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return options


class TokenizedDataset:
    """Features [N, T] (dict of int32 arrays) with per-example targets."""

    def __init__(self, features, targets):
        self.features = features
        self.targets = np.asarray(targets)
        self.lengths = features["padding_mask"].sum(axis=1)
        self.max_length = features["padding_mask"].shape[1]

    def __len__(self):
        return len(self.targets)

    def training(self, batch_size, seed, bucket_width=16):
        """An endless shuffled, length-bucketed stream of batches."""
        features = {k: tf.constant(v) for k, v in self.features.items()}
        targets = tf.constant(self.targets)
        lengths = tf.constant(self.lengths.astype(np.int32))
        dataset = tf.data.Dataset.range(len(self)).shuffle(
            len(self), seed=seed, reshuffle_each_iteration=True
        ).repeat()
        dataset = dataset.map(
            lambda i: ({k: v[i] for k, v in features.items()}, targets[i], lengths[i])
        )
        boundaries = list(range(bucket_width + 1, self.max_length + 1, bucket_width))
        dataset = dataset.bucket_by_sequence_length(
            lambda x, y, length: length,
            bucket_boundaries=boundaries,
            bucket_batch_sizes=[batch_size] * (len(boundaries) + 1),
            drop_remainder=True,
        )
        dataset = dataset.map(lambda x, y, length: (x, y))
        dataset = dataset.map(_trim_batch(bucket_width, self.max_length))
        return dataset.prefetch(tf.data.AUTOTUNE).with_options(_distribute_options())

    def evaluation(self, batch_size, bucket_width=16):
        """One pass in file order (so predictions line up with the rows)."""
        dataset = tf.data.Dataset.from_tensor_slices((self.features, self.targets))
        dataset = dataset.batch(batch_size).map(_trim_batch(bucket_width, self.max_length))
        return dataset.prefetch(tf.data.AUTOTUNE).with_options(_distribute_options())

    def steps_per_epoch(self, batch_size):
        return max(1, len(self) // batch_size)
