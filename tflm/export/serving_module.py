"""A tf.Module that holds a Keras model's weights for SavedModel export.

Keras 3 models tracked directly by a tf.Module pass `tf.saved_model.load` but
fail TF Serving's Session loader (keras#20095), and `keras.export.ExportArchive`
stores every weight twice (keras#23553). Tracking the raw `tf.Variable`s and
calling the model through an untracked reference passes both loaders and
stores each weight once.
"""

import tensorflow as tf


class ServingModule(tf.Module):
    """Owns the variables; subclasses add `tf.function` signatures."""

    def __init__(self, model, preprocessor, name=None):
        super().__init__(name=name)
        self.model_variables = [v.value for v in model.weights]
        # Tokenizers that own TF resources (e.g. SentencePiece) need tracking;
        # the preprocessor has no weights, so nothing is stored twice.
        self.preprocessor = preprocessor
        object.__setattr__(self, "_model", model)  # Untracked on purpose.


def sanitize_text(text):
    """Replaces invalid UTF-8 so tokenizer ops never fail on client bytes."""
    return tf.strings.unicode_transcode(text, "UTF-8", "UTF-8", errors="replace")


def token_features(preprocessor, inputs, bucket_width=16):
    """Tokenizes, casts to int32 and trims padding to the longest row.

    Trimming makes short requests fast; the result is unchanged because
    padding positions are masked out of attention and pooling.
    """
    features = preprocessor(x=inputs)  # By keyword: a positional tuple means (x, y).
    features = {k: tf.cast(v, tf.int32) for k, v in features.items()}
    full = tf.shape(features["padding_mask"])[1]
    longest = tf.reduce_max(tf.reduce_sum(features["padding_mask"], axis=1))
    length = tf.minimum((longest + bucket_width - 1) // bucket_width * bucket_width, full)
    length = tf.maximum(length, 1)
    return {k: v[:, :length] for k, v in features.items()}
