"""Batched greedy and beam search with key/value caches, in TF graph ops.

Works with any model exposing KerasHub's Seq2SeqLM decoding interface
(`call_encoder`, `call_decoder_with_cache`, `_initialize_cache`): KerasHub's
BART and tflm's warm-started encoder-decoder. Everything is a
`tf.while_loop`, so the same function runs eagerly, inside a `tf.function`
for evaluation, and inside an exported SavedModel signature.

The loop stops early once every sequence (every beam) has produced the end
token. Beam search ranks hypotheses by summed log-probability while
searching and picks the final one by `score / length ** length_penalty`
(length counts generated tokens including the end token), as Hugging Face's
`length_penalty` does.
"""

import dataclasses

import tensorflow as tf

DECODING_METHODS = ("greedy", "beam")
_NEG_INF = -1e9


@dataclasses.dataclass(frozen=True)
class DecodingConfig:
    method: str = "beam"
    beam_size: int = 4
    length_penalty: float = 1.0
    max_length: int = 64  # Generated tokens, end token included.

    def __post_init__(self):
        if self.method not in DECODING_METHODS:
            raise ValueError(f"decoding method {self.method!r}: expected one of {DECODING_METHODS}")
        if self.max_length < 1 or self.beam_size < 1:
            raise ValueError("max_length and beam_size must be >= 1")

    @property
    def num_beams(self):
        return self.beam_size if self.method == "beam" else 1


@dataclasses.dataclass(frozen=True)
class SpecialTokens:
    start_ids: tuple  # The decoder prompt (one id, or e.g. BART's `</s><s>`).
    end_id: int
    pad_id: int


def _decoder_prompt(batch, tokens, total_length):
    prompt = tf.constant(tokens.start_ids, tf.int32)
    prompt = tf.tile(prompt[None, :], [batch, 1])
    padding = tf.fill([batch, total_length - len(tokens.start_ids)], tf.constant(tokens.pad_id, tf.int32))
    return tf.concat([prompt, padding], axis=1)


def _any_batch(cache):
    """The cache's shape with the batch dimension left open: reordering beams loses the static size."""
    return tf.TensorShape([None]).concatenate(cache.shape[1:])


def _step_log_probs(logits):
    return tf.nn.log_softmax(tf.cast(logits[:, -1, :], tf.float32), axis=-1)


def generate(model, encoder_token_ids, encoder_padding_mask, tokens, config):
    """Generates target token ids [B, max_length] (prompt excluded), pad after the end token."""
    encoder_token_ids = tf.cast(encoder_token_ids, tf.int32)
    encoder_padding_mask = tf.cast(encoder_padding_mask, tf.int32)
    batch = tf.shape(encoder_token_ids)[0]
    beams = config.num_beams
    hidden = model.call_encoder(encoder_token_ids, encoder_padding_mask)
    if beams > 1:
        # Every beam of an example attends to the same encoder states.
        hidden = tf.repeat(hidden, beams, axis=0)
        encoder_padding_mask = tf.repeat(encoder_padding_mask, beams, axis=0)
        encoder_token_ids = tf.repeat(encoder_token_ids, beams, axis=0)
    prompt_length = len(tokens.start_ids)
    decoder_ids = _decoder_prompt(batch * beams, tokens, prompt_length + config.max_length)
    self_cache, cross_cache = model._initialize_cache(encoder_token_ids, decoder_ids)
    logits, _, self_cache, cross_cache = model.call_decoder_with_cache(
        hidden, encoder_padding_mask, decoder_ids[:, :prompt_length], self_cache, 0, cross_cache, 0
    )
    if beams == 1:
        return _greedy(model, hidden, encoder_padding_mask, logits, self_cache, cross_cache, tokens, config,
                       batch, prompt_length)
    return _beam(model, hidden, encoder_padding_mask, logits, self_cache, cross_cache, tokens, config,
                 batch, prompt_length)


def _greedy(model, hidden, encoder_mask, logits, self_cache, cross_cache, tokens, config, batch, prompt_length):
    max_length = config.max_length
    pad, end = tokens.pad_id, tokens.end_id
    positions = tf.range(max_length)[None, :]

    def cond(i, output, finished, logits, self_cache):
        return tf.logical_and(i < max_length, tf.logical_not(tf.reduce_all(finished)))

    def body(i, output, finished, logits, self_cache):
        next_ids = tf.argmax(_step_log_probs(logits), axis=-1, output_type=tf.int32)
        next_ids = tf.where(finished, pad, next_ids)
        output = tf.where(positions == i, next_ids[:, None], output)
        finished = tf.logical_or(finished, next_ids == end)
        logits, _, self_cache, _ = model.call_decoder_with_cache(
            hidden, encoder_mask, next_ids[:, None], self_cache, prompt_length + i, cross_cache, None
        )
        return i + 1, output, finished, logits, self_cache

    output = tf.fill([batch, max_length], tf.constant(pad, tf.int32))
    finished = tf.zeros([batch], tf.bool)
    _, output, _, _, _ = tf.while_loop(
        cond, body, (tf.constant(0), output, finished, logits, self_cache),
        shape_invariants=(tf.TensorShape([]), tf.TensorShape([None, max_length]), tf.TensorShape([None]),
                          tf.TensorShape([None, None, None]), _any_batch(self_cache)),
    )
    return output


def _beam(model, hidden, encoder_mask, logits, self_cache, cross_cache, tokens, config, batch, prompt_length):
    max_length, beams = config.max_length, config.beam_size
    pad, end = tokens.pad_id, tokens.end_id
    positions = tf.range(max_length)[None, :]
    vocabulary_size = tf.shape(logits)[-1]
    # A finished beam may only be extended by padding, at no cost.
    pad_only = tf.where(tf.range(vocabulary_size) == pad, 0.0, _NEG_INF)[None, :]

    def cond(i, output, finished, lengths, scores, logits, self_cache):
        return tf.logical_and(i < max_length, tf.logical_not(tf.reduce_all(finished)))

    def body(i, output, finished, lengths, scores, logits, self_cache):
        log_probs = tf.where(finished[:, None], pad_only, _step_log_probs(logits))
        candidates = tf.reshape(tf.reshape(scores, [-1, 1]) + log_probs, [batch, beams * vocabulary_size])
        scores, flat_index = tf.math.top_k(candidates, k=beams)
        parent = flat_index // vocabulary_size + tf.range(batch)[:, None] * beams
        parent = tf.reshape(parent, [-1])
        next_ids = tf.reshape(flat_index % vocabulary_size, [-1])
        output, finished, lengths = (tf.gather(t, parent) for t in (output, finished, lengths))
        self_cache = tf.gather(self_cache, parent)
        output = tf.where(positions == i, next_ids[:, None], output)
        lengths = tf.where(finished, lengths, i + 1)
        finished = tf.logical_or(finished, next_ids == end)
        logits, _, self_cache, _ = model.call_decoder_with_cache(
            hidden, encoder_mask, next_ids[:, None], self_cache, prompt_length + i, cross_cache, None
        )
        return i + 1, output, finished, lengths, scores, logits, self_cache

    output = tf.fill([batch * beams, max_length], tf.constant(pad, tf.int32))
    finished = tf.zeros([batch * beams], tf.bool)
    lengths = tf.zeros([batch * beams], tf.int32)
    # Beams start identical: only the first is live, or top-k would pick duplicates.
    scores = tf.tile(tf.constant([[0.0] + [_NEG_INF] * (beams - 1)]), [batch, 1])
    _, output, _, lengths, scores, _, _ = tf.while_loop(
        cond, body, (tf.constant(0), output, finished, lengths, scores, logits, self_cache),
        shape_invariants=(tf.TensorShape([]), tf.TensorShape([None, max_length]), tf.TensorShape([None]),
                          tf.TensorShape([None]), tf.TensorShape([None, beams]),
                          tf.TensorShape([None, None, None]), _any_batch(self_cache)),
    )
    normalized = scores / tf.pow(tf.cast(tf.reshape(tf.maximum(lengths, 1), [batch, beams]), tf.float32),
                                 config.length_penalty)
    best = tf.argmax(normalized, axis=-1, output_type=tf.int32) + tf.range(batch) * beams
    return tf.gather(output, best)
