"""Raw-text SavedModel for a text classifier.

Inputs: `text` (and `text_b` for sentence pairs), a batch of raw tf.string
(serving_default), the same fields in tf.Examples (serve_examples), or the
preprocessor's packed int32 ids (serve_token_ids; `token_ids`,
`padding_mask` and, for BERT, `segment_ids`). Outputs of every signature:
`probabilities` [B, C] float32, `label` [B] string and `label_id` [B] int32.
The tokenizer runs inside the graph, so a loading process needs only
`import tensorflow_text`.
"""

import tensorflow as tf

from tflm.export.saved_model_export import export_saved_model
from tflm.export.serving_module import ServingModule
from tflm.export.serving_module import token_features


class TextClassifierServingModule(ServingModule):
    def __init__(self, model, preprocessor, label_names, sentence_pair=False):
        text_inputs = ("text", "text_b") if sentence_pair else ("text",)
        token_inputs = sorted(token_features(preprocessor, tuple(tf.constant(["a"]) for _ in text_inputs)
                                             if sentence_pair else tf.constant(["a"])))
        super().__init__(model, preprocessor, text_inputs, token_inputs, name="text_classifier")
        self.label_names = tf.constant(label_names)

    def token_ids_for(self, texts):
        return token_features(self.preprocessor, tuple(texts) if len(texts) > 1 else texts[0])

    def outputs_from_text(self, texts):
        return self.outputs_from_token_ids(self.token_ids_for(texts))

    def outputs_from_token_ids(self, features):
        logits = self._model(dict(features), training=False)
        probabilities = tf.nn.softmax(tf.cast(logits, tf.float32), axis=-1)
        label_id = tf.argmax(probabilities, axis=-1, output_type=tf.int32)
        return {
            "probabilities": probabilities,
            "label": tf.gather(self.label_names, label_id),
            "label_id": label_id,
        }


def export_text_classifier(model, preprocessor, label_names, target, sample_texts, sentence_pair=False,
                           metadata=None):
    """Exports, verifies in a fresh process, and publishes a new version (see `export_saved_model`).

    Args:
      target: an `ExportTarget`.
      sample_texts: validation texts, one list per text input (two for pairs).
      metadata: JSON-ready dict written to assets.extra/tflm_model.json.

    Returns the version folder.
    """
    module = TextClassifierServingModule(model, preprocessor, label_names, sentence_pair)
    metadata = dict(metadata or {}, labels=list(label_names))
    return export_saved_model(module, target, sample_texts, metadata)
