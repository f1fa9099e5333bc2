"""Batched greedy and beam search with key/value caches, in TF graph ops.

Works with any model exposing KerasHub's Seq2SeqLM decoding interface
(`call_encoder`, `call_decoder_with_cache`, `_initialize_cache`): KerasHub's
BART and tflm's warm-started encoder-decoder. Everything is a
`tf.while_loop`, so the same function runs eagerly, inside a `tf.function`
for evaluation, and inside an exported SavedModel signature.

Beam search works as Hugging Face's does: each step takes the best
2 x beam_size extensions of the live beams by summed log-probability; those
that end go to a per-example set of beam_size finished hypotheses, scored
`sum / length ** length_penalty` (length counts generated tokens including
the end token), and the best beam_size that do not end stay live. An ended
hypothesis therefore never takes a live beam's place, and the length penalty
acts on every hypothesis that ends during the search, not only on the
survivors of the last step. Search stops when every example's finished set
is full and its worst member beats the best live beam's score at the current
length (exact for length_penalty 0), or at max_length.

`no_repeat_ngram_size` n bans any token that would repeat an n-gram the
sequence already holds (greedy and beam), the usual cure for the loops an
under-trained summarizer falls into.
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
    no_repeat_ngram_size: int = 0  # 0: off.

    def __post_init__(self):
        if self.method not in DECODING_METHODS:
            raise ValueError(f"decoding method {self.method!r}: expected one of {DECODING_METHODS}")
        if self.max_length < 1 or self.beam_size < 1:
            raise ValueError("max_length and beam_size must be >= 1")
        if self.no_repeat_ngram_size < 0:
            raise ValueError("no_repeat_ngram_size must be >= 0")

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


def _step_log_probs(logits, output, i, config):
    """Log-probabilities of the next token [R, V]; `output` [R, max_length] holds the i tokens so far."""
    log_probs = tf.nn.log_softmax(tf.cast(logits[:, -1, :], tf.float32), axis=-1)
    if config.no_repeat_ngram_size:
        log_probs = tf.where(_repeating_tokens(output, i, config.no_repeat_ngram_size, tf.shape(log_probs)[-1]),
                             _NEG_INF, log_probs)
    return log_probs


def _repeating_tokens(output, i, n, vocabulary_size):
    """[R, V] True for each token that would end an n-gram already in output[:, :i]."""
    rows, max_length = tf.shape(output)[0], output.shape[1]
    starts = max_length - n + 1  # n-grams output[:, j:j+n], j < starts.
    if starts < 1:
        return tf.zeros([rows, vocabulary_size], tf.bool)
    # The last n-1 generated tokens (clamped indices only matter when i < n, where nothing is valid).
    context = tf.gather(output, tf.maximum(i - n + 1 + tf.range(n - 1), 0), axis=1)
    matches = tf.fill([rows, starts], True)
    for k in range(n - 1):
        matches &= tf.equal(output[:, k:k + starts], context[:, k:k + 1])
    matches &= (tf.range(starts) <= i - n)[None, :]  # The whole n-gram is already generated.
    next_tokens = output[:, n - 1:n - 1 + starts]
    indices = tf.stack([tf.tile(tf.range(rows)[:, None], [1, starts]), next_tokens], axis=-1)
    counts = tf.scatter_nd(indices, tf.cast(matches, tf.int32), [rows, vocabulary_size])
    return counts > 0


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
        next_ids = tf.argmax(_step_log_probs(logits, output, i, config), axis=-1, output_type=tf.int32)
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
    example_offsets = tf.range(batch)[:, None]

    def normalized(scores, length):
        return scores / tf.pow(tf.cast(length, tf.float32), config.length_penalty)

    def cond(i, live, live_scores, done, done_scores, logits, self_cache):
        full = done_scores[:, -1] > _NEG_INF / 2
        settled = tf.logical_and(full, done_scores[:, -1] >= normalized(live_scores[:, 0], i + 1))
        return tf.logical_and(i < max_length, tf.logical_not(tf.reduce_all(settled)))

    def body(i, live, live_scores, done, done_scores, logits, self_cache):
        log_probs = _step_log_probs(logits, live, i, config)
        candidates = tf.reshape(tf.reshape(live_scores, [-1, 1]) + log_probs, [batch, beams * vocabulary_size])
        # 2k candidates: at most k of them (one per beam) end, so k stay live.
        scores, flat_index = tf.math.top_k(candidates, k=2 * beams)
        parent = flat_index // vocabulary_size + example_offsets * beams
        next_ids = flat_index % vocabulary_size
        extended = tf.where(positions == i, tf.reshape(next_ids, [-1, 1]), tf.gather(live, tf.reshape(parent, [-1])))
        extended = tf.reshape(extended, [batch, 2 * beams, max_length])
        ends = next_ids == end

        live_scores, pick = tf.math.top_k(tf.where(ends, _NEG_INF, scores), k=beams)
        live = tf.reshape(tf.gather(extended, pick, batch_dims=1), [-1, max_length])
        self_cache = tf.gather(self_cache, tf.reshape(tf.gather(parent, pick, batch_dims=1), [-1]))
        step_ids = tf.reshape(tf.gather(next_ids, pick, batch_dims=1), [-1, 1])

        merged_scores = tf.concat([done_scores, tf.where(ends, normalized(scores, i + 1), _NEG_INF)], axis=1)
        merged = tf.concat([tf.reshape(done, [batch, beams, max_length]), extended], axis=1)
        done_scores, keep = tf.math.top_k(merged_scores, k=beams)
        done = tf.reshape(tf.gather(merged, keep, batch_dims=1), [-1, max_length])

        logits, _, self_cache, _ = model.call_decoder_with_cache(
            hidden, encoder_mask, step_ids, self_cache, prompt_length + i, cross_cache, None
        )
        return i + 1, live, live_scores, done, done_scores, logits, self_cache

    empty = tf.fill([batch * beams, max_length], tf.constant(pad, tf.int32))
    # Beams start identical: only the first is live, or top-k would pick duplicates.
    live_scores = tf.tile(tf.constant([[0.0] + [_NEG_INF] * (beams - 1)]), [batch, 1])
    done_scores = tf.fill([batch, beams], _NEG_INF)
    steps, live, live_scores, done, done_scores, _, _ = tf.while_loop(
        cond, body, (tf.constant(0), empty, live_scores, empty, done_scores, logits, self_cache),
        shape_invariants=(tf.TensorShape([]), tf.TensorShape([None, max_length]), tf.TensorShape([None, beams]),
                          tf.TensorShape([None, max_length]), tf.TensorShape([None, beams]),
                          tf.TensorShape([None, None, None]), _any_batch(self_cache)),
    )
    # Beams still live at max_length compete unfinished, at their full length.
    final_scores = tf.concat([done_scores, normalized(live_scores, tf.maximum(steps, 1))], axis=1)
    final = tf.concat([tf.reshape(done, [batch, beams, max_length]), tf.reshape(live, [batch, beams, max_length])],
                      axis=1)
    return tf.gather(final, tf.argmax(final_scores, axis=-1, output_type=tf.int32), batch_dims=1)
