"""Raw-text SavedModel for a text classifier.

Inputs: `text` (and `text_b` for sentence pairs), a batch of raw tf.string
(serving_default), the same fields in tf.Examples (serve_examples), or the
preprocessor's packed int32 ids (serve_token_ids; `token_ids`,
`padding_mask` and, for BERT, `segment_ids`). Outputs of every signature:
`probabilities` [B, C] float32, `label` [B] string and `label_id` [B] int32.
The tokenizer runs inside the graph, so a loading process needs only
`import tensorflow_text`.

A model trained in mixed bfloat16 is exported, by default, with the weights
it reads in bfloat16 stored in bfloat16: it computes exactly as in training
and evaluation, without casting 22 M weights on every request, and the
export is half the size. That was the fastest export at every request size
on CPU (benchmarks/README.md, "serving"). The weights are stored as graph
constants (see `serving_module`), which answered one sentence faster still.
With `float32_max_batch` > 0 the weights stay float32 variables and requests
of up to that many rows are answered in float32 instead.
"""

import contextlib

import tensorflow as tf

from tflm.export.saved_model_export import export_saved_model
from tflm.export.serving_module import ServingModule
from tflm.export.serving_module import computes_in_low_precision
from tflm.export.serving_module import token_features


class TextClassifierServingModule(ServingModule):
    """Args:
      float32_max_batch: requests of at most this many rows run the model in
        float32 whatever its dtype policy; 0: always the model's own policy,
        with the weights a 16-bit policy reads stored in its dtype.
    """

    def __init__(self, model, preprocessor, label_names, sentence_pair=False, float32_max_batch=0):
        text_inputs = ("text", "text_b") if sentence_pair else ("text",)
        token_inputs = sorted(token_features(preprocessor, tuple(tf.constant(["a"]) for _ in text_inputs)
                                             if sentence_pair else tf.constant(["a"])))
        float32_max_batch = float32_max_batch if computes_in_low_precision(model) else 0
        # The float32 path traces the model a second time, under another policy, so it reads variables.
        super().__init__(model, preprocessor, text_inputs, token_inputs, name="text_classifier",
                         low_precision_weights=not float32_max_batch, constant_weights=not float32_max_batch)
        self.label_names = tf.constant(label_names)
        self.float32_max_batch = float32_max_batch

    def token_ids_for(self, texts):
        return token_features(self.preprocessor, tuple(texts) if len(texts) > 1 else texts[0])

    def outputs_from_text(self, texts):
        return self.outputs_from_token_ids(self.token_ids_for(texts))

    def outputs_from_token_ids(self, features):
        features = dict(features)

        def logits():
            return tf.cast(self.call_model(features), tf.float32)

        def logits_in_float32():
            with computing_in_float32(self._model):
                return logits()

        if self.float32_max_batch:
            rows = tf.shape(features["token_ids"])[0]
            logits = tf.cond(rows <= self.float32_max_batch, logits_in_float32, logits)
        else:
            logits = logits()
        probabilities = tf.nn.softmax(logits, axis=-1)
        label_id = tf.argmax(probabilities, axis=-1, output_type=tf.int32)
        return {
            "probabilities": probabilities,
            "label": tf.gather(self.label_names, label_id),
            "label_id": label_id,
        }


@contextlib.contextmanager
def computing_in_float32(model):
    """Every layer of `model` computes in float32 while tracing inside this block.

    Mixed-precision layers keep float32 variables and cast them as they are
    used, so switching the policy at trace time yields a float32 graph over
    the same variables.
    """
    layers = list(model._flatten_layers(include_self=True))
    policies = [layer.dtype_policy for layer in layers]
    for layer in layers:
        layer.dtype_policy = "float32"
    try:
        yield
    finally:
        for layer, policy in zip(layers, policies):
            layer.dtype_policy = policy


def export_text_classifier(model, preprocessor, label_names, target, sample_texts, sentence_pair=False,
                           metadata=None, float32_max_batch=0):
    """Exports, verifies in a fresh process, and publishes a new version (see `export_saved_model`).

    Args:
      target: an `ExportTarget`.
      sample_texts: validation texts, one list per text input (two for pairs).
      metadata: JSON-ready dict written to assets.extra/tflm_model.json.
      float32_max_batch: see `TextClassifierServingModule`.

    Returns the version folder.
    """
    module = TextClassifierServingModule(model, preprocessor, label_names, sentence_pair, float32_max_batch)
    metadata = dict(metadata or {}, labels=list(label_names), float32_max_batch=module.float32_max_batch,
                    weights="constants" if module.constant_weights else "variables")
    return export_saved_model(module, target, sample_texts, metadata)
