"""Seq2seq: data, preprocessing, warm start, freezing, generation, export (tiny models)."""

import gzip
import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from tflm import data
from tflm import export
from tflm import generation
from tflm.data import target_vocabulary
from tflm.errors import UserError
from tflm.export import seq2seq_export
from tflm.heads import build_warm_started_seq2seq
from tflm.tasks import Seq2SeqConfig
from tflm.tasks import Seq2SeqTask

SOURCES = ["a great film", "the worst movie", "a funny story", "not good at all", "great acting", "dull plot"]
TARGETS = ["ein toller Film", "der schlechteste Film", "eine lustige Geschichte", "gar nicht gut",
           "großartiges Spiel", "langweilige Handlung"]


def _write(path, lines, compress=False):
    opener = gzip.open if compress else open
    with opener(path, "wt", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    return str(path)


def _examples():
    return data.Seq2SeqExamples(list(SOURCES), list(TARGETS), "test")


def _task(preset, **overrides):
    settings = dict(backbone=preset, max_source_length=16, max_target_length=12,
                    decoding=generation.DecodingConfig("greedy", max_length=8))
    settings.update(overrides)
    return Seq2SeqTask(Seq2SeqConfig(**settings))


@pytest.fixture(scope="module")
def tiny_seq2seq(tiny_preset, tmp_path_factory):
    keras.utils.set_random_seed(1)
    task = _task(tiny_preset, target_vocabulary="sentencepiece", target_vocabulary_size=40, max_target_length=24)
    model, preprocessor = task.build_model("float32", str(tmp_path_factory.mktemp("s2s")), TARGETS * 4)
    return task, model, preprocessor


# -- data ---------------------------------------------------------------------
def test_parallel_files_with_gzip(tmp_path):
    spec = _write(tmp_path / "train.en.gz", SOURCES, compress=True) + "," + _write(tmp_path / "train.de", TARGETS)
    examples = data.read_seq2seq_examples(spec)
    assert examples.sources == SOURCES and examples.targets == TARGETS


def test_parallel_line_count_mismatch_names_both_files(tmp_path):
    spec = _write(tmp_path / "a.en", SOURCES) + "," + _write(tmp_path / "a.de", TARGETS[:-1])
    with pytest.raises(UserError, match=r"a\.en: has more lines than .*a\.de \(.*a\.de ends at line 5\)"):
        data.read_seq2seq_examples(spec)


def test_empty_target_is_an_error_with_line_or_skipped_and_counted(tmp_path, caplog):
    targets = list(TARGETS)
    targets[2] = "  "
    spec = _write(tmp_path / "a.en", SOURCES) + "," + _write(tmp_path / "a.de", targets)
    with pytest.raises(UserError, match=r"a\.de:3: empty target .*--skip_bad_rows"):
        data.read_seq2seq_examples(spec)
    examples = data.read_seq2seq_examples(spec, skip_bad_rows=True)
    assert len(examples) == 5 and "skipped 1 bad rows (1 empty target)" in caplog.text


def test_jsonl_fields_and_missing_column(tmp_path):
    path = tmp_path / "d.jsonl"
    rows = [{"dialogue": s, "summary": t} for s, t in zip(SOURCES, TARGETS)]
    rows[1] = {"dialogue": "x"}
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    with pytest.raises(UserError, match=r"d\.jsonl:2: missing column 'summary'"):
        data.read_seq2seq_examples(str(path), "dialogue", "summary")
    assert len(data.read_seq2seq_examples(str(path), "dialogue", "summary", skip_bad_rows=True)) == 5


def test_over_long_rows_are_truncated_and_counted(tiny_seq2seq, caplog):
    task, _, preprocessor = tiny_seq2seq
    examples = data.Seq2SeqExamples(SOURCES + ["great " * 40], TARGETS + ["gut"], "long.tsv")
    inputs = task.build_inputs(examples, preprocessor)
    assert "long.tsv: truncating 1 of 7 sources to --max_source_length=16" in caplog.text
    assert inputs.features["encoder_token_ids"].shape[1] == 16


def test_target_vocabulary_is_learned_once_and_reused(tmp_path):
    first = target_vocabulary.load_or_train(str(tmp_path), TARGETS * 3, 40)
    assert os.path.exists(tmp_path / target_vocabulary.VOCABULARY_FILE)
    again = target_vocabulary.load_or_train(str(tmp_path), None, 40)
    assert again.get_vocabulary() == first.get_vocabulary()
    round_trip = tf.function(lambda text: first.detokenize(first(text)))
    assert round_trip(tf.constant(["großartiges Spiel"])).numpy()[0].decode() == "großartiges Spiel"
    with pytest.raises(UserError, match="holds no target_vocabulary.spm"):
        target_vocabulary.load_or_train(str(tmp_path / "empty"), None, 40)


# -- preprocessing --------------------------------------------------------------
def test_auto_target_vocabulary_is_learned_for_an_encoder_backbone(tiny_preset, tmp_path):
    task = _task(tiny_preset, target_vocabulary="auto", target_vocabulary_size=40)
    model, _ = task.build_model("float32", str(tmp_path), TARGETS * 3)
    assert os.path.exists(tmp_path / target_vocabulary.VOCABULARY_FILE)
    assert not model.decoder.shares_source_vocabulary


def test_labels_are_decoder_inputs_shifted_by_one(tiny_seq2seq):
    _, _, preprocessor = tiny_seq2seq
    features, labels, weights = preprocessor.pack_pairs(preprocessor.source_tokenizer(tf.constant(SOURCES[:2])),
                                                        preprocessor.target_tokenizer(tf.constant(TARGETS[:2])))
    decoder_ids, labels, weights = (np.asarray(t) for t in (features["decoder_token_ids"], labels, weights))
    special = preprocessor.special_tokens
    assert (decoder_ids[:, 0] == special.start_ids[0]).all()
    for row in range(2):
        n = int(weights[row].sum())  # Target tokens plus the end token.
        assert labels[row, n - 1] == special.end_id
        np.testing.assert_array_equal(decoder_ids[row, 1:n], labels[row, :n - 1])
    text = preprocessor.decode_targets(tf.constant(labels)).numpy()
    assert [t.decode() for t in text] == TARGETS[:2]


# -- warm start and freezing ----------------------------------------------------
def test_decoder_blocks_copy_encoder_blocks_and_share_the_embedding(tiny_preset, tmp_path):
    model, _ = _task(tiny_preset).build_model("float32", str(tmp_path))
    encoder_blocks, decoder_blocks = model.encoder.transformer_layers, model.decoder.transformer_layers
    assert len(decoder_blocks) == len(encoder_blocks)
    for encoder_block, decoder_block in zip(encoder_blocks, decoder_blocks):
        for part in ("_self_attention_layer", "_feedforward_intermediate_dense", "_feedforward_layer_norm"):
            for a, b in zip(getattr(encoder_block, part).get_weights(), getattr(decoder_block, part).get_weights()):
                np.testing.assert_array_equal(a, b)
    # Shared vocabulary: one embedding matrix for encoder input, decoder input and output.
    assert model.target_token_embedding is model.encoder.token_embedding
    names = [v.path for v in model.weights]
    assert len(names) == len(set(names)), "a shared weight is stored twice"


@pytest.mark.parametrize("init, vocabulary, copied", [
    ("auto", "source", True), ("auto", "sentencepiece", False),
    ("random", "source", False), ("self_attention", "sentencepiece", True),
])
def test_cross_attention_starts_random_or_as_a_copy_of_the_encoder_self_attention(tiny_preset, tmp_path, init,
                                                                                   vocabulary, copied):
    task = _task(tiny_preset, cross_attention_init=init, target_vocabulary=vocabulary, target_vocabulary_size=40)
    model, _ = task.build_model("float32", str(tmp_path), TARGETS * 4)
    for encoder_block, decoder_block in zip(model.encoder.transformer_layers, model.decoder.transformer_layers):
        attention = [np.array_equal(a, b) for a, b in zip(encoder_block._self_attention_layer.get_weights(),
                                                          decoder_block._cross_attention_layer.get_weights())]
        assert len(attention) == 8 and all(attention) == copied
        if copied:
            for a, b in zip(encoder_block._self_attention_layer_norm.get_weights(),
                            decoder_block._cross_attention_layer_norm.get_weights()):
                np.testing.assert_array_equal(a, b)
    # The copies are separate variables: training the cross-attention leaves the encoder as it was.
    names = [v.path for v in model.weights]
    assert len(names) == len(set(names))


def test_unknown_cross_attention_init_is_a_user_error(tiny_preset, tmp_path):
    with pytest.raises(UserError, match="--cross_attention_init=copy: one of auto, random, self_attention"):
        _task(tiny_preset, cross_attention_init="copy").build_model("float32", str(tmp_path))


def test_output_head_adds_a_trainable_vocabulary_bias_in_training_and_cached_decoding(tiny_preset, tmp_path):
    task = _task(tiny_preset)
    model, preprocessor = task.build_model("float32", str(tmp_path))
    bias = model.decoder.output_bias
    assert tuple(bias.shape) == (model.encoder.vocabulary_size,)
    assert any(v is bias for v in model.trainable_variables)
    features, _ = next(iter(task.build_inputs(_examples(), preprocessor).training(6, seed=0)))
    favoured = 7  # An ordinary word piece, neither special token.
    bias.assign(tf.one_hot(favoured, bias.shape[0]) * 1e3)
    assert (tf.argmax(model(features), axis=-1).numpy() == favoured).all()
    tokens = preprocessor.special_tokens
    output = generation.generate(model, features["encoder_token_ids"], features["encoder_padding_mask"], tokens,
                                 generation.DecodingConfig("greedy", max_length=5)).numpy()
    assert (output == favoured).all()


def test_separate_target_vocabulary_gets_its_own_tied_embedding(tiny_seq2seq):
    _, model, preprocessor = tiny_seq2seq
    embedding = model.target_token_embedding
    assert embedding is not model.encoder.token_embedding
    assert embedding.input_dim == preprocessor.target_tokenizer.vocabulary_size()


def test_encoder_and_decoder_freeze_separately(tiny_preset, tmp_path):
    task = _task(tiny_preset, freeze="embeddings,bottom:1", freeze_decoder="blocks:1")
    model, preprocessor = task.build_model("float32", str(tmp_path))
    features, targets = next(iter(task.build_inputs(_examples(), preprocessor).training(4, seed=0)))
    frozen = [model.encoder.transformer_layers[0], model.decoder.transformer_layers[1]]
    trained = [model.encoder.transformer_layers[1], model.decoder.transformer_layers[0]]
    before = {id(v): v.numpy().copy() for layer in frozen + trained for v in layer.weights}
    optimizer = keras.optimizers.Adam(1e-2)
    for _ in range(2):
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(task.loss(targets, model(features, training=True)))
        optimizer.apply_gradients(zip(tape.gradient(loss, model.trainable_variables), model.trainable_variables))
    for layer in frozen:
        for v in layer.weights:
            np.testing.assert_array_equal(v.numpy(), before[id(v)])
    for layer in trained:
        assert any(not np.array_equal(v.numpy(), before[id(v)]) for v in layer.trainable_weights)


def test_bad_decoder_freeze_spec_names_the_flag(tiny_preset, tmp_path):
    with pytest.raises(UserError, match=r"--freeze_decoder: block 5 requested but the backbone has 2 blocks"):
        _task(tiny_preset, freeze_decoder="blocks:5").build_model("float32", str(tmp_path))


def test_too_many_decoder_layers_is_a_user_error(tiny_preset, tmp_path):
    with pytest.raises(UserError, match="--decoder_layers=3: the encoder has only 2 blocks"):
        _task(tiny_preset, decoder_layers=3).build_model("float32", str(tmp_path))


# -- generation -----------------------------------------------------------------
def _trained(task, model, preprocessor, steps=30):
    """A few steps of fitting so generation is not uniform noise."""
    features, targets = next(iter(task.build_inputs(_examples(), preprocessor).training(6, seed=0)))
    optimizer = keras.optimizers.Adam(3e-3)
    for _ in range(steps):
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(task.loss(targets, model(features, training=True)))
        optimizer.apply_gradients(zip(tape.gradient(loss, model.trainable_variables), model.trainable_variables))
    return features


def _sequence_log_prob(model, features, prompt, output, end_id, pad_id):
    """Teacher-forced log-probability of `output` (no cache): the reference computation."""
    batch = output.shape[0]
    decoder_ids = np.concatenate([np.tile(prompt, (batch, 1)), output[:, :-1]], axis=1)
    inputs = dict(features, decoder_token_ids=tf.constant(decoder_ids, tf.int32),
                  decoder_padding_mask=tf.ones_like(decoder_ids, tf.int32))
    log_probs = tf.nn.log_softmax(tf.cast(model(inputs), tf.float32)).numpy()[:, len(prompt) - 1:]
    totals = []
    for row in range(batch):
        total, argmax_path = 0.0, True
        for t, token in enumerate(output[row]):
            total += log_probs[row, t, token]
            argmax_path &= token == log_probs[row, t].argmax()
            if token in (end_id, pad_id):
                break
        totals.append((total, argmax_path))
    return totals


def test_cached_greedy_equals_uncached_argmax_decoding(tiny_seq2seq):
    task, model, preprocessor = tiny_seq2seq
    features = _trained(task, model, preprocessor)
    encoder = {k: features[k] for k in ("encoder_token_ids", "encoder_padding_mask")}
    tokens = preprocessor.special_tokens
    output = generation.generate(model, encoder["encoder_token_ids"], encoder["encoder_padding_mask"], tokens,
                                 generation.DecodingConfig("greedy", max_length=8)).numpy()
    assert output.shape == (6, 8)
    for _, is_argmax in _sequence_log_prob(model, encoder, tokens.start_ids, output, tokens.end_id, tokens.pad_id):
        assert is_argmax


def test_beam_search_finds_at_least_the_greedy_log_prob(tiny_seq2seq):
    task, model, preprocessor = tiny_seq2seq
    features = _trained(task, model, preprocessor, steps=5)
    encoder = {k: features[k] for k in ("encoder_token_ids", "encoder_padding_mask")}
    tokens = preprocessor.special_tokens
    outputs = {}
    for method in ("greedy", "beam"):
        config = generation.DecodingConfig(method, beam_size=4, length_penalty=0.0, max_length=8)
        ids = generation.generate(model, encoder["encoder_token_ids"], encoder["encoder_padding_mask"], tokens,
                                  config).numpy()
        outputs[method] = [s for s, _ in _sequence_log_prob(model, encoder, tokens.start_ids, ids, tokens.end_id,
                                                            tokens.pad_id)]
    for greedy, beam in zip(outputs["greedy"], outputs["beam"]):
        assert beam >= greedy - 1e-4


def test_beam_search_in_a_function_traced_with_a_static_batch(tiny_seq2seq):
    """Reordering beams leaves the cache's batch size unknown; the loop must allow that."""
    task, model, preprocessor = tiny_seq2seq
    features = _trained(task, model, preprocessor, steps=2)
    ids, mask = features["encoder_token_ids"], features["encoder_padding_mask"]
    config = generation.DecodingConfig("beam", beam_size=3, max_length=6)
    tokens = preprocessor.special_tokens
    traced = tf.function(lambda i, m: generation.generate(model, i, m, tokens, config))(ids, mask)
    assert ids.shape[0] is not None and traced.shape == (ids.shape[0], 6)
    np.testing.assert_array_equal(traced, generation.generate(model, ids, mask, tokens, config))


def test_generation_is_batch_invariant_and_pads_after_the_end(tiny_seq2seq):
    task, model, preprocessor = tiny_seq2seq
    _trained(task, model, preprocessor)
    tokens = preprocessor.special_tokens
    config = generation.DecodingConfig("beam", beam_size=3, max_length=8)
    encoded = preprocessor.encode_sources(tf.constant(SOURCES))
    together = generation.generate(model, encoded["encoder_token_ids"], encoded["encoder_padding_mask"], tokens,
                                   config).numpy()
    for i, source in enumerate(SOURCES[:3]):
        alone = preprocessor.encode_sources(tf.constant([source]))
        length = int(alone["encoder_padding_mask"].numpy().sum())
        single = generation.generate(model, alone["encoder_token_ids"][:, :length],
                                     alone["encoder_padding_mask"][:, :length], tokens, config).numpy()
        np.testing.assert_array_equal(single[0], together[i])
    for row in together:
        ends = np.flatnonzero(row == tokens.end_id)
        if ends.size:
            assert (row[ends[0] + 1:] == tokens.pad_id).all()


class _BigramDecoder:
    """A decoder whose next-token probabilities depend only on the last token (scripted search tests)."""

    PAD, START, END = 0, 1, 2

    def __init__(self, transitions, vocabulary_size):
        table = np.full((vocabulary_size, vocabulary_size), 1e-6)
        for token, following in transitions.items():
            for next_token, probability in following.items():
                table[token, next_token] = probability
        self.log_probs = tf.constant(np.log(table / table.sum(axis=1, keepdims=True)), tf.float32)

    def call_encoder(self, token_ids, padding_mask):
        return tf.zeros([tf.shape(token_ids)[0], 1, 1])

    def _initialize_cache(self, encoder_token_ids, decoder_ids):
        return tf.zeros([tf.shape(decoder_ids)[0], 1]), tf.zeros([tf.shape(decoder_ids)[0], 1])

    def call_decoder_with_cache(self, hidden, encoder_mask, decoder_ids, self_cache, index, cross_cache, cross_index):
        logits = tf.gather(self.log_probs, decoder_ids[:, -1])[:, None, :]
        return logits, None, self_cache, cross_cache


def _scripted_generate(transitions, config):
    model = _BigramDecoder(transitions, vocabulary_size=6)
    tokens = generation.SpecialTokens(start_ids=(model.START,), end_id=model.END, pad_id=model.PAD)
    return generation.generate(model, tf.ones([1, 3], tf.int32), tf.ones([1, 3], tf.int32), tokens, config).numpy()[0]


def test_beam_search_keeps_searching_past_ended_hypotheses_and_applies_the_length_penalty():
    # Token ids: 0 pad, 1 start, 2 end, 3 a, 4 b, 5 c. Ending at once has the best total log-prob (-0.69);
    # "c b <end>" has the best per-token one (-1.63 / 3). Ended hypotheses must not fill the two beams
    # (then "c b <end>" would be pruned); the length penalty must pick among everything that ended.
    transitions = {1: {2: 0.5, 3: 0.3, 5: 0.2}, 3: {2: 0.6, 4: 0.4}, 5: {4: 0.99, 2: 0.01}, 4: {2: 0.99, 3: 0.01}}
    per_token = _scripted_generate(transitions, generation.DecodingConfig("beam", 2, length_penalty=1.0, max_length=6))
    total = _scripted_generate(transitions, generation.DecodingConfig("beam", 2, length_penalty=0.0, max_length=6))
    np.testing.assert_array_equal(per_token, [5, 4, 2, 0, 0, 0])
    np.testing.assert_array_equal(total, [2, 0, 0, 0, 0, 0])


@pytest.mark.parametrize("method", ["greedy", "beam"])
def test_no_repeat_ngram_size_bans_repeated_ngrams(method):
    # Unconstrained, the likeliest continuation loops "a b a b ...".
    transitions = {1: {3: 0.9, 2: 0.1}, 3: {4: 0.7, 5: 0.2, 2: 0.1}, 4: {3: 0.8, 2: 0.2}, 5: {2: 0.9, 3: 0.1}}
    looping = _scripted_generate(transitions, generation.DecodingConfig(method, 2, max_length=8))
    assert list(looping[:4]) == [3, 4, 3, 4]
    output = _scripted_generate(transitions, generation.DecodingConfig(method, 2, max_length=8, no_repeat_ngram_size=2))
    if method == "greedy":
        np.testing.assert_array_equal(output, [3, 4, 3, 5, 2, 0, 0, 0])
    bigrams = list(zip(output, output[1:]))[:list(output).index(2)]
    assert len(bigrams) == len(set(bigrams))


# -- evaluation and export --------------------------------------------------------
def test_evaluate_decodes_and_scores_every_example(tiny_seq2seq, tmp_path):
    task, model, preprocessor = tiny_seq2seq
    examples = _examples()
    report, predictions = task.evaluate(model, preprocessor, examples.sources, examples.targets, batch_size=4)
    assert len(predictions) == len(SOURCES) and report["num_examples"] == len(SOURCES)
    assert set(report) >= {"bleu", "chrf", "rouge1", "rouge2", "rougeL", "rougeLsum"}
    task.write_eval_results(str(tmp_path), report, examples, predictions)
    lines = (tmp_path / "eval_predictions.jsonl").read_text(encoding="utf-8").splitlines()
    assert json.loads(lines[5]) == {"source": SOURCES[5], "reference": TARGETS[5], "prediction": predictions[5]}


def test_export_serves_raw_strings_like_in_memory_generation(tiny_seq2seq, tmp_path):
    task, model, preprocessor = tiny_seq2seq
    _trained(task, model, preprocessor)
    config = generation.DecodingConfig("beam", beam_size=2, max_length=8)
    samples = SOURCES[:3] + ["", "x " * 500, "caf\udcc3 latin-1 bytes"]
    path = seq2seq_export.export_seq2seq(model, preprocessor, config, export.ExportTarget(str(tmp_path), "tiny"),
                                         samples, {"task": "translation"})
    assert path.endswith(os.path.join("tiny", "1"))
    loaded = tf.saved_model.load(path)
    served = loaded.signatures["serving_default"](text=tf.constant(SOURCES[:3]))["output_text"].numpy()
    module = seq2seq_export.Seq2SeqServingModule(model, preprocessor, config)
    np.testing.assert_array_equal(served, module.serve({"text": tf.constant(SOURCES[:3])})["output_text"].numpy())
    with open(os.path.join(path, "assets.extra", "tflm_model.json"), encoding="utf-8") as f:
        assert set(json.load(f)["signatures"]["serving_default"]["outputs"]) == {"output_text"}


def test_keras_hub_seq2seq_preset_route(tmp_path):
    """A (tiny, random) KerasHub BART preset trains, generates and uses BART's packing."""
    import keras_hub

    merges = ["a i", "ai r", "Ġ air", "p l", "pl a", "n e", "pla ne", "Ġ a", "Ġa t", "p o", "r t", "po rt"]
    pieces = ["<s>", "<pad>", "</s>", "<mask>", "Ġ", "a", "i", "r", "p", "l", "n", "e", "t", "o"]
    pieces += [m.replace(" ", "") for m in merges]
    vocabulary = {piece: i for i, piece in enumerate(pieces)}
    tokenizer = keras_hub.models.BartTokenizer(vocabulary=vocabulary, merges=merges)
    backbone = keras_hub.models.BartBackbone(vocabulary_size=len(vocabulary), num_layers=1, num_heads=2, hidden_dim=8,
                                             intermediate_dim=16, max_sequence_length=32)
    preset = str(tmp_path / "bart")
    backbone.save_to_preset(preset)
    keras_hub.models.BartSeq2SeqLMPreprocessor(tokenizer).save_to_preset(preset)
    task = _task(preset, freeze="embeddings", freeze_decoder="bottom:1")
    model, preprocessor = task.build_model("float32", str(tmp_path / "run"))
    assert preprocessor.special_tokens.start_ids == (2, 0)  # BART's `</s><s>` decoder prompt.
    assert not any(v.trainable for v in model.backbone.decoder_transformer_layers[0].weights)
    assert all(v.trainable for v in model.backbone.encoder_transformer_layers[0].weights)
    # --freeze=embeddings: the encoder's, including the token embedding the two stacks share.
    for name in ("token_embedding", "encoder_position_embedding"):
        assert not any(v.trainable for v in model.backbone.get_layer(name).weights), name
    assert all(v.trainable for v in model.backbone.get_layer("decoder_position_embedding").weights)
    examples = data.Seq2SeqExamples(["airplane at airport"] * 4, ["airport airplane"] * 4, "bart")
    inputs = task.build_inputs(examples, preprocessor)
    features, targets = next(iter(inputs.training(4, seed=0)))
    loss = tf.reduce_mean(task.loss(targets, model(features)))
    assert np.isfinite(loss.numpy())
    report, predictions = task.evaluate(model, preprocessor, examples.sources, examples.targets, batch_size=4)
    assert len(predictions) == 4 and "bleu" in report
    with pytest.raises(UserError, match="--target_vocabulary, --decoder_layers and --cross_attention_init apply to "
                                          "encoder backbones"):
        _task(preset, target_vocabulary="sentencepiece").build_model("float32", str(tmp_path / "run2"))
    # translate's default: the model keeps its own vocabulary.
    _, auto_preprocessor = _task(preset, target_vocabulary="auto").build_model("float32", str(tmp_path / "run3"))
    assert auto_preprocessor.special_tokens.start_ids == (2, 0)


def test_non_bert_encoder_is_refused_for_warm_start(tmp_path):
    import keras_hub

    backbone = keras_hub.models.DistilBertBackbone(vocabulary_size=10, num_layers=1, num_heads=2, hidden_dim=8,
                                                    intermediate_dim=16, max_sequence_length=16)
    with pytest.raises(UserError, match="needs a BERT-family encoder"):
        build_warm_started_seq2seq(backbone)


def test_unknown_backbone_is_one_line(tmp_path):
    with pytest.raises(UserError, match="not a known KerasHub preset"):
        _task("no_such_preset_xyz").build_model("float32", str(tmp_path))


def test_checkpoint_restores_every_weight(tiny_preset, tmp_path):
    """Resume and best-weight restore depend on the checkpoint holding the whole model."""
    from tflm import training

    keras.utils.set_random_seed(3)
    model, _ = _task(tiny_preset).build_model("float32", str(tmp_path))
    for v in model.weights:
        v.assign(v + 1.0)
    tf.train.Checkpoint(model=model).save(str(tmp_path / "best" / "ckpt"))
    keras.utils.set_random_seed(4)
    fresh, _ = _task(tiny_preset).build_model("float32", str(tmp_path))
    training.restore_for_inference(fresh, str(tmp_path))
    assert len(fresh.weights) == len(model.weights)
    for a, b in zip(model.weights, fresh.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=a.path)
