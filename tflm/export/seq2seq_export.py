"""String-to-string SavedModel for translation, summarization and text generation.

Signature `serving_default`: input `text`, a batch of raw tf.string; output
`output_text`, the generated strings. Tokenizer, the whole decode loop (greedy
or beam search with caches) and detokenization run inside the graph. The
same export serves encoder-decoder and decoder-only (causal LM) models: the
preprocessor of each route knows how to generate.
"""

import tensorflow as tf

from tflm.export import saved_model_versions
from tflm.export import verification
from tflm.export.serving_module import ServingModule
from tflm.export.serving_module import request_bytes
from tflm.export.serving_module import save_with_metadata
from tflm.export.serving_module import sanitize_text
from tflm.generation.text_generation import generate_text


class Seq2SeqServingModule(ServingModule):
    def __init__(self, model, preprocessor, decoding_config):
        super().__init__(model, preprocessor, name="seq2seq")
        self.decoding_config = decoding_config
        self.serve = tf.function(self._serve, input_signature=[tf.TensorSpec([None], tf.string, name="text")])

    def _serve(self, text):
        return {"output_text": generate_text(self._model, self.preprocessor, self.decoding_config,
                                             sanitize_text(text))}



def export_seq2seq(model, preprocessor, decoding_config, export_root, name, sample_texts, metadata=None,
                   version=0):
    """Exports, checks in a fresh process (both loaders, same strings), publishes a new version (0: next free)."""
    module = Seq2SeqServingModule(model, preprocessor, decoding_config)
    inputs = {"text": list(sample_texts)}
    expected = {k: v.numpy() for k, v in module.serve(request_bytes(sample_texts)).items()}

    def write(path):
        save_with_metadata(module, path, dict(metadata or {}, inputs=["text"], outputs=["output_text"]))

    def verify(path):
        verification.verify_export(path, "serving_default", inputs, expected)

    return saved_model_versions.write_new_version(export_root, name, write, verify, version)
