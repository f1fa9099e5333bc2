"""Raw-text SavedModel for a text classifier.

Signature `serving_default`: input `text` (and `text_b` for sentence pairs),
a batch of raw tf.string; outputs `probabilities` [B, C] float32, `label` [B]
string and `label_id` [B] int32. The tokenizer runs inside the graph, so a
loading process needs only `import tensorflow_text`.
"""

import tensorflow as tf

from tflm.export import saved_model_versions
from tflm.export import verification
from tflm.export.serving_module import ServingModule
from tflm.export.serving_module import request_bytes
from tflm.export.serving_module import save_with_metadata
from tflm.export.serving_module import sanitize_text
from tflm.export.serving_module import token_features


class TextClassifierServingModule(ServingModule):
    def __init__(self, model, preprocessor, label_names, sentence_pair=False):
        super().__init__(model, preprocessor, name="text_classifier")
        self.label_names = tf.constant(label_names)
        self.sentence_pair = sentence_pair
        specs = [tf.TensorSpec([None], tf.string, name="text")]
        if sentence_pair:
            specs.append(tf.TensorSpec([None], tf.string, name="text_b"))
        self.serve = tf.function(self._serve, input_signature=specs)

    def _serve(self, text, text_b=None):
        inputs = sanitize_text(text)
        if text_b is not None:
            inputs = (inputs, sanitize_text(text_b))
        logits = self._model(token_features(self.preprocessor, inputs), training=False)
        probabilities = tf.nn.softmax(tf.cast(logits, tf.float32), axis=-1)
        label_id = tf.argmax(probabilities, axis=-1, output_type=tf.int32)
        return {
            "probabilities": probabilities,
            "label": tf.gather(self.label_names, label_id),
            "label_id": label_id,
        }


def export_text_classifier(model, preprocessor, label_names, export_root, name,
                           sample_texts, sentence_pair=False, metadata=None, version=0):
    """Exports, verifies in a fresh process, and publishes a new version.

    Args:
      sample_texts: a list of text columns (one, or two for pairs) used to
        check the export against the in-memory model.
      metadata: JSON-ready dict written to assets.extra/tflm_model.json.
      version: version number to publish; 0: the next free one.

    Returns the version folder.
    """
    module = TextClassifierServingModule(model, preprocessor, label_names, sentence_pair)
    input_names = ["text", "text_b"][: len(sample_texts)]
    inputs = {n: list(column) for n, column in zip(input_names, sample_texts)}
    expected = {k: v.numpy() for k, v in module.serve(**{k: request_bytes(v) for k, v in inputs.items()}).items()}

    def write(path):
        save_with_metadata(module, path, dict(metadata or {}, labels=list(label_names), inputs=input_names))

    def verify(path):
        verification.verify_export(path, "serving_default", inputs, expected)

    return saved_model_versions.write_new_version(export_root, name, write, verify, version)
