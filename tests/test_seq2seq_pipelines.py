"""The translate and summarize pipelines as a user runs them (subprocesses, real flags)."""

import json
import os

import pytest

from tests.conftest import run_module
from tests.serving_checks import assert_serving_grade


def fast_flags(tiny_preset, tmp_path):
    return [f"--backbone={tiny_preset}", f"--model_dir={tmp_path}/run", f"--export_dir={tmp_path}/exports",
            "--train_steps=4", "--batch_size=16", "--learning_rate=1e-3", "--precision=float32",
            "--decoding=greedy", "--max_target_length=24"]


def test_translate_trains_evaluates_exports_and_reevaluates(tiny_preset, tmp_path):
    result = run_module("pipelines.translate", *fast_flags(tiny_preset, tmp_path),
                        "--target_vocabulary_size=200", "--freeze_decoder=blocks:0")
    assert result.returncode == 0, result.stderr[-3000:]
    run = tmp_path / "run"
    report = json.load(open(run / "eval_results.json"))
    assert report["num_examples"] == 60 and 0.0 <= report["bleu"] <= 100.0
    predictions = [json.loads(line) for line in open(run / "eval_predictions.jsonl", encoding="utf-8")]
    assert len(predictions) == 60 and set(predictions[0]) == {"source", "reference", "prediction"}
    assert predictions[0]["reference"] == open(
        os.path.join(os.path.dirname(__file__), "..", "tflm", "data", "demo", "translation_dev.de"),
        encoding="utf-8").readline().strip()
    assert os.path.exists(run / "target_vocabulary.spm")
    assert "bleu" in result.stdout and "rougeLsum" in result.stdout
    assert os.path.isdir(tmp_path / "exports" / "translator" / "1")
    metadata = json.load(open(tmp_path / "exports" / "translator" / "1" / "assets.extra" / "tflm_model.json"))
    assert metadata["task"] == "translation" and metadata["decoding"]["method"] == "greedy"
    assert metadata["max_source_length"] == 64 and metadata["max_target_length"] == 24 and metadata["eval_metrics"]["bleu"] == report["bleu"]
    text = {"inputs": {"text": "DT_STRING"}, "outputs": {"output_text": "DT_STRING"}}
    assert_serving_grade(str(tmp_path / "exports" / "translator" / "1"), "translator", {
        "serving_default": text,
        "serve_examples": {"inputs": {"examples": "DT_STRING"}, "outputs": {"output_text": "DT_STRING"}},
        "serve_token_ids": {"inputs": {"encoder_token_ids": "DT_INT32", "encoder_padding_mask": "DT_INT32"},
                            "outputs": {"output_token_ids": "DT_INT32"}}})

    result = run_module("pipelines.translate", f"--flagfile={run}/flags.txt", "--mode=eval")
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.load(open(run / "eval_results.json"))["bleu"] == report["bleu"]

    # The model dir pins the model-defining flags.
    result = run_module("pipelines.translate", f"--flagfile={run}/flags.txt", "--target_vocabulary=source")
    assert result.returncode == 1 and "--target_vocabulary=source differs" in result.stderr


@pytest.mark.slow  # Same pipeline code as translate, on dialogues (CI: -m slow).
def test_summarize_on_the_demo_dialogues(tiny_preset, tmp_path):
    result = run_module("pipelines.summarize", *fast_flags(tiny_preset, tmp_path), "--max_source_length=24",
                        "--mode=train", "--freeze=bottom:1")
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.load(open(tmp_path / "run" / "eval_results.json"))
    assert report["num_examples"] == 60 and "rougeLsum" in report
    assert "truncating" in result.stderr  # Dialogues longer than 24 tokens are counted.
    assert "--no_repeat_ngram_size=3\n" in (tmp_path / "run" / "flags.txt").read_text()  # summarize's default.
    assert not os.path.exists(tmp_path / "exports")


@pytest.mark.slow  # A decoder-only model through the summarize pipeline (CI: -m slow).
def test_summarize_a_decoder_only_backbone_drops_only_the_default_no_repeat_ngram_size(tmp_path):
    gpt2 = [f"--model_dir={tmp_path}/run", "--backbone=tiny_random_gpt2", "--train_steps=2", "--batch_size=8",
            "--precision=float32", "--decoding=greedy", "--max_source_length=24", "--max_target_length=8",
            "--mode=train"]
    result = run_module("pipelines.summarize", *gpt2)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "rougeLsum" in json.load(open(tmp_path / "run" / "eval_results.json"))
    # What the run decoded with is what its flagfile records, so a rerun from it works.
    assert "--no_repeat_ngram_size=0\n" in (tmp_path / "run" / "flags.txt").read_text()
    result = run_module("pipelines.summarize", f"--flagfile={tmp_path}/run/flags.txt", "--mode=eval")
    assert result.returncode == 0, result.stderr[-3000:]

    result = run_module("pipelines.summarize", *gpt2, "--no_repeat_ngram_size=3")
    assert result.returncode == 1
    assert "--no_repeat_ngram_size: --backbone=tiny_random_gpt2 is decoder-only" in result.stderr


@pytest.mark.large
@pytest.mark.slow  # About 95 s; CI runs it with -m slow.
def test_translate_demo_with_the_real_minilm(tmp_path):
    """The README's offline command, shortened: MiniLM2MiniLM learns the demo and exports."""
    result = run_module("pipelines.translate", f"--model_dir={tmp_path}/run", f"--export_dir={tmp_path}/exports",
                        "--num_epochs=6", "--decoding=greedy", "--eval_every_steps=1000", timeout=1200)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.load(open(tmp_path / "run" / "eval_results.json"))
    # 54 steps learn the demo's sentence frames. Measured: chrF 5.6 after 27
    # steps at lr 1e-4 (output 'Ein mmmm'), 84 after 135 steps at lr 2e-4.
    assert report["chrf"] > 30.0, report
    assert os.path.isdir(tmp_path / "exports" / "translator" / "1")
