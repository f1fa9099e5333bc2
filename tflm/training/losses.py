"""Per-example losses the trainer averages over the global batch."""

import tensorflow as tf


def token_cross_entropy(labels, weights, logits, label_smoothing=0.0):
    """Mean token cross-entropy of each example over its weighted tokens.

    labels, weights: [B, T]; logits: [B, T, V]. Tokens of weight 0 (padding,
    unused mask slots) contribute nothing; an example without any weighted
    token has loss 0.
    """
    log_probs = tf.nn.log_softmax(tf.cast(logits, tf.float32), axis=-1)
    nll = -tf.gather(log_probs, tf.cast(labels, tf.int32), axis=-1, batch_dims=2)
    if label_smoothing:
        nll = (1.0 - label_smoothing) * nll - label_smoothing * tf.reduce_mean(log_probs, axis=-1)
    weights = tf.cast(weights, tf.float32)
    return tf.reduce_sum(nll * weights, axis=1) / tf.maximum(tf.reduce_sum(weights, axis=1), 1.0)
