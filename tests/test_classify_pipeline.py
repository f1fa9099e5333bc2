"""The classify pipeline as a user runs it (subprocesses, real flags)."""

import json
import os

import pytest

from tests.conftest import run_module
from tests.serving_checks import assert_serving_grade


def classify(*args, **kwargs):
    return run_module("pipelines.classify", *args, **kwargs)


def fast_flags(tiny_preset, tmp_path):
    return [f"--backbone={tiny_preset}", f"--model_dir={tmp_path}/run", f"--export_dir={tmp_path}/exports",
            "--train_steps=6", "--batch_size=16", "--max_seq_length=32", "--learning_rate=1e-3",
            "--precision=float32"]


def test_train_evaluate_export_and_modes(tiny_preset, tmp_path):
    # A relative --export_dir, as the default is, resolved against the working folder.
    result = classify(*fast_flags(tiny_preset, tmp_path), "--export_dir=exports", "--freeze=embeddings",
                      "--layer_lr_decay=0.5", "--ema_momentum=0.9", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    run = tmp_path / "run"
    report = json.load(open(run / "eval_results.json"))
    assert report["labels"] == ["negative", "positive"] and report["num_examples"] == 80
    assert 0.0 <= report["macro_f1"] <= 1.0
    predictions = [json.loads(line) for line in open(run / "eval_predictions.jsonl")]
    assert len(predictions) == 80 and predictions[0]["predicted"] in ("negative", "positive")
    assert "trainable" in result.stderr and "frozen" in result.stderr
    # Two blocks: top 0.5, bottom 0.25, embeddings 0.125 (frozen here, so unused).
    assert "Layer-wise learning-rate decay 0.5: factors from 0.125 (embeddings) to 0.5 (top block)" in result.stderr
    assert "precision" in result.stdout and "confusion matrix" in result.stdout
    export = tmp_path / "exports" / "text_classifier" / "1"
    strings, ints = {"text": "DT_STRING"}, {"token_ids": "DT_INT32", "segment_ids": "DT_INT32",
                                            "padding_mask": "DT_INT32"}
    outputs = {"probabilities": "DT_FLOAT", "label": "DT_STRING", "label_id": "DT_INT32"}
    assert_serving_grade(str(export), "text_classifier", {
        "serving_default": {"inputs": strings, "outputs": outputs},
        "serve_examples": {"inputs": {"examples": "DT_STRING"}, "outputs": outputs},
        "serve_token_ids": {"inputs": ints, "outputs": outputs}})
    metadata = json.load(open(export / "assets.extra" / "tflm_model.json"))
    assert metadata["labels"] == ["negative", "positive"] and metadata["max_seq_length"] == 32
    assert metadata["eval_metrics"]["accuracy"] == report["accuracy"] and metadata["precision"] == "float32"
    assert metadata["float32_max_batch"] == 0  # A float32 model needs no float32 path.
    assert metadata["training_flags"]["freeze"] == "embeddings" and metadata["training_flags"]["train_steps"] == 6
    assert metadata["task"] == "text_classification" and metadata["tflm_version"]
    assert f'base_path: "{tmp_path}/exports/text_classifier"' in (tmp_path / "exports" / "models.config").read_text()
    assert json.load(open(run / "labels.json")) == {"labels": ["negative", "positive"]}
    assert os.listdir(run / "train") and os.listdir(run / "eval")  # TensorBoard logs.
    flagfile = (run / "flags.txt").read_text()
    assert f"--backbone={tiny_preset}" in flagfile and "--freeze=embeddings" in flagfile

    # The saved flagfile reproduces the run; eval mode re-evaluates the best weights.
    result = classify(f"--flagfile={run}/flags.txt", "--mode=eval", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.load(open(run / "eval_results.json"))["accuracy"] == report["accuracy"]
    result = classify(f"--flagfile={run}/flags.txt", "--mode=export", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert sorted(os.listdir(tmp_path / "exports" / "text_classifier")) == ["1", "2"]


@pytest.mark.slow  # The in-process strategy test covers mirrored; this is the pipeline run (CI: -m slow).
def test_mirrored_strategy_over_two_cpu_devices(tiny_preset, tmp_path):
    result = classify(*fast_flags(tiny_preset, tmp_path), "--strategy=mirrored", "--cpu_devices=2", "--mode=train")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "strategy=mirrored (MirroredStrategy, 2 replica(s))" in result.stderr
    assert "global batch 16 = 8 per replica x 2 replicas" in result.stderr
    assert json.load(open(tmp_path / "run" / "eval_results.json"))["num_examples"] == 80


@pytest.mark.large
def test_default_command_trains_bundled_minilm_and_exports(tmp_path):
    """The README's main command, `tflm-classify` with no flags, run in an empty folder."""
    result = classify(cwd=tmp_path, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.load(open(tmp_path / "runs" / "classify" / "eval_results.json"))
    assert report["accuracy"] >= 0.9  # The demo set is easy for a pretrained encoder.
    assert "Exported and verified" in result.stdout
    (export,) = (tmp_path / "savedmodels" / "text_classifier").iterdir()
    metadata = json.load(open(export / "assets.extra" / "tflm_model.json"))
    assert metadata["float32_max_batch"] == 0
