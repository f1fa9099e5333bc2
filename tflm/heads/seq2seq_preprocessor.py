"""Source and target text to encoder/decoder token ids, and ids back to text.

One preprocessor for both seq2seq routes: the warm-started encoder-decoder
(BERT WordPiece on the source side; the same vocabulary or a learned
SentencePiece one on the target side) and KerasHub Seq2SeqLM presets (their
own tokenizer on both sides, their packing conventions). Everything is tf-text
and TF ops, so it runs in tf.data and inside exported signatures.
"""

import keras
import tensorflow as tf

from tflm.data.tokenized_dataset import SequenceGroup
from tflm.data.tokenized_dataset import trim_to_bucketed_length
from tflm.generation import decoding
from tflm.generation.decoding import SpecialTokens


class Seq2SeqPreprocessor(keras.layers.Layer):
    """Packs `[source_start] source [source_end]` and `target_start target target_end`.

    The interface every seq2seq route's preprocessor offers (see also
    `PromptCompletionPreprocessor`): `source_tokenizer` / `target_tokenizer`,
    `pack_pairs` and `sequence_groups` for training, `encode_prompts`,
    `generate` and `decode_targets` for generation, `prompt_id_inputs`,
    `encode_prompt_ids` and `prompts_from_ids` for the token-id signature.
    """

    sequence_groups = (
        SequenceGroup("encoder_padding_mask", ("encoder_token_ids", "encoder_padding_mask")),
        SequenceGroup("decoder_padding_mask", ("decoder_token_ids", "decoder_padding_mask"),
                      ("labels", "label_weights")),
    )

    def __init__(self, source_tokenizer, target_tokenizer, source_special, target_special,
                 max_source_length, max_target_length, **kwargs):
        import keras_hub

        super().__init__(trainable=False, **kwargs)
        self.source_tokenizer = source_tokenizer
        self.target_tokenizer = target_tokenizer
        # (start ids, end id, pad id) per side.
        self.source_special = source_special
        self.target_special = target_special
        self.max_source_length = max_source_length
        self.max_target_length = max_target_length
        self.source_packer = keras_hub.layers.StartEndPacker(
            sequence_length=max_source_length, start_value=list(source_special.start_ids),
            end_value=source_special.end_id, pad_value=source_special.pad_id, return_padding_mask=True,
        )
        # One longer than the decoder input: inputs are [:-1], labels [1:].
        self.target_packer = keras_hub.layers.StartEndPacker(
            sequence_length=max_target_length + len(target_special.start_ids), start_value=list(
                target_special.start_ids), end_value=target_special.end_id, pad_value=target_special.pad_id,
            return_padding_mask=True,
        )

    @property
    def special_tokens(self):
        return self.target_special

    @property
    def source_capacity(self):
        """Source tokens that fit beside the start and end tokens; longer sources are truncated."""
        return self.max_source_length - len(self.source_special.start_ids) - 1

    @property
    def target_capacity(self):
        """Target tokens that fit before the end token; longer targets are truncated."""
        return self.max_target_length - 1

    def encode_sources(self, texts):
        """{"encoder_token_ids", "encoder_padding_mask"} (int32) for a batch of strings."""
        return self._pack_sources(self.source_tokenizer(texts))

    def encode_prompts(self, texts):
        """Encoder features for generation, cut to the batch's longest source."""
        return trim_to_bucketed_length(self.encode_sources(texts), "encoder_padding_mask")

    # Inputs of the export's token-id signature: the packed encoder input.
    prompt_id_inputs = ("encoder_token_ids", "encoder_padding_mask")
    encode_prompt_ids = encode_prompts

    def prompts_from_ids(self, inputs):
        """`encode_prompt_ids`-style inputs to generation features."""
        return {k: tf.cast(inputs[k], tf.int32) for k in self.prompt_id_inputs}

    def generate(self, model, features, config):
        """Generated target ids [B, max_length] for `encode_prompts` features (greedy or beam search)."""
        return decoding.generate(model, features["encoder_token_ids"], features["encoder_padding_mask"],
                                 self.special_tokens, config)

    def _pack_sources(self, tokens):
        token_ids, mask = self.source_packer(tokens)
        return {"encoder_token_ids": tf.cast(token_ids, tf.int32), "encoder_padding_mask": tf.cast(mask, tf.int32)}

    def pack_pairs(self, source_tokens, target_tokens):
        """(features, labels, label_weights) for teacher-forced training, from ragged token ids."""
        features = self._pack_sources(source_tokens)
        packed, mask = self.target_packer(target_tokens)
        packed, mask = tf.cast(packed, tf.int32), tf.cast(mask, tf.int32)
        features["decoder_token_ids"] = packed[:, :-1]
        features["decoder_padding_mask"] = mask[:, :-1]
        # Labels are the next tokens. Positions inside a multi-token prompt
        # (BART's `</s><s>`) predict prompt tokens, which are not learned.
        prompt = len(self.target_special.start_ids)
        learned = tf.cast(tf.range(tf.shape(packed)[1] - 1) >= prompt - 1, tf.int32)
        return features, packed[:, 1:], mask[:, 1:] * learned[None, :]

    def decode_targets(self, token_ids):
        return decode_token_ids(self.target_tokenizer, self.target_special, token_ids)


def decode_token_ids(tokenizer, special, token_ids):
    """Generated ids [B, T] (prompt excluded) to strings, cut at the end token."""
    token_ids = tf.cast(token_ids, tf.int32)
    before_end = tf.cumsum(tf.cast(token_ids == special.end_id, tf.int32), axis=1) == 0
    keep = before_end & (token_ids != special.pad_id)
    for start_id in special.start_ids:
        keep &= token_ids != start_id
    return tf.strings.strip(tokenizer.detokenize(tf.ragged.boolean_mask(token_ids, keep)))


def bert_special_tokens(tokenizer):
    """[CLS] text [SEP] on both sides, as BERT2BERT does."""
    return SpecialTokens(
        start_ids=(int(tokenizer.cls_token_id),), end_id=int(tokenizer.sep_token_id),
        pad_id=int(tokenizer.pad_token_id),
    )


def sentencepiece_special_tokens(tokenizer):
    """<s> text </s> with <pad>, for vocabularies from `target_vocabulary`."""
    return SpecialTokens(
        start_ids=(int(tokenizer.token_to_id("<s>")),), end_id=int(tokenizer.token_to_id("</s>")),
        pad_id=int(tokenizer.token_to_id("<pad>")),
    )
