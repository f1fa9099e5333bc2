"""Nothing lost when a run is interrupted: kill and resume, preemption, NaN, atomic exports."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import tensorflow as tf

from tests.conftest import ROOT, child_env
from tests.conftest import tiny_classifier_trainer
from tflm.errors import TrainingDiverged
from tflm.export import existing_versions

TOTAL_STEPS = 200


def start_classify(tiny_preset, model_dir):
    """A deterministic tiny run: 20 steps per epoch, checkpoints every 7 steps (mid-epoch)."""
    flags = [f"--backbone={tiny_preset}", f"--model_dir={model_dir}", "--mode=train", "--deterministic",
             f"--train_steps={TOTAL_STEPS}", "--batch_size=16", "--max_seq_length=32", "--learning_rate=1e-3",
             "--precision=float32", "--checkpoint_every_steps=7", "--eval_every_steps=50"]
    log = open(f"{model_dir}.log", "a")
    return subprocess.Popen([sys.executable, "-m", "pipelines.classify", *flags], cwd=ROOT, env=child_env(),
                            stdout=log, stderr=subprocess.STDOUT), log


def run_to_end(tiny_preset, model_dir):
    process, log = start_classify(tiny_preset, model_dir)
    code = process.wait(timeout=600)
    log.close()
    assert code == 0, open(f"{model_dir}.log").read()[-3000:]


def latest_step(model_dir):
    path = tf.train.latest_checkpoint(os.path.join(model_dir, "checkpoints"))
    return int(path.rsplit("-", 1)[1]) if path else 0


def wait_for_checkpoint_after(process, model_dir, step):
    deadline = time.time() + 300
    while latest_step(model_dir) <= step:
        assert process.poll() is None, "the run ended before it could be interrupted"
        assert time.time() < deadline
        time.sleep(0.02)
    return latest_step(model_dir)


def final_state(model_dir):
    """Every model and optimizer variable of the final checkpoint (weights, Adam moments, step)."""
    reader = tf.train.load_checkpoint(tf.train.latest_checkpoint(os.path.join(model_dir, "checkpoints")))
    names = [n for n in reader.get_variable_to_shape_map() if n.startswith(("model/", "optimizer/"))]
    return {n: reader.get_tensor(n) for n in names}


@pytest.mark.slow  # Five pipeline processes; CI runs it (-m slow).
def test_killed_and_preempted_runs_resume_to_the_uninterrupted_result(tiny_preset, tmp_path):
    reference, again, interrupted = (str(tmp_path / name) for name in ("reference", "again", "interrupted"))
    run_to_end(tiny_preset, reference)
    run_to_end(tiny_preset, again)
    # Deterministic mode: two runs on one machine give identical metrics and weights.
    assert json.load(open(f"{reference}/eval_results.json")) == json.load(open(f"{again}/eval_results.json"))

    # SIGKILL mid-epoch, right after the first checkpoint.
    process, log = start_classify(tiny_preset, interrupted)
    killed_at = wait_for_checkpoint_after(process, interrupted, 0)
    process.send_signal(signal.SIGKILL)
    assert process.wait(timeout=60) == -signal.SIGKILL
    log.close()
    killed_at = latest_step(interrupted)
    assert 0 < killed_at < TOTAL_STEPS

    # The same command resumes from that checkpoint (not from zero); SIGTERM
    # (a preemption notice) then saves a checkpoint at the next step and exits 143.
    process, log = start_classify(tiny_preset, interrupted)
    wait_for_checkpoint_after(process, interrupted, killed_at)
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=120) == 143
    log.close()
    text = open(f"{interrupted}.log").read()
    assert f"Resumed from {interrupted}/checkpoints/ckpt-{killed_at} at step {killed_at}" in text
    stopped_at = latest_step(interrupted)
    assert f"stopped: stopped by SIGTERM at step {stopped_at}; saved {interrupted}/checkpoints/ckpt-{stopped_at}" \
        in text
    assert killed_at < stopped_at < TOTAL_STEPS

    run_to_end(tiny_preset, interrupted)
    assert f"Resumed from {interrupted}/checkpoints/ckpt-{stopped_at} at step {stopped_at}" in \
        open(f"{interrupted}.log").read()
    stats = json.load(open(f"{interrupted}/train_stats.json"))
    assert stats["steps"] == TOTAL_STEPS - stopped_at
    # Weights, optimizer moments and step count (hence the learning-rate
    # schedule position) end exactly where the uninterrupted run's did.
    expected, got = final_state(reference), final_state(interrupted)
    assert expected.keys() == got.keys() and any(n.startswith("optimizer/") for n in got)
    for name, value in expected.items():
        np.testing.assert_array_equal(got[name], value, err_msg=name)
    assert json.load(open(f"{reference}/eval_results.json")) == json.load(open(f"{interrupted}/eval_results.json"))


class InjectNaN:
    """Wraps a loss so that chosen calls (counted across rollbacks) return NaN."""

    def __init__(self, loss, bad_calls):
        self.loss = loss
        self.bad_calls = tf.constant(bad_calls, dtype=tf.int64)
        self.calls = tf.Variable(0, dtype=tf.int64, trainable=False)

    def __call__(self, targets, outputs):
        self.calls.assign_add(1)
        losses = self.loss(targets, outputs)
        poisoned = tf.reduce_any(tf.equal(self.calls, self.bad_calls))
        return tf.where(poisoned, tf.fill(tf.shape(losses), np.nan), losses)


def test_nan_loss_rolls_back_to_the_last_checkpoint_and_skips_the_bad_batches(tiny_preset, tmp_path, caplog):
    trainer, dataset = tiny_classifier_trainer(tiny_preset, tmp_path, train_steps=8, steps_per_epoch=4, on_nan="rollback")
    trainer.loss_fn = InjectNaN(trainer.loss_fn, [5])  # Step 5 blows up; the checkpoint before is step 4.
    trainer.train(dataset)
    assert "training loss became nan at step 5: rolled back to" in caplog.text
    assert "ckpt-4 and skipping batches 5-5 (rollback 1 of at most 3)" in caplog.text
    assert int(trainer.optimizer.iterations.numpy()) == 8
    assert all(np.isfinite(v.numpy()).all() for v in trainer.model.weights)
    # The skip is in the checkpoint, so a resumed run keeps the data position.
    reader = tf.train.load_checkpoint(tf.train.latest_checkpoint(str(tmp_path / "checkpoints")))
    assert reader.get_tensor("skipped_batches/.ATTRIBUTES/VARIABLE_VALUE") == 1


def test_nan_that_keeps_coming_back_stops_after_the_rollback_limit(tiny_preset, tmp_path):
    trainer, dataset = tiny_classifier_trainer(tiny_preset, tmp_path, train_steps=8, steps_per_epoch=4, on_nan="rollback",
                             max_rollbacks=2)
    trainer.loss_fn = InjectNaN(trainer.loss_fn, [3, 4, 5])
    with pytest.raises(TrainingDiverged, match="training loss became nan at step 3 again after 2 rollbacks"):
        trainer.train(dataset)


def test_nan_without_a_checkpoint_to_roll_back_to(tiny_preset, tmp_path):
    trainer, dataset = tiny_classifier_trainer(tiny_preset, tmp_path, train_steps=8, steps_per_epoch=4, on_nan="rollback")
    trainer.loss_fn = InjectNaN(trainer.loss_fn, [1])
    with pytest.raises(TrainingDiverged, match="at step 1; no checkpoint to roll back to"):
        trainer.train(dataset)


def test_model_dir_on_a_non_local_file_system(tiny_preset):
    """Checkpoints, logs and resume go through tf.io.gfile (here its in-memory ram:// file system)."""
    trainer, dataset = tiny_classifier_trainer(tiny_preset, "ram://tflm-run", train_steps=4, steps_per_epoch=2)
    trainer.train(dataset)
    assert tf.train.latest_checkpoint("ram://tflm-run/checkpoints").endswith("ckpt-4")
    assert tf.io.gfile.exists("ram://tflm-run/best/best_metrics.json")
    resumed, dataset = tiny_classifier_trainer(tiny_preset, "ram://tflm-run", train_steps=6, steps_per_epoch=2)
    assert resumed.restore() == 4


def test_a_killed_export_leaves_no_version_a_server_would_load(tmp_path):
    script = textwrap.dedent(f"""
        import os, signal
        from tflm.export import write_new_version

        def write(path):
            os.makedirs(os.path.join(path, "variables"))
            open(os.path.join(path, "saved_model.pb"), "wb").write(b"half")
            os.kill(os.getpid(), signal.SIGKILL)  # Killed mid-export.

        write_new_version({str(tmp_path)!r}, "model", write)
    """)
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=child_env(),
                            capture_output=True, timeout=300)
    assert result.returncode == -signal.SIGKILL
    left = os.listdir(tmp_path / "model")
    assert len(left) == 1 and left[0].startswith(".staging-1-")  # Hidden: TF Serving only loads integer folders.
    assert existing_versions(str(tmp_path / "model")) == []
