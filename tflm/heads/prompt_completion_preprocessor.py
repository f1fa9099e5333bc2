"""Prompt and completion text for a decoder-only (causal) LM, and generation from prompts.

Lets KerasHub CausalLM presets (GPT-2 and alike) serve as seq2seq models:
`[start] prompt [sep] completion [end]` is one sequence, the loss covers the
completion and the end token only, and generation continues `[start] prompt
[sep]` until the end token. The separator is the end token (GPT-2's
`<|endoftext|>` is start, end and padding alike), so no new token is needed.
Generation runs the model family's own cached `generate_step` (greedy or
beam), which handles prompts of different lengths in one batch.
"""

import keras
import tensorflow as tf

from tflm.data.tokenized_dataset import SequenceGroup
from tflm.generation.decoding import SpecialTokens
from tflm.heads.seq2seq_preprocessor import decode_token_ids


class PromptCompletionPreprocessor(keras.layers.Layer):
    """The seq2seq preprocessor interface (see `Seq2SeqPreprocessor`) for decoder-only models."""

    sequence_groups = (SequenceGroup("padding_mask", ("token_ids", "padding_mask"), ("labels", "label_weights")),)

    def __init__(self, tokenizer, max_source_length, max_target_length, **kwargs):
        super().__init__(trainable=False, **kwargs)
        self.source_tokenizer = self.target_tokenizer = tokenizer
        end = int(tokenizer.end_token_id)
        start = int(getattr(tokenizer, "start_token_id", None) or end)
        # Padding is masked out of attention; using the end id keeps a real
        # vocabulary token (GPT-2's pad id 0 is "!") out of decoding's way.
        self.special_tokens = SpecialTokens(start_ids=(start,), end_id=end, pad_id=end)
        self.max_source_length = max_source_length
        self.max_target_length = max_target_length

    @property
    def source_capacity(self):
        """Prompt tokens that fit beside the start and separator tokens."""
        return self.max_source_length - 2

    @property
    def target_capacity(self):
        """Completion tokens that fit before the end token."""
        return self.max_target_length - 1

    def _column(self, token_id, rows):
        return tf.RaggedTensor.from_tensor(tf.fill([rows, 1], tf.constant(token_id, tf.int32)))

    def _prompts(self, source_tokens):
        if not isinstance(source_tokens, tf.RaggedTensor):  # KerasHub tokenizers return lists when eager.
            source_tokens = tf.ragged.constant(source_tokens, dtype=tf.int32, ragged_rank=1)
        rows = source_tokens.nrows()
        special = self.special_tokens
        return tf.concat([self._column(special.start_ids[0], rows),
                          tf.cast(source_tokens[:, :self.source_capacity], tf.int32),
                          self._column(special.end_id, rows)], axis=1)

    def pack_pairs(self, source_tokens, target_tokens):
        """(features, labels, label_weights) for teacher-forced training, from ragged token ids."""
        prompts = self._prompts(source_tokens)
        completions = tf.concat([tf.cast(target_tokens[:, :self.target_capacity], tf.int32),
                                 self._column(self.special_tokens.end_id, target_tokens.nrows())], axis=1)
        sequences = tf.concat([prompts, completions], axis=1)
        length = self.max_source_length + self.max_target_length
        packed = sequences.to_tensor(default_value=self.special_tokens.pad_id, shape=[None, length])
        total = tf.cast(sequences.row_lengths(), tf.int32)
        # Position i predicts token i + 1: learned from the separator (which
        # predicts the first completion token) up to the end token.
        positions = tf.range(length - 1)[None, :]
        learned = (positions >= tf.cast(prompts.row_lengths(), tf.int32)[:, None] - 1) & (positions < total[:, None] - 1)
        features = {"token_ids": packed[:, :-1],
                    "padding_mask": tf.sequence_mask(total, length, tf.int32)[:, :-1]}
        return features, packed[:, 1:], tf.cast(learned, tf.int32)

    # Inputs of the export's token-id signature: packed `[start] prompt [sep]`
    # ids, left-aligned, and their mask (what `encode_prompt_ids` returns).
    prompt_id_inputs = ("token_ids", "padding_mask")

    def encode_prompt_ids(self, texts):
        """Packed prompts as a client that tokenizes itself sends them (int32, padded to the longest)."""
        prompts = self._prompts(self.source_tokenizer(texts))
        return {"token_ids": prompts.to_tensor(default_value=self.special_tokens.pad_id),
                "padding_mask": tf.sequence_mask(prompts.row_lengths(), dtype=tf.int32)}

    def prompts_from_ids(self, inputs):
        """`encode_prompt_ids`-style inputs to generation features."""
        lengths = tf.reduce_sum(tf.cast(inputs["padding_mask"], tf.int32), axis=1)
        return self._generation_features(tf.RaggedTensor.from_tensor(tf.cast(inputs["token_ids"], tf.int32),
                                                                     lengths=lengths))

    def encode_prompts(self, texts):
        """`[start] prompt [sep]` padded with room for `max_target_length` generated tokens."""
        return self._generation_features(self._prompts(self.source_tokenizer(texts)))

    def _generation_features(self, prompts):
        lengths = tf.cast(prompts.row_lengths(), tf.int32)
        length = tf.reduce_max(lengths) + self.max_target_length
        # The slots to generate into must not hold the end id: KerasHub's
        # sampler reads an end id outside the prompt as already generated.
        filler = 0 if self.special_tokens.end_id != 0 else 1
        token_ids = prompts.to_tensor(default_value=filler)
        token_ids = tf.pad(token_ids, [[0, 0], [0, length - tf.shape(token_ids)[1]]], constant_values=filler)
        return {"token_ids": token_ids, "padding_mask": tf.sequence_mask(lengths, length)}

    def generate(self, model, features, config):
        """Generated completion ids [B, max_length] (prompt excluded), end token then padding."""
        import keras_hub

        model.sampler = (keras_hub.samplers.BeamSampler(num_beams=config.beam_size) if config.method == "beam"
                         else keras_hub.samplers.GreedySampler())
        end = self.special_tokens.end_id
        output = model.generate_step(features, stop_token_ids=(end,))
        prompt_lengths = tf.reduce_sum(tf.cast(features["padding_mask"], tf.int32), axis=1)
        steps = min(config.max_length, self.max_target_length)
        window = prompt_lengths[:, None] + tf.range(steps)[None, :]
        generated = tf.gather(tf.cast(output["token_ids"], tf.int32), window, batch_dims=1)
        kept = tf.gather(tf.cast(output["padding_mask"], tf.bool), window, batch_dims=1)
        return tf.where(kept, generated, end)

    def decode_targets(self, token_ids):
        return decode_token_ids(self.target_tokenizer, self.special_tokens, token_ids)
