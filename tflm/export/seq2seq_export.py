"""String-to-string SavedModel for translation, summarization and text generation.

Inputs: `text`, a batch of raw tf.string (serving_default), the same field
in tf.Examples (serve_examples), or the preprocessor's packed prompt ids
(serve_token_ids; encoder-decoder: `encoder_token_ids`,
`encoder_padding_mask`; decoder-only: `token_ids`, `padding_mask` of
`[start] prompt [sep]`). Text signatures output `output_text`, the generated
strings; serve_token_ids outputs `output_token_ids` [B, max_length]
(end token, then end/pad ids). Tokenizer, the whole decode loop (greedy or
beam search with caches) and detokenization run inside the graph.
"""

import tensorflow as tf

from tflm.export.saved_model_export import export_saved_model
from tflm.export.serving_module import ServingModule
from tflm.generation.text_generation import generate_text


class Seq2SeqServingModule(ServingModule):
    def __init__(self, model, preprocessor, decoding_config):
        super().__init__(model, preprocessor, ("text",), preprocessor.prompt_id_inputs, name="seq2seq")
        self.decoding_config = decoding_config
        if self.low_precision:
            # bfloat16 logits tie often enough that the Session loader's
            # differently fused kernels can pick another beam now and then.
            self.min_row_agreement = 0.75

    def token_ids_for(self, texts):
        return self.preprocessor.encode_prompt_ids(texts[0])

    def outputs_from_text(self, texts):
        return {"output_text": generate_text(self._model, self.preprocessor, self.decoding_config, texts[0])}

    def outputs_from_token_ids(self, features):
        prompts = self.preprocessor.prompts_from_ids(features)
        token_ids = self.preprocessor.generate(self._model, prompts, self.decoding_config)
        return {"output_token_ids": tf.cast(token_ids, tf.int32)}


def export_seq2seq(model, preprocessor, decoding_config, target, sample_texts, metadata=None):
    """Exports, checks in a fresh process, publishes a new version (see `export_saved_model`)."""
    module = Seq2SeqServingModule(model, preprocessor, decoding_config)
    return export_saved_model(module, target, [list(sample_texts)], metadata)
