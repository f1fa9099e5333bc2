"""Continued pretraining: corpus reading, MLM masking, perplexity, presets, the pipeline (tiny models)."""

import gzip
import json
import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from tests.conftest import run_module
from tflm import backbones
from tflm.data import text_corpus
from tflm.data.masked_lm_dataset import MaskedLMDataset
from tflm.data.masking import MaskingConfig
from tflm.data.masking import mask_batch
from tflm.errors import UserError
from tflm.metrics import perplexity
from tflm.tasks import LanguageModelConfig
from tflm.tasks import LanguageModelTask
from tflm.tasks import Seq2SeqConfig
from tflm.tasks import Seq2SeqTask

PAD, CLS, SEP, MASK = 0, 2, 3, 4
TEXTS = ["the movie was great", "a dull and boring plot", "great acting , great story", "not good at all",
         "the worst film", "a funny story", "i loved it", "bad"]


# -- corpus ---------------------------------------------------------------------
def test_corpus_from_text_jsonl_and_gz_files(tmp_path):
    (tmp_path / "a.txt").write_text("first doc\n\n  \nsecond doc\n", encoding="utf-8")
    with gzip.open(tmp_path / "b.jsonl.gz", "wt", encoding="utf-8") as f:
        f.write(json.dumps({"dialogue": "third"}) + "\n")
    corpus = text_corpus.read_text_corpus(f"{tmp_path / 'a.txt'},{tmp_path / 'b.jsonl.gz'}", text_field="dialogue")
    assert corpus.texts == ["first doc", "second doc", "third"]


def test_empty_corpus_and_bad_rows_are_clear(tmp_path):
    (tmp_path / "blank.txt").write_text("\n \n", encoding="utf-8")
    with pytest.raises(UserError, match=r"blank\.txt: empty corpus"):
        text_corpus.read_text_corpus(str(tmp_path / "blank.txt"))
    (tmp_path / "c.jsonl").write_text('{"text": "ok"}\n{"body": "x"}\n', encoding="utf-8")
    with pytest.raises(UserError, match=r"c\.jsonl:2: missing column 'text'"):
        text_corpus.read_text_corpus(str(tmp_path / "c.jsonl"))
    assert text_corpus.read_text_corpus(str(tmp_path / "c.jsonl"), skip_bad_rows=True).texts == ["ok"]
    (tmp_path / "notes.md").write_text("a doc\n", encoding="utf-8")
    with pytest.raises(UserError, match=r"notes\.md: cannot tell .* one of csv, tsv, jsonl, text$"):
        text_corpus.read_text_corpus(str(tmp_path / "notes.md"))
    assert text_corpus.read_text_corpus(str(tmp_path / "notes.md"), data_format="text").texts == ["a doc"]


# -- masking ----------------------------------------------------------------------
def _batch(rows=64, length=24, seed=0):
    rng = np.random.default_rng(seed)
    lengths = rng.integers(3, length + 1, size=rows)
    ids = np.full((rows, length), PAD)
    for r, n in enumerate(lengths):
        ids[r, :n] = np.concatenate([[CLS], rng.integers(5, 50, size=n - 2), [SEP]])
    return tf.constant(ids, tf.int32), tf.constant((ids != PAD).astype(np.int32))


def test_masking_selects_only_real_tokens_at_the_rate_and_keeps_the_originals():
    ids, mask = _batch()
    config = MaskingConfig.for_sequence_length(24, 0.15, mask_token_id=MASK, vocabulary_size=50,
                                               unmaskable_ids=(PAD, CLS, SEP))
    masked, positions, labels, weights = (t.numpy() for t in mask_batch(ids, mask, config, tf.constant([1, 2])))
    ids = ids.numpy()
    for r in range(len(ids)):
        used = positions[r][weights[r] > 0]
        maskable = int(((ids[r] != PAD) & (ids[r] != CLS) & (ids[r] != SEP)).sum())
        assert len(used) == min(max(round(0.15 * maskable), 1), config.max_predictions)
        assert len(set(used)) == len(used)
        assert all(ids[r, p] not in (PAD, CLS, SEP) for p in used)
        np.testing.assert_array_equal(labels[r][weights[r] > 0], ids[r, used])
        unselected = np.setdiff1d(np.arange(ids.shape[1]), used)
        np.testing.assert_array_equal(masked[r, unselected], ids[r, unselected])
    # 80% [MASK], 10% random, 10% kept, over many selections.
    big_ids, big_mask = _batch(rows=2000, seed=1)
    big = mask_batch(big_ids, big_mask, config, tf.constant([3, 4]))
    picked = tf.gather(big[0], big[1], batch_dims=1).numpy()[big[3].numpy() > 0]
    assert abs((picked == MASK).mean() - 0.8) < 0.03


def test_masks_are_a_function_of_seed_and_batch_number():
    ids, mask = _batch(rows=40)
    config = MaskingConfig.for_sequence_length(24, 0.3, mask_token_id=MASK, vocabulary_size=50,
                                               unmaskable_ids=(PAD, CLS, SEP))
    features = {"token_ids": ids.numpy(), "padding_mask": mask.numpy()}
    dataset = MaskedLMDataset(features, config, eval_seed=5)
    stream = [b for b in dataset.training(8, seed=7).take(6)]
    resumed = [b for b in dataset.training(8, seed=7).skip(4).take(2)]
    for (a_features, a_targets), (b_features, b_targets) in zip(stream[4:], resumed):
        np.testing.assert_array_equal(a_features["token_ids"], b_features["token_ids"])
        np.testing.assert_array_equal(a_targets["labels"], b_targets["labels"])
    first, second = (list(dataset.evaluation(16)) for _ in range(2))
    for (a, _), (b, _) in zip(first, second):
        np.testing.assert_array_equal(a["mask_positions"], b["mask_positions"])
    other = next(iter(dataset.training(8, seed=8)))[0]["token_ids"].numpy()
    assert not np.array_equal(other, stream[0][0]["token_ids"].numpy())


# -- perplexity -------------------------------------------------------------------
def test_perplexity_counts_weighted_tokens_only():
    logits = np.log(np.array([[[0.5, 0.25, 0.25], [0.1, 0.8, 0.1], [0.3, 0.3, 0.4]],
                              [[0.2, 0.2, 0.6], [0.9, 0.05, 0.05], [1 / 3, 1 / 3, 1 / 3]]]))
    labels = np.array([[0, 1, 2], [2, 1, 0]])
    weights = np.array([[1, 1, 0], [1, 0, 0]])  # Padding / unused slots may hold anything.
    logits[0, 2] = logits[1, 1] = [1e4, -1e4, 0.0]
    nll, count, correct = (float(t) for t in perplexity.token_statistics(logits, labels, weights))
    by_hand = -(math.log(0.5) + math.log(0.8) + math.log(0.6))
    assert count == 3 and correct == 3 and nll == pytest.approx(by_hand, rel=1e-5)
    report = perplexity.language_model_report(nll, count, correct)
    assert report["perplexity"] == pytest.approx((0.5 * 0.8 * 0.6) ** (-1 / 3), rel=1e-5)


@pytest.fixture(scope="module")
def masked_lm(tiny_preset):
    keras.utils.set_random_seed(0)
    task = LanguageModelTask(LanguageModelConfig(backbone=tiny_preset, max_seq_length=16, mask_rate=0.3))
    model, preprocessor = task.build_model("float32")
    return task, model, preprocessor


def test_task_perplexity_equals_a_hand_computation_over_masked_tokens(masked_lm):
    task, model, preprocessor = masked_lm
    assert task.objective == "mlm"
    inputs = task.build_inputs(text_corpus.TextCorpus(TEXTS), preprocessor, seed=3)
    report, _ = task.evaluate(model, inputs, batch_size=3)
    total, count = 0.0, 0
    for features, targets in inputs.evaluation(3):
        probabilities = tf.nn.softmax(tf.cast(model(features), tf.float64)).numpy()
        for row, positions in enumerate(targets["label_weights"].numpy()):
            for slot in np.flatnonzero(positions):
                total -= math.log(probabilities[row, slot, targets["labels"].numpy()[row, slot]])
                count += 1
    assert report["tokens"] == count and report["perplexity"] == pytest.approx(math.exp(total / count), rel=1e-4)


def test_mlm_preset_is_loaded_by_the_other_pipelines(masked_lm, tmp_path):
    task, model, preprocessor = masked_lm
    for v in model.backbone.weights:
        v.assign(v + 0.01)  # Stands in for training: the preset must hold these weights.
    path = task.export_preset(model, preprocessor, str(tmp_path / "preset"), TEXTS[:2])
    backbone, _ = backbones.load_backbone(path)
    for a, b in zip(model.backbone.weights, backbone.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    seq2seq, _ = Seq2SeqTask(Seq2SeqConfig(backbone=path, max_source_length=16, max_target_length=8)).build_model(
        "float32", str(tmp_path / "s2s"))
    np.testing.assert_array_equal(seq2seq.encoder.token_embedding.embeddings.numpy(),
                                  model.backbone.token_embedding.embeddings.numpy())
    assert task.export_preset(model, preprocessor, path, TEXTS[:2]) == path  # Replacing an export works.


def test_causal_lm_on_tiny_random_gpt2(tmp_path):
    task = LanguageModelTask(LanguageModelConfig(backbone=backbones.TINY_RANDOM_GPT2, max_seq_length=32))
    model, preprocessor = task.build_model("float32")
    assert task.objective == "causal_lm"
    inputs = task.build_inputs(text_corpus.TextCorpus(TEXTS), preprocessor, seed=0)
    features, targets = next(iter(inputs.evaluation(len(TEXTS))))
    # Every next token of the text is predicted (the last real position has none), nothing else.
    np.testing.assert_array_equal(targets["label_weights"].numpy().sum(axis=1),
                                  features["padding_mask"].numpy().sum(axis=1) - 1)
    report, _ = task.evaluate(model, inputs, batch_size=4)
    assert report["tokens"] == int(targets["label_weights"].numpy().sum())
    path = task.export_preset(model, preprocessor, str(tmp_path / "gpt2"), TEXTS[:2])
    _, reloaded = Seq2SeqTask(Seq2SeqConfig(backbone=path, max_source_length=16, max_target_length=8)).build_model(
        "float32", str(tmp_path / "gen"))
    assert reloaded.special_tokens.end_id == preprocessor.tokenizer.end_token_id


def test_causal_lm_counts_as_truncated_only_texts_that_lose_tokens(caplog):
    text = TEXTS[0]
    probe = LanguageModelTask(LanguageModelConfig(backbone=backbones.TINY_RANDOM_GPT2, max_seq_length=32))
    tokens = len(probe.build_model("float32")[1].tokenizer(text))
    for max_seq_length, truncated in ((tokens + 1, False), (tokens, True)):
        config = LanguageModelConfig(backbone=backbones.TINY_RANDOM_GPT2, max_seq_length=max_seq_length)
        task = LanguageModelTask(config)
        _, preprocessor = task.build_model("float32")
        caplog.clear()
        inputs = task.build_inputs(text_corpus.TextCorpus([text]), preprocessor, seed=0)
        _, targets = next(iter(inputs.evaluation(1)))
        # Whole: start, the tokens and end fill max_seq_length + 1 slots; every next token is a label.
        assert int(targets["label_weights"].numpy().sum()) == max_seq_length
        assert ("truncating 1 of 1 texts" in caplog.text) == truncated, (max_seq_length, caplog.text)


def test_objective_the_backbone_lacks_is_refused(tiny_preset):
    with pytest.raises(UserError, match=r"--objective=causal_lm: backbone .* supports mlm"):
        LanguageModelTask(LanguageModelConfig(backbone=tiny_preset, objective="causal_lm")).build_model("float32")


# -- the pipeline -------------------------------------------------------------------
@pytest.mark.slow  # Two pipelines in subprocesses (~25 s). CI: -m slow.
def test_pretrain_then_classify_with_the_adapted_backbone(tiny_preset, tmp_path):
    run = tmp_path / "mlm"
    result = run_module("pipelines.pretrain", f"--backbone={tiny_preset}", f"--model_dir={run}", "--train_steps=6",
                        "--batch_size=8", "--max_seq_length=32", "--learning_rate=1e-3", "--layer_lr_decay=0.8")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Layer-wise learning-rate decay 0.8: factors from 0.512 (embeddings) to 0.8 (top block)" in result.stderr
    before = json.loads((run / "eval_before_training.json").read_text())
    after = json.loads((run / "eval_results.json").read_text())
    assert after["tokens"] == before["tokens"] > 0  # The same fixed validation masks.
    assert after["perplexity"] < before["perplexity"]
    result = run_module("pipelines.classify", f"--backbone={run / 'preset'}", f"--model_dir={tmp_path / 'cls'}",
                        "--train_steps=2", "--max_seq_length=32", "--mode=train")
    assert result.returncode == 0, result.stderr[-3000:]
