"""The classify pipeline as a user runs it (subprocesses, real flags)."""

import json
import os
import textwrap

import pytest

from tests.conftest import ROOT, run_module


def classify(*args, **kwargs):
    return run_module("pipelines.classify", *args, **kwargs)


def fast_flags(tiny_preset, tmp_path):
    return [f"--backbone={tiny_preset}", f"--model_dir={tmp_path}/run", f"--export_dir={tmp_path}/exports",
            "--train_steps=6", "--batch_size=16", "--max_seq_length=32", "--learning_rate=1e-3",
            "--precision=float32"]


def test_train_evaluate_export_and_modes(tiny_preset, tmp_path):
    result = classify(*fast_flags(tiny_preset, tmp_path), "--freeze=embeddings")
    assert result.returncode == 0, result.stderr[-3000:]
    run = tmp_path / "run"
    report = json.load(open(run / "eval_results.json"))
    assert report["labels"] == ["negative", "positive"] and report["num_examples"] == 80
    assert 0.0 <= report["macro_f1"] <= 1.0
    predictions = [json.loads(line) for line in open(run / "eval_predictions.jsonl")]
    assert len(predictions) == 80 and predictions[0]["predicted"] in ("negative", "positive")
    assert "trainable" in result.stderr and "frozen" in result.stderr
    assert "precision" in result.stdout and "confusion matrix" in result.stdout
    assert os.path.isdir(tmp_path / "exports" / "text_classifier" / "1")
    assert json.load(open(run / "labels.json")) == {"labels": ["negative", "positive"]}
    assert os.listdir(run / "train") and os.listdir(run / "eval")  # TensorBoard logs.
    flagfile = (run / "flags.txt").read_text()
    assert f"--backbone={tiny_preset}" in flagfile and "--freeze=embeddings" in flagfile

    # The saved flagfile reproduces the run; eval mode re-evaluates the best weights.
    result = classify(f"--flagfile={run}/flags.txt", "--mode=eval")
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.load(open(run / "eval_results.json"))["accuracy"] == report["accuracy"]
    result = classify(f"--flagfile={run}/flags.txt", "--mode=export")
    assert result.returncode == 0, result.stderr[-3000:]
    assert sorted(os.listdir(tmp_path / "exports" / "text_classifier")) == ["1", "2"]


@pytest.mark.parametrize("flag, message", [
    ("--freeze=embedings", "--freeze: unknown item 'embedings'"),
    ("--strategy=tpu", "--strategy=tpu needs --tpu"),
    ("--tpu=my-tpu", "--tpu is only used with --strategy=tpu"),
    ("--train_data=some.tsv", "--eval_data is required with a --train_data file"),
    ("--text_fields=a,b,c", "--text_fields: give one field, or two"),
    ("--precision=float8", "--precision"),
    ("--batch_size=0", "--batch_size"),
    ("--nonexistent_flag=1", "nonexistent_flag"),
])
def test_bad_flags_fail_before_any_work(tmp_path, flag, message):
    result = classify(flag, f"--model_dir={tmp_path}/run")
    assert result.returncode != 0
    assert message in result.stderr
    assert not os.path.exists(tmp_path / "run")  # Rejected before any work.


def test_user_errors_are_one_line_without_traceback(tiny_preset, tmp_path):
    bad = tmp_path / "bad.tsv"
    bad.write_text("sentence\tlabel\ngood\tpositive\n\tnegative\n")
    result = classify(*fast_flags(tiny_preset, tmp_path), f"--train_data={bad}", f"--eval_data={bad}")
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert f"error: {bad}:3: empty text in column 'sentence' (or pass --skip_bad_rows)" in result.stderr
    result = classify(*fast_flags(tiny_preset, tmp_path), "--backbone=/no/such/model", f"--model_dir={tmp_path}/other")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "error: backbone path /no/such/model: does not exist" in result.stderr


def test_model_dir_of_another_run_is_refused(tiny_preset, tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "flags.txt").write_text("--backbone=bert_base_en_uncased\n")
    result = classify(*fast_flags(tiny_preset, tmp_path))
    assert result.returncode == 1
    assert "differs from --backbone=bert_base_en_uncased of the run in --model_dir" in result.stderr


def test_unwritable_model_dir(tiny_preset, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    result = classify(*fast_flags(tiny_preset, tmp_path), f"--model_dir={blocker}/run")
    assert result.returncode == 1 and f"--model_dir={blocker}/run: not writable" in result.stderr


def test_mirrored_strategy_over_two_cpu_devices(tiny_preset, tmp_path):
    script = textwrap.dedent(f"""
        import sys
        import tensorflow as tf
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
        from pipelines import classify
        sys.argv = ["classify"] + {fast_flags(tiny_preset, tmp_path)!r} + ["--strategy=mirrored", "--mode=train"]
        classify.run()
    """)
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True,
                            env=dict(os.environ, PYTHONPATH=ROOT), timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "MirroredStrategy (2 replica(s))" in result.stderr
    assert "8 per replica x 2 replicas" in result.stderr
    assert json.load(open(tmp_path / "run" / "eval_results.json"))["num_examples"] == 80


@pytest.mark.large
def test_default_command_trains_bundled_minilm_and_exports(tmp_path):
    """The README's main command: no flags but the output folders."""
    result = classify(f"--model_dir={tmp_path}/run", f"--export_dir={tmp_path}/exports", timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.load(open(tmp_path / "run" / "eval_results.json"))
    assert report["accuracy"] >= 0.9  # The demo set is easy for a pretrained encoder.
    assert "Exported and verified" in result.stdout
