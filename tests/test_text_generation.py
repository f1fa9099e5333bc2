"""Decoder-only (causal LM) text generation: packing, cached generation, export, pipeline (tiny GPT-2)."""

import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from tests.conftest import run_module
from tests.serving_checks import assert_serving_grade
from tflm import backbones
from tflm import data
from tflm import generation
from tflm.errors import UserError
from tflm import export
from tflm.export import seq2seq_export
from tflm.tasks import Seq2SeqConfig
from tflm.tasks import Seq2SeqTask

SOURCES = ["a great film", "the worst movie", "a funny story", "dull plot"]
TARGETS = ["ein toller Film", "der schlechteste Film", "eine lustige Geschichte", "langweilige Handlung"]


def _task(method="greedy", **overrides):
    settings = dict(backbone=backbones.TINY_RANDOM_GPT2, max_source_length=24, max_target_length=32,
                    decoding=generation.DecodingConfig(method, beam_size=2, max_length=32))
    settings.update(overrides)
    return Seq2SeqTask(Seq2SeqConfig(**settings))


@pytest.fixture(scope="module")
def trained():
    """A tiny GPT-2 fitted to the four pairs, so generation follows a learned path."""
    keras.utils.set_random_seed(0)
    task = _task()
    model, preprocessor = task.build_model("float32", "unused")
    examples = data.Seq2SeqExamples(list(SOURCES), list(TARGETS), "test")
    features, targets = next(iter(task.build_inputs(examples, preprocessor).evaluation(len(SOURCES))))
    optimizer = keras.optimizers.Adam(3e-3)
    for _ in range(120):
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(task.loss(targets, model(features, training=True)))
        optimizer.apply_gradients(zip(tape.gradient(loss, model.trainable_variables), model.trainable_variables))
    return task, model, preprocessor


def test_packing_learns_the_completion_and_end_token_only():
    task = _task()
    _, preprocessor = task.build_model("float32", "unused")
    tokenizer = preprocessor.source_tokenizer
    inputs = task.build_inputs(data.Seq2SeqExamples(["ab"], ["xyz"], "t"), preprocessor)
    end = preprocessor.special_tokens.end_id
    prompt = [end] + [int(i) for i in tokenizer("ab")] + [end]  # [start] ab [sep]
    completion = [int(i) for i in tokenizer("xyz")] + [end]
    sequence = prompt + completion
    length = len(sequence)
    np.testing.assert_array_equal(inputs.features["token_ids"][0, :length - 1], sequence[:-1])
    np.testing.assert_array_equal(inputs.targets["labels"][0, :length - 1], sequence[1:])
    expected_weights = [0] * (len(prompt) - 1) + [1] * len(completion)
    np.testing.assert_array_equal(inputs.targets["label_weights"][0, :length - 1], expected_weights)
    assert inputs.targets["label_weights"][0, length - 1:].sum() == 0


def _uncached_greedy(model, preprocessor, source, max_length):
    """Reference: argmax continuation recomputing the whole sequence each step (no cache, no batching)."""
    end = preprocessor.special_tokens.end_id
    features = preprocessor.encode_prompts(tf.constant([source]))
    length = int(features["padding_mask"].numpy().sum())
    ids = list(features["token_ids"].numpy()[0, :length])
    generated = []
    for _ in range(max_length):
        tokens = tf.constant([ids], tf.int32)
        logits = model({"token_ids": tokens, "padding_mask": tf.ones_like(tokens)})
        next_id = int(tf.argmax(logits[0, -1]))
        generated.append(next_id)
        if next_id == end:
            break
        ids.append(next_id)
    return generated


def test_cached_batched_greedy_equals_uncached_argmax(trained):
    task, model, preprocessor = trained
    end = preprocessor.special_tokens.end_id
    features = preprocessor.encode_prompts(tf.constant(SOURCES))  # Prompts of different lengths in one batch.
    batched = preprocessor.generate(model, features, task.config.decoding).numpy()
    for row, source in zip(batched, SOURCES):
        reference = _uncached_greedy(model, preprocessor, source, task.config.decoding.max_length)
        cut = list(row[:len(reference)])
        assert cut == reference
        assert (row[len(reference):] == end).all()
    predictions = task.predict(model, preprocessor, SOURCES, batch_size=3)
    assert predictions[0] == "ein toller Film" and predictions[2] == "eine lustige Geschichte"


def test_beam_export_serves_raw_prompts_like_in_memory_generation(trained, tmp_path):
    _, model, preprocessor = trained
    task = _task("beam")
    samples = SOURCES + ["", "x " * 500, "caf\udce9 bytes"]
    path = seq2seq_export.export_seq2seq(model, preprocessor, task.config.decoding,
                                         export.ExportTarget(str(tmp_path), "gen"), samples, {"task": "text_generation"})
    served = tf.saved_model.load(path).signatures["serving_default"](text=tf.constant(SOURCES))["output_text"]
    in_memory = task.predict(model, preprocessor, SOURCES, batch_size=4)
    assert [t.decode() for t in served.numpy()] == in_memory
    assert in_memory[1] == "der schlechteste Film"


def test_decoder_only_refuses_encoder_decoder_options():
    with pytest.raises(UserError, match="--freeze_decoder: .* is decoder-only"):
        _task(freeze_decoder="bottom:1").build_model("float32", "unused")
    with pytest.raises(UserError, match="KerasHub causal model .* --target_vocabulary, --decoder_layers and "
                                          "--cross_attention_init"):
        _task(target_vocabulary="sentencepiece").build_model("float32", "unused")
    with pytest.raises(UserError, match="--no_repeat_ngram_size: .* KerasHub's samplers"):
        _task(decoding=generation.DecodingConfig(no_repeat_ngram_size=3)).build_model("float32", "unused")


@pytest.mark.slow  # Pipeline end to end (~80 s); the decoder-only export is fast-tested above. CI: -m slow.
def test_generate_text_pipeline_runs_offline(tmp_path):
    model_dir, export_dir = tmp_path / "run", tmp_path / "savedmodels"
    result = run_module("pipelines.generate_text", f"--model_dir={model_dir}", f"--export_dir={export_dir}",
                        "--train_steps=8", "--batch_size=8", "--max_source_length=64", "--max_target_length=16",
                        "--decoding=greedy")
    assert result.returncode == 0, result.stderr[-3000:]
    with open(model_dir / "eval_results.json", encoding="utf-8") as f:
        assert {"rougeL", "bleu"} <= set(json.load(f))
    export = export_dir / "text_generator" / "1"
    with open(export / "assets.extra" / "tflm_model.json", encoding="utf-8") as f:
        metadata = json.load(f)
    assert metadata["task"] == "text_generation" and metadata["backbone"] == backbones.TINY_RANDOM_GPT2
    assert os.path.isfile(export / "saved_model.pb")
    assert_serving_grade(str(export), "text_generator", {
        "serving_default": {"inputs": {"text": "DT_STRING"}, "outputs": {"output_text": "DT_STRING"}},
        "serve_examples": {"inputs": {"examples": "DT_STRING"}, "outputs": {"output_text": "DT_STRING"}},
        "serve_token_ids": {"inputs": {"token_ids": "DT_INT32", "padding_mask": "DT_INT32"},
                            "outputs": {"output_token_ids": "DT_INT32"}}})
