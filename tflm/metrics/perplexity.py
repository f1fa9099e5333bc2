"""Perplexity of a language model over the tokens it is asked to predict.

Only weighted tokens count: the masked positions of a masked LM, the
non-padding next tokens of a causal LM. Perplexity is exp of the mean
negative log-likelihood per counted token over the whole evaluation set
(a corpus-level mean, not a mean of per-batch perplexities).
"""

import math

import tensorflow as tf

LANGUAGE_MODEL_METRICS = ("perplexity", "loss", "accuracy")


def token_statistics(logits, labels, weights):
    """(summed NLL, token count, correct top-1 count) over the weighted tokens of a batch."""
    log_probs = tf.nn.log_softmax(tf.cast(logits, tf.float32), axis=-1)
    labels = tf.cast(labels, tf.int32)
    nll = -tf.gather(log_probs, labels, axis=-1, batch_dims=2)
    weights = tf.cast(weights, tf.float32)
    correct = tf.cast(tf.argmax(log_probs, axis=-1, output_type=tf.int32) == labels, tf.float32)
    return tf.reduce_sum(nll * weights), tf.reduce_sum(weights), tf.reduce_sum(correct * weights)


def language_model_report(nll_sum, token_count, correct_count):
    """perplexity, loss (mean NLL per token, nats), top-1 accuracy and the token count."""
    if token_count <= 0:
        raise ValueError("no tokens to score")
    loss = nll_sum / token_count
    return {
        "perplexity": math.exp(min(loss, 700.0)),  # exp overflows a float past ~709.
        "loss": loss,
        "accuracy": correct_count / token_count,
        "tokens": int(token_count),
    }


def format_language_model_report(report):
    return (f"perplexity {report['perplexity']:.3f}   loss {report['loss']:.4f}   "
            f"accuracy {100 * report['accuracy']:.2f}%   ({report['tokens']:,} tokens)")
