"""A tf.Module that holds a Keras model's weights for SavedModel export.

Keras 3 models tracked directly by a tf.Module pass `tf.saved_model.load` but
fail TF Serving's Session loader (keras#20095), and `keras.export.ExportArchive`
stores every weight twice (keras#23553). Tracking the raw `tf.Variable`s and
calling the model through an untracked reference passes both loaders and
stores each weight once.
"""

import json
import os

import tensorflow as tf

from tflm.data.tokenized_dataset import trim_to_longest_row

METADATA_FILE = "tflm_model.json"


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


# Inputs every export is checked with besides real samples: an empty string,
# a text far past the sequence length (truncated), and bytes that are not
# valid UTF-8 (carried in Python strings as surrogate escapes).
EDGE_CASE_TEXTS = ("", "x " * 2000, "caf\udce9 \udcff\udcfe ok")


def request_bytes(texts):
    """A string tensor of the bytes a client would send for `texts` (surrogate escapes become raw bytes)."""
    return tf.constant([t.encode("utf-8", "surrogateescape") for t in texts])


def token_features(preprocessor, inputs):
    """Tokenizes with a KerasHub classifier preprocessor, casts to int32, trims padding."""
    features = preprocessor(x=inputs)  # By keyword: a positional tuple means (x, y).
    features = {k: tf.cast(v, tf.int32) for k, v in features.items()}
    return trim_to_longest_row(features, "padding_mask")


def save_with_metadata(module, path, metadata):
    """Writes `module` (signature `serving_default`: `module.serve`) plus assets.extra/tflm_model.json."""
    tf.saved_model.save(module, path, signatures={"serving_default": module.serve})
    extra = os.path.join(path, "assets.extra")
    tf.io.gfile.makedirs(extra)
    with tf.io.gfile.GFile(os.path.join(extra, METADATA_FILE), "w") as f:
        json.dump(metadata, f, indent=1, ensure_ascii=False)
