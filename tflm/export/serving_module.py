"""A tf.Module that holds a Keras model's weights and serves three signatures.

Keras 3 models tracked directly by a tf.Module pass `tf.saved_model.load` but
fail TF Serving's Session loader (keras#20095), and `keras.export.ExportArchive`
stores every weight twice (keras#23553). Tracking the raw `tf.Variable`s and
calling the model through an untracked reference passes both loaders and
stores each weight once (in bfloat16, where a mixed-precision model only
reads it in bfloat16 and the subclass asks for `low_precision_weights`).

A subclass that calls its model once per request, on the packed token ids,
can instead ask for `constant_weights`: the weights become constants of one
traced model function that every signature calls, so they are still stored
once (in saved_model.pb, not variables/). A request then runs no variable
reads, and the graph optimizer folds the weights' reshapes once, at load:
one sentence ran about a fifth fewer kernels and answered 18-25% faster on
the AMX CPU (benchmarks/README.md, twelfth sitting: "serving, weights as
constants"). Loading and the warmup replay take longer instead.

Signatures, the same for every task:
  serving_default  raw text: one [batch] tf.string input per text field.
  serve_examples   `examples`: [batch] serialized tf.Example, one bytes
                   feature per text field (same names as serving_default).
  serve_token_ids  the packed int32 [batch, length] ids the model's own
                   preprocessor produces, for clients that tokenize themselves.
"""

import contextlib
import functools

import tensorflow as tf
from absl import logging

from tflm.backbones import fast_kernels
from tflm.data.tokenized_dataset import trim_to_bucketed_length

EXAMPLES_INPUT = "examples"
# Weights stored as graph constants must fit, with the rest of saved_model.pb, in a 2 GB protocol buffer.
MAX_CONSTANT_WEIGHT_BYTES = 1 << 30


class ServingModule(tf.Module):
    """Owns the variables; subclasses say how text and token ids become outputs.

    Subclasses implement `outputs_from_text(texts)` and
    `outputs_from_token_ids(features)` (dicts of name -> tensor, in TF ops)
    and `token_ids_for(texts)` (what a tokenizing client would send).
    """

    # Share of string/integer output rows a loaded export must reproduce
    # exactly (see `verification.verify_export`).
    min_row_agreement = 1.0

    def __init__(self, model, preprocessor, text_inputs, token_inputs, name=None, low_precision_weights=False,
                 constant_weights=False):
        """Args:
          low_precision_weights: store each weight that the model only reads
            cast to a 16-bit compute dtype (mixed precision's autocast
            weights) in that dtype, and trace with it. The outputs are the same
            (the cast happens once, at export, instead of on every request) and
            the export is about half the size. The traced functions then have
            no float32 copy of those weights to compute with.
          constant_weights: store the weights as constants of `call_model`,
            which subclasses then use for their one model call per request;
            models whose weights take over `MAX_CONSTANT_WEIGHT_BYTES` keep
            variables.
        """
        super().__init__(name=name)
        object.__setattr__(self, "_model", model)  # Untracked on purpose.
        # {Keras variable id: the value the export stores and the signatures read instead}.
        low_precision = _low_precision_values(model) if low_precision_weights else {}
        values = [(v, low_precision.get(id(v), v.value)) for v in model.weights]
        weight_bytes = sum(value.shape.num_elements() * value.dtype.size for _, value in values)
        self.constant_weights = constant_weights and weight_bytes <= MAX_CONSTANT_WEIGHT_BYTES
        if constant_weights and not self.constant_weights:
            logging.info("Exporting the weights as variables: %.1f GB is over the %.1f GB a graph's constants "
                         "may take", weight_bytes / 1e9, MAX_CONSTANT_WEIGHT_BYTES / 1e9)
        if self.constant_weights:
            # Untracked: nothing goes to variables/; each value becomes a constant when `call_model` is traced.
            object.__setattr__(self, "_constant_values", [(v, value.numpy()) for v, value in values])
            object.__setattr__(self, "_swapped", [])
            # Traced now, once: a tf.function would be traced again when saved (tf.saved_model.save
            # traces in a context of its own), storing the weights twice.
            object.__setattr__(self, "call_model", tf.function(
                self._for_serving(self._call_model_on_constants), autograph=False,
                input_signature=[{n: tf.TensorSpec([None, None], tf.int32, name=n) for n in token_inputs}],
            ).get_concrete_function())
        else:
            stored = {id(v): tf.Variable(value, trainable=False, name=v.name) for v, value in values
                      if id(v) in low_precision}
            self.model_variables = [stored.get(id(v), v.value) for v in model.weights]
            # Untracked on purpose, like the model: tracked, Keras variables would be saved a second time.
            object.__setattr__(self, "_swapped", [(v, stored[id(v)]) for v in model.weights if id(v) in stored])
            object.__setattr__(self, "call_model", self._call_model)
        # Tokenizers that own TF resources (e.g. SentencePiece) need tracking;
        # the preprocessor has no weights, so nothing is stored twice.
        self.preprocessor = preprocessor
        # The Session loader fuses ops differently; in bfloat16 that moves
        # probabilities by up to ~1e-3 (float32: far below 1e-4).
        self.low_precision = computes_in_low_precision(model)
        self.atol = 2e-3 if self.low_precision else 1e-4
        self.text_inputs = tuple(text_inputs)
        self.token_inputs = tuple(token_inputs)
        self.serve = tf.function(
            self._for_serving(self._serve_text),
            input_signature=[{n: tf.TensorSpec([None], tf.string, name=n) for n in self.text_inputs}])
        self.serve_examples = tf.function(
            self._for_serving(self._serve_examples),
            input_signature=[tf.TensorSpec([None], tf.string, name=EXAMPLES_INPUT)])
        self.serve_token_ids = tf.function(
            self._for_serving(self.outputs_from_token_ids),
            input_signature=[{n: tf.TensorSpec([None, None], tf.int32, name=n) for n in self.token_inputs}])

    def _for_serving(self, function):
        """`function`, traced with the model's kernels as plain ops and reading the stored weights.

        Plain ops: TF Serving's CPU build runs no XLA by default (see
        fast_kernels.portable_kernels).
        """
        @functools.wraps(function)
        def traced(*args):
            with fast_kernels.portable_kernels(), _reading(self._swapped):
                return function(*args)

        return traced

    def _call_model(self, features):
        return self._model(features, training=False)

    def _call_model_on_constants(self, features):
        # Created in this function's graph, so they are stored once, whichever signatures call it.
        with _reading([(v, tf.constant(value, name=v.path)) for v, value in self._constant_values]):
            return self._call_model(features)

    def _serve_text(self, texts):
        return self.outputs_from_text([sanitize_text(texts[n]) for n in self.text_inputs])

    def _serve_examples(self, examples):
        # A missing feature fails the request with the feature's name in the message.
        spec = {n: tf.io.FixedLenFeature([], tf.string) for n in self.text_inputs}
        parsed = tf.io.parse_example(examples, spec)
        return self.outputs_from_text([sanitize_text(parsed[n]) for n in self.text_inputs])

    def signatures(self):
        return {
            "serving_default": self.serve.get_concrete_function(),
            "serve_examples": self.serve_examples.get_concrete_function(),
            "serve_token_ids": self.serve_token_ids.get_concrete_function(),
        }

    def requests(self, columns):
        """(signature, inputs) pairs covering every signature for text `columns` (one list per text input).

        Inputs are numpy arrays, as a client would send them; used for the
        TF Serving warmup records and the export's fresh-process check.
        """
        texts = {n: request_bytes(column).numpy() for n, column in zip(self.text_inputs, columns)}
        examples = [tf.train.Example(features=tf.train.Features(feature={
            n: tf.train.Feature(bytes_list=tf.train.BytesList(value=[texts[n][i]])) for n in self.text_inputs
        })).SerializeToString() for i in range(len(columns[0]))]
        # In a graph, as the signatures tokenize (KerasHub tokenizers return lists when eager).
        tokenize = tf.function(lambda columns: self.token_ids_for([sanitize_text(c) for c in columns]),
                               autograph=False)
        token_ids = tokenize([tf.constant(texts[n]) for n in self.text_inputs])
        return [
            ("serving_default", {n: v[:1] for n, v in texts.items()}),
            ("serving_default", texts),
            ("serve_examples", {EXAMPLES_INPUT: tf.constant(examples).numpy()}),
            ("serve_token_ids", {n: tf.cast(token_ids[n], tf.int32).numpy() for n in self.token_inputs}),
        ]

    def run_request(self, signature, inputs):
        """Outputs (numpy) of one `requests()` entry in memory."""
        function = {"serving_default": self.serve, "serve_examples": self.serve_examples,
                    "serve_token_ids": self.serve_token_ids}[signature]
        argument = inputs[EXAMPLES_INPUT] if signature == "serve_examples" else inputs
        return {k: v.numpy() for k, v in function(argument).items()}


def computes_in_low_precision(model):
    return any(layer.compute_dtype != "float32" for layer in model._flatten_layers())


def _low_precision_values(model):
    """{id: tensor} for the float32 weights `model` reads only autocast to a 16-bit float, cast to it."""
    values = {}
    for layer in model._flatten_layers(include_self=True):
        if layer.compute_dtype not in ("bfloat16", "float16"):
            continue
        for variable in layer._trainable_variables + layer._non_trainable_variables:
            if variable._autocast and variable.dtype == "float32" and id(variable) not in values:
                values[id(variable)] = tf.cast(variable.value, layer.compute_dtype)
    return values


@contextlib.contextmanager
def _reading(swapped):
    """Inside, each Keras variable of the (Keras variable, tensor or tf.Variable) pairs reads the second.

    Under autocast a 16-bit value passes through unchanged, so the traced
    model computes exactly as it does with its float32 weights cast on use.
    """
    originals = [keras_variable._value for keras_variable, _ in swapped]
    for keras_variable, stored in swapped:
        keras_variable._value = stored
    try:
        yield
    finally:
        for (keras_variable, _), original in zip(swapped, originals):
            keras_variable._value = original


def sanitize_text(text):
    """Replaces invalid UTF-8 so tokenizer ops never fail on client bytes."""
    return tf.strings.unicode_transcode(text, "UTF-8", "UTF-8", errors="replace")


# Inputs every export is checked with besides real samples: an empty string,
# a text far past the sequence length (truncated), and bytes that are not
# valid UTF-8 (carried in Python strings as surrogate escapes).
EDGE_CASE_TEXTS = ("", "x " * 2000, "caf\udce9 \udcff\udcfe ok")


def request_bytes(texts):
    """A string tensor of the bytes a client would send for `texts` (surrogate escapes become raw bytes)."""
    return tf.constant([t.encode("utf-8", "surrogateescape") if isinstance(t, str) else t for t in texts])


# A request runs at its longest text's length rounded up to this: training's
# 16 padded one-sentence SST-2 requests by 29% on average (batches of 32: 17%),
# and 8 served as fast as exact lengths while keeping the distinct shapes,
# each with its own oneDNN kernels, few.
SERVING_BUCKET_WIDTH = 8


def token_features(preprocessor, inputs):
    """Tokenizes with a KerasHub classifier preprocessor, casts to int32, trims padding."""
    features = preprocessor(x=inputs)  # By keyword: a positional tuple means (x, y).
    features = {k: tf.cast(v, tf.int32) for k, v in features.items()}
    return trim_to_bucketed_length(features, "padding_mask", SERVING_BUCKET_WIDTH)
