"""Masked-LM masking of token batches, the BERT recipe, with stateless randomness.

Like KerasHub's `MaskedLMMaskGenerator`: a fraction `rate` of the maskable
tokens of each row (never padding or special tokens; at least one, at most
`max_predictions`) is selected; 80% of those become the mask token, 10% a
random token and 10% stay. KerasHub's generator draws from a stateful RNG, so
its masks depend on thread timing and on how far a run got before a resume;
here every batch's masks are a function of (seed, batch number), so a resumed
run sees the same masks and the validation masks are the same at every
evaluation.
"""

import dataclasses
import math

import tensorflow as tf


@dataclasses.dataclass(frozen=True)
class MaskingConfig:
    mask_token_id: int
    vocabulary_size: int
    unmaskable_ids: tuple  # Special tokens (padding, [CLS], [SEP], ...).
    rate: float = 0.15
    max_predictions: int = 20
    mask_token_rate: float = 0.8
    random_token_rate: float = 0.1

    @classmethod
    def for_sequence_length(cls, sequence_length, rate, **kwargs):
        """Room for `rate` of a full row (at least one prediction)."""
        return cls(rate=rate, max_predictions=max(1, math.ceil(rate * sequence_length)), **kwargs)


def mask_batch(token_ids, padding_mask, config, seed):
    """Masks a [B, T] batch; `seed` is a stateless seed (shape [2] int tensor).

    Returns (masked token ids [B, T], mask_positions [B, P], mask_ids [B, P]
    (the original tokens), mask_weights [B, P] (1.0 for real predictions,
    0.0 for unused slots)), P = config.max_predictions.
    """
    token_ids = tf.cast(token_ids, tf.int32)
    batch, length = tf.shape(token_ids)[0], tf.shape(token_ids)[1]
    select_seed, action_seed, token_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 3))
    maskable = tf.logical_and(tf.cast(padding_mask, tf.bool),
                              tf.reduce_all(token_ids[..., None] != tf.constant(config.unmaskable_ids, tf.int32),
                                            axis=-1))
    count = tf.reduce_sum(tf.cast(maskable, tf.int32), axis=1)
    wanted = tf.cast(tf.round(config.rate * tf.cast(count, tf.float32)), tf.int32)
    wanted = tf.minimum(tf.maximum(wanted, tf.minimum(count, 1)), config.max_predictions)
    # A random score per maskable token; the `wanted` highest are selected.
    scores = tf.where(maskable, tf.random.stateless_uniform([batch, length], select_seed), -1.0)
    slots = tf.minimum(config.max_predictions, length)
    _, positions = tf.math.top_k(scores, k=slots)
    used = tf.range(slots)[None, :] < wanted[:, None]
    positions = tf.where(used, positions, 0)
    padding = [[0, 0], [0, config.max_predictions - slots]]
    positions, used = tf.pad(positions, padding), tf.pad(used, padding)
    original = tf.gather(token_ids, positions, batch_dims=1)
    action = tf.random.stateless_uniform(tf.shape(positions), action_seed)
    random_tokens = tf.random.stateless_uniform(tf.shape(positions), token_seed, maxval=config.vocabulary_size,
                                                dtype=tf.int32)
    replacement = tf.where(action < config.mask_token_rate, config.mask_token_id,
                           tf.where(action < config.mask_token_rate + config.random_token_rate,
                                    random_tokens, original))
    rows = tf.broadcast_to(tf.range(batch)[:, None], tf.shape(positions))
    indices = tf.boolean_mask(tf.stack([rows, positions], axis=-1), used)
    masked = tf.tensor_scatter_nd_update(token_ids, indices, tf.boolean_mask(replacement, used))
    return masked, positions, original, tf.cast(used, tf.float32)
