"""An encoder-decoder warm-started from one BERT-family encoder checkpoint.

Rothe et al. 2020 ("Leveraging Pre-trained Checkpoints for Sequence
Generation Tasks", BERT2BERT): the encoder is the pretrained backbone; every
decoder block copies the self-attention and feed-forward weights of the
encoder block at the same depth; the cross-attention and a BERT-style output
head (transform and vocabulary bias before the tied projection) are new. The
cross-attention can instead start as a copy of the same block's pretrained
self-attention (`cross_attention_init="self_attention"`): encoder and decoder
states come from the same checkpoint, so the copied projections already relate
decoder queries to source tokens, where random ones (std 0.02) start with a
near-zero signal that training must grow. On SAMSum a random start stayed at
uniform attention (benchmarks/README.md), so "auto" copies whenever the
decoder shares the source vocabulary and starts random with a new target
vocabulary (new embeddings; the measured Multi30k setting). When
the target side uses the source vocabulary, the decoder shares the encoder's
token embedding and the output projection is tied to it; with a separate
target vocabulary both are new (and tied to each other).

The decoding interface (`call_encoder`, `call_decoder_with_cache`,
`_initialize_cache`) matches KerasHub's `BartSeq2SeqLM`, so one generation
implementation drives both this model and KerasHub Seq2SeqLM presets.
"""

import keras
from keras import ops

from tflm.backbones.freeze_spec import freeze_unused_pooler
from tflm.errors import UserError

CROSS_ATTENTION_INITS = ("auto", "random", "self_attention")


def _require_bert_family(backbone):
    needed = ("token_embedding", "position_embedding", "embeddings_layer_norm", "transformer_layers")
    missing = [name for name in needed if not hasattr(backbone, name)]
    if missing:
        raise UserError(
            f"backbone {type(backbone).__name__}: the warm-started encoder-decoder needs a "
            f"BERT-family encoder (BertBackbone and alike); it lacks {missing}"
        )


class WarmStartedDecoder(keras.Model):
    """Decoder embeddings and blocks; built and warm-started from an encoder."""

    def __init__(self, encoder, target_vocabulary_size=None, num_layers=None, dropout=0.1, **kwargs):
        import keras_hub

        super().__init__(dtype=encoder.dtype_policy, **kwargs)
        hidden_dim = encoder.hidden_dim
        init = keras.initializers.TruncatedNormal(stddev=0.02)
        self.shares_source_vocabulary = target_vocabulary_size is None
        if not self.shares_source_vocabulary:
            self.token_embedding = keras.layers.ReversibleEmbedding(
                target_vocabulary_size, hidden_dim, tie_weights=True, embeddings_initializer=init,
                dtype=encoder.dtype_policy, name="decoder_token_embedding",
            )
            self.token_embedding.build((None, None))
        self.position_embedding = keras_hub.layers.PositionEmbedding(
            encoder.position_embedding.sequence_length, initializer=init, dtype=encoder.dtype_policy,
            name="decoder_position_embedding",
        )
        self.position_embedding.build((None, None, hidden_dim))
        self.embeddings_layer_norm = keras.layers.LayerNormalization(
            epsilon=encoder.embeddings_layer_norm.epsilon, dtype=encoder.dtype_policy,
            name="decoder_embeddings_layer_norm",
        )
        self.embeddings_layer_norm.build((None, None, hidden_dim))
        self.embeddings_dropout = keras.layers.Dropout(dropout, dtype=encoder.dtype_policy)
        encoder_blocks = encoder.transformer_layers
        num_layers = num_layers or len(encoder_blocks)
        if num_layers > len(encoder_blocks):
            raise UserError(
                f"--decoder_layers={num_layers}: the encoder has only {len(encoder_blocks)} blocks "
                "to warm-start from"
            )
        blocks = []
        for i in range(num_layers):
            block = keras_hub.layers.TransformerDecoder(
                intermediate_dim=encoder.intermediate_dim, num_heads=encoder.num_heads, dropout=dropout,
                activation=encoder_blocks[i].activation, layer_norm_epsilon=encoder_blocks[i].layer_norm_epsilon,
                kernel_initializer=init, dtype=encoder.dtype_policy, name=f"decoder_layer_{i}",
            )
            block.build((None, None, hidden_dim), (None, None, hidden_dim))
            # One attribute per block: TF checkpoints do not see into Keras-tracked lists.
            setattr(self, f"block_{i}", block)
            blocks.append(block)
        self.transformer_layers = blocks
        # BERT's masked-LM head: Dense + activation + LayerNorm, then the tied projection plus a
        # per-token bias. Encoder checkpoints such as the bundled one ship without it, so it starts
        # fresh; projecting the last block's states straight onto the embeddings gives nearly flat
        # logits (std ~0.6 over MiniLM's 30k tokens) that the model must first learn to sharpen.
        self.output_transform = keras.layers.Dense(
            hidden_dim, activation=encoder_blocks[0].activation, kernel_initializer=init,
            dtype=encoder.dtype_policy, name="decoder_output_transform",
        )
        self.output_transform.build((None, None, hidden_dim))
        self.output_layer_norm = keras.layers.LayerNormalization(
            epsilon=encoder.embeddings_layer_norm.epsilon, dtype=encoder.dtype_policy,
            name="decoder_output_layer_norm",
        )
        self.output_layer_norm.build((None, None, hidden_dim))
        self.output_bias = self.add_weight(
            shape=(target_vocabulary_size or encoder.vocabulary_size,), initializer="zeros", name="output_bias",
        )
        self.hidden_dim = hidden_dim
        self.num_heads = encoder.num_heads
        self.built = True  # Every sublayer was built above.

    def warm_start(self, encoder, cross_attention_init="auto"):
        """Copies the encoder's weights into every decoder part that has a twin.

        `cross_attention_init="self_attention"` (or "auto" with a shared vocabulary) also copies each encoder
        block's self-attention (and its LayerNorm) into the decoder block's cross-attention.
        """
        if cross_attention_init not in CROSS_ATTENTION_INITS:
            raise UserError(
                f"--cross_attention_init={cross_attention_init}: one of {', '.join(CROSS_ATTENTION_INITS)}")
        copy_cross_attention = cross_attention_init == "self_attention" or (
            cross_attention_init == "auto" and self.shares_source_vocabulary)
        positions = ops.convert_to_numpy(encoder.position_embedding.position_embeddings)
        # BERT adds segment 0's embedding to every token; fold it into the positions.
        segment = ops.convert_to_numpy(encoder.segment_embedding.embeddings)[0] if hasattr(
            encoder, "segment_embedding") else 0.0
        self.position_embedding.set_weights([positions + segment])
        self.embeddings_layer_norm.set_weights(encoder.embeddings_layer_norm.get_weights())
        for block, source in zip(self.transformer_layers, encoder.transformer_layers):
            for part in ("_self_attention_layer", "_self_attention_layer_norm",
                         "_feedforward_intermediate_dense", "_feedforward_output_dense",
                         "_feedforward_layer_norm"):
                getattr(block, part).set_weights(getattr(source, part).get_weights())
            if copy_cross_attention:
                block._cross_attention_layer.set_weights(source._self_attention_layer.get_weights())
                block._cross_attention_layer_norm.set_weights(source._self_attention_layer_norm.get_weights())


class WarmStartedSeq2SeqLM(keras.Model):
    """Encoder-decoder LM: `call(features)` gives next-token logits [B, T, V]."""

    def __init__(self, encoder, decoder, **kwargs):
        super().__init__(dtype=encoder.dtype_policy, **kwargs)
        _require_bert_family(encoder)
        self.encoder = encoder
        self.decoder = decoder
        self.built = True  # Both parts arrive built.

    @property
    def target_token_embedding(self):
        if self.decoder.shares_source_vocabulary:
            return self.encoder.token_embedding
        return self.decoder.token_embedding

    # -- the decoding interface shared with KerasHub Seq2SeqLM ----------------
    def call_encoder(self, token_ids, padding_mask, training=False):
        outputs = self.encoder(
            {"token_ids": token_ids, "segment_ids": ops.zeros_like(token_ids), "padding_mask": padding_mask},
            training=training,
        )
        return outputs["sequence_output"]

    def _embed_targets(self, token_ids, start_index=0, training=False):
        tokens = self.target_token_embedding(token_ids)
        x = tokens + self.decoder.position_embedding(tokens, start_index=start_index)
        x = self.decoder.embeddings_layer_norm(x)
        return self.decoder.embeddings_dropout(x, training=training)

    def _logits(self, hidden_states):
        x = self.decoder.output_layer_norm(self.decoder.output_transform(hidden_states))
        logits = self.target_token_embedding(x, reverse=True)
        return logits + ops.cast(self.decoder.output_bias, logits.dtype)

    def call_decoder_with_cache(self, encoder_hidden_states, encoder_padding_mask, decoder_token_ids,
                                self_attention_cache=None, self_attention_cache_update_index=None,
                                cross_attention_cache=None, cross_attention_cache_update_index=None):
        start = 0 if self_attention_cache_update_index is None else self_attention_cache_update_index
        x = self._embed_targets(decoder_token_ids, start_index=start)
        self_caches, cross_caches = [], []
        for i, block in enumerate(self.decoder.transformer_layers):
            x, next_self_cache, next_cross_cache = block(
                decoder_sequence=x, encoder_sequence=encoder_hidden_states,
                encoder_padding_mask=encoder_padding_mask,
                self_attention_cache=self_attention_cache[:, i, ...],
                self_attention_cache_update_index=self_attention_cache_update_index,
                cross_attention_cache=cross_attention_cache[:, i, ...],
                cross_attention_cache_update_index=cross_attention_cache_update_index,
            )
            self_caches.append(next_self_cache)
            cross_caches.append(next_cross_cache)
        if self_attention_cache_update_index is not None:
            self_attention_cache = ops.stack(self_caches, axis=1)
        if cross_attention_cache_update_index is not None:
            cross_attention_cache = ops.stack(cross_caches, axis=1)
        return self._logits(x), x, self_attention_cache, cross_attention_cache

    def _initialize_cache(self, encoder_token_ids, decoder_token_ids):
        batch = ops.shape(encoder_token_ids)[0]
        head_dim = self.decoder.hidden_dim // self.decoder.num_heads
        shape = [batch, len(self.decoder.transformer_layers), 2, ops.shape(decoder_token_ids)[1],
                 self.decoder.num_heads, head_dim]
        self_cache = ops.zeros(shape, dtype=self.compute_dtype)
        shape[3] = ops.shape(encoder_token_ids)[1]
        return self_cache, ops.zeros(shape, dtype=self.compute_dtype)

    # -- teacher-forced training ----------------------------------------------
    def call(self, inputs, training=False):
        encoder_output = self.call_encoder(inputs["encoder_token_ids"], inputs["encoder_padding_mask"], training)
        x = self._embed_targets(inputs["decoder_token_ids"], training=training)
        for block in self.decoder.transformer_layers:
            x = block(
                decoder_sequence=x, encoder_sequence=encoder_output,
                decoder_padding_mask=inputs["decoder_padding_mask"],
                encoder_padding_mask=inputs["encoder_padding_mask"], training=training,
            )
        return self._logits(x)


def build_warm_started_seq2seq(backbone, target_vocabulary_size=None, decoder_layers=None, dropout=0.1,
                               cross_attention_init="auto"):
    """BERT2BERT from `backbone`; `target_vocabulary_size` None shares the source vocabulary."""
    _require_bert_family(backbone)
    decoder = WarmStartedDecoder(backbone, target_vocabulary_size, decoder_layers, dropout, name="decoder")
    decoder.warm_start(backbone, cross_attention_init)
    freeze_unused_pooler(backbone)
    return WarmStartedSeq2SeqLM(backbone, decoder, name="warm_started_seq2seq_lm")
