"""Hyperparameter search and model selection, end to end on tiny backbones."""

import csv
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from tests.conftest import ROOT, child_env, make_tiny_bert_preset, run_module
from tflm import metrics
from tflm.errors import UserError
from tflm.tuning import model_selection
from tflm.tuning.search_space import SearchSpace, parse_dimension

# Every range empty unless a test searches it.
NO_SEARCH = ["--learning_rate_range=", "--batch_size_choices=", "--num_epochs_range=", "--warmup_fraction_range=",
             "--weight_decay_range=", "--dropout_range=", "--freeze_bottom_range=", "--layer_lr_decay_range="]


def trial_flags(tiny_preset, tmp_path):
    return ["--", f"--backbone={tiny_preset}", "--train_steps=6", "--batch_size=16", "--max_seq_length=32",
            "--precision=float32", f"--export_dir={tmp_path}/exports"]


def tune(tiny_preset, tmp_path, *flags):
    return run_module("pipelines.tune", f"--tune_dir={tmp_path}/tune", *NO_SEARCH, *flags,
                      *trial_flags(tiny_preset, tmp_path))


def results(tmp_path):
    with open(tmp_path / "tune" / "results.csv") as f:
        return list(csv.DictReader(f))


def test_search_space_parsing():
    assert parse_dimension("learning_rate", "1e-5,1e-3", "learning_rate_range").values == (1e-5, 1e-3)
    assert parse_dimension("batch_size", "16, 32", "batch_size_choices").values == (16, 32)
    assert parse_dimension("dropout", "", "dropout_range") is None
    for name, text, message in [
        ("learning_rate", "1e-3,1e-5", "inverted range"),
        ("learning_rate", "0,1e-3", "log-scale range must be positive"),
        ("dropout", "0.2,0.2", "empty range"),
        ("dropout", "0,1.5", "within 0..1"),
        ("num_epochs", "1,2,3", "LOW,HIGH"),
        ("num_epochs", "a,b", "expected comma-separated ints"),
        ("batch_size", "16,16", "distinct and positive"),
        ("layer_lr_decay", "0,0.9", r"within \(0, 1\]"),
    ]:
        with pytest.raises(UserError, match=message):
            parse_dimension(name, text, f"{name}_range")
    with pytest.raises(UserError, match="nothing to search"):
        SearchSpace([None, None])
    flags = SearchSpace.trial_flags({"learning_rate": 1e-4, "tuner/epochs": 2, "tuner/round": 0, "dropout": 0.1})
    assert flags == ["--dropout=0.1", "--learning_rate=0.0001", "--num_epochs=2"]


@pytest.mark.slow  # Three pipeline trials in subprocesses (~40 s). CI: -m slow.
def test_random_search_records_a_failing_trial_goes_on_and_exports_the_best(tiny_preset, tmp_path):
    # The tiny backbone has 2 blocks: freezing 3 fails, freezing 2 trains. Two
    # distinct trials over {2, 3} must be one of each.
    result = tune(tiny_preset, tmp_path, "--tuner=random", "--max_trials=2", "--freeze_bottom_range=2,3")
    assert result.returncode == 0, result.stderr[-3000:]
    rows = {row["freeze_bottom"]: row for row in results(tmp_path)}
    assert rows["3"]["status"] == "FAILED"
    assert "--freeze: block 2 requested but the backbone has 2 blocks" in rows["3"]["message"]
    assert rows["2"]["status"] == "COMPLETED" and 0 <= float(rows["2"]["accuracy"]) <= 1
    assert float(rows["2"]["seconds"]) > 0 and float(rows["2"]["peak_memory_mb"]) > 0
    assert json.load(open(tmp_path / "tune" / "results.json"))[0]["trial"] in ("0", "1")
    assert "Best trial" in result.stdout and "--freeze_bottom=2" in result.stdout
    assert os.path.isdir(tmp_path / "exports" / "text_classifier" / "1")
    assert os.listdir(tmp_path / "tune" / "hparams")  # TensorBoard HParams logs.


# The two other tuners, two trials each; CI runs these (-m slow).
@pytest.mark.slow
@pytest.mark.parametrize("tuner, space", [
    ("bayesian", "--learning_rate_range=1e-4,1e-2"),
    ("hyperband", "--num_epochs_range=1,2 --dropout_range=0,0.3"),
])
def test_bayesian_and_hyperband_run_two_trials(tuner, space, tiny_preset, tmp_path):
    extra = ["--objective=macro_f1"] if tuner == "bayesian" else []
    result = run_module("pipelines.tune", f"--tune_dir={tmp_path}/tune", *NO_SEARCH, f"--tuner={tuner}",
                        "--max_trials=2", *space.split(), *extra, "--", f"--backbone={tiny_preset}", "--batch_size=16",
                        "--max_seq_length=32", "--precision=float32", f"--export_dir={tmp_path}/exports",
                        # The Bayesian trials also run under a 2-replica strategy.
                        *(["--train_steps=4", "--strategy=mirrored", "--cpu_devices=2"] if tuner == "bayesian"
                          else []))
    assert result.returncode == 0, result.stderr[-3000:]
    rows = results(tmp_path)
    assert [row["status"] for row in rows] == ["COMPLETED", "COMPLETED"]
    if tuner == "hyperband":
        assert {row["num_epochs"] for row in rows} <= {"1", "2"}  # Hyperband's own epochs per round.
    else:
        assert len({row["learning_rate"] for row in rows}) == 2 and rows[0]["macro_f1"]
        log = (tmp_path / "tune" / "search" / "trial_0" / "pipeline.log").read_text()
        assert "strategy=mirrored (MirroredStrategy, 2 replica(s))" in log


@pytest.mark.slow  # Two pretraining trials (~60 s); CI: -m slow.
def test_a_pretraining_search_ranks_by_lowest_perplexity_and_publishes_the_best_preset(tiny_preset, tmp_path):
    # --num_epochs_range keeps its default, which --train_steps makes moot: it is not searched.
    default_epoch_range = [f for f in NO_SEARCH if not f.startswith("--num_epochs_range")]
    result = run_module("pipelines.tune", f"--tune_dir={tmp_path}/tune", *default_epoch_range, "--pipeline=pretrain",
                        "--max_trials=2", "--learning_rate_range=1e-5,1e-2", "--", f"--backbone={tiny_preset}",
                        "--train_steps=4", "--batch_size=8", "--max_seq_length=32", "--precision=float32")
    assert result.returncode == 0, result.stderr[-3000:]
    rows = results(tmp_path)
    assert [row["status"] for row in rows] == ["COMPLETED", "COMPLETED"] and "num_epochs" not in rows[0]
    best = min(rows, key=lambda row: float(row["perplexity"]))
    assert f"Best trial {best['trial']}: perplexity=" in result.stdout
    preset = result.stdout.split("Exported the best trial: ")[1].split()[0]
    assert preset == str(tmp_path / "tune" / "search" / f"trial_{best['trial']}" / "run0" / "preset")
    assert os.path.isfile(os.path.join(preset, "config.json"))


@pytest.mark.slow  # A killed search and a resumed one; CI runs it (-m slow).
def test_an_interrupted_search_resumes_the_interrupted_trial(tiny_preset, tmp_path):
    """SIGKILL mid-trial; the same command reruns that trial from its checkpoint, then goes on."""
    command = [sys.executable, "-m", "pipelines.tune", f"--tune_dir={tmp_path}/tune", *NO_SEARCH,
               "--tuner=random", "--max_trials=2", "--learning_rate_range=1e-4,1e-2", "--",
               f"--backbone={tiny_preset}", "--train_steps=400", "--checkpoint_every_steps=5",
               "--batch_size=16", "--max_seq_length=32", "--precision=float32", f"--export_dir={tmp_path}/exports"]
    env = child_env()
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True)
    checkpoints = tmp_path / "tune" / "search" / "trial_0" / "run0" / "checkpoints"
    deadline = time.time() + 300
    # The `checkpoint` state file is written after a checkpoint's data: a
    # kill before it leaves nothing to resume from, which is correct but not
    # what this test is about.
    while not (checkpoints / "checkpoint").exists():
        assert process.poll() is None and time.time() < deadline
        time.sleep(0.1)
    os.killpg(process.pid, signal.SIGKILL)  # The tuner and its trial's pipeline process.
    process.wait()
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    assert [row["status"] for row in results(tmp_path)] == ["COMPLETED", "COMPLETED"]
    log = (tmp_path / "tune" / "search" / "trial_0" / "pipeline.log").read_text()
    assert "Resumed from" in log  # Trial 0 continued from its checkpoint, not from zero.


@pytest.mark.slow  # Nine tuner processes; CI runs it (-m slow).
def test_bad_tuning_flags_are_one_line_errors(tiny_preset, tmp_path):
    for index, (flags, message) in enumerate([
        (["--tuner=grid"], "--tuner=grid: value should be one of"),
        (["--learning_rate_range=1e-3,1e-5"], "--learning_rate_range=1e-3,1e-5: inverted range"),
        (["--objective=bleu"], "--objective=bleu: the classify pipeline reports accuracy"),
        (["--tuner=hyperband", "--learning_rate_range=1e-4,1e-3"], "--tuner=hyperband needs --num_epochs_range"),
        (["--dropout_range=0,0.2", "--", "--dropout=0.1"], "--dropout after '--' is also searched"),
        (["--dropout_range=0,0.2", "--", "--model_dir=x"], "--model_dir after '--': the tuner sets it"),
        (["--num_epochs_range=1,3", "--", "--train_steps=100"],
         "--num_epochs_range: the trials' --train_steps=100 overrides --num_epochs"),
        (["--dropout_range=0,0.2", "--max_minutes=0.0001"], "(time budget spent"),
        (["--pipeline=translate", "--layer_lr_decay_range=0.7,1"],
         "--layer_lr_decay_range: --pipeline=translate has no --layer_lr_decay flag"),
    ]):
        result = run_module("pipelines.tune", f"--tune_dir={tmp_path}/tune_{index}",
                            *NO_SEARCH, *flags, *([] if "--" in flags else ["--", f"--backbone={tiny_preset}"]))
        assert result.returncode != 0 and "Traceback" not in result.stderr, result.stderr[-2000:]
        assert message in result.stderr, (flags, result.stderr[-1500:])


@pytest.fixture(scope="module")
def bigger_preset(tmp_path_factory):
    return make_tiny_bert_preset(str(tmp_path_factory.mktemp("bigger_bert")), num_layers=2, hidden_dim=64, seed=1)


@pytest.mark.slow  # Three candidates trained and exported; CI runs it (-m slow).
def test_model_selection_ranks_filters_by_constraint_and_exports_the_winner(tiny_preset, bigger_preset, tmp_path):
    result = run_module("pipelines.select_model", f"--candidates={bigger_preset},{tiny_preset},/no/such/model",
                        "--max_params=50000", f"--select_dir={tmp_path}/select", "--", "--train_steps=6",
                        "--batch_size=16", "--max_seq_length=32", "--precision=float32",
                        f"--export_dir={tmp_path}/final")
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.load(open(tmp_path / "select" / "report.json"))
    by_backbone = {c["backbone"]: c for c in report["candidates"]}
    # The bigger backbone breaks --max_params, the missing one fails; the tiny one wins.
    assert report["winner"] == tiny_preset
    assert by_backbone[tiny_preset]["status"] == "ok" and by_backbone[tiny_preset]["rank"] == 1
    assert by_backbone[bigger_preset]["status"] == "filtered"
    assert "parameters > --max_params=50,000" in by_backbone[bigger_preset]["message"]
    assert by_backbone["/no/such/model"]["status"] == "failed"
    assert "backbone path /no/such/model: does not exist" in by_backbone["/no/such/model"]["message"]
    tiny = by_backbone[tiny_preset]
    assert tiny["parameters"] < by_backbone[bigger_preset]["parameters"]
    for key in ("p50_ms", "p95_ms", "train_examples_per_second", "savedmodel_mb", "peak_memory_mb"):
        assert tiny[key] > 0, key
    assert (tmp_path / "select" / "metric_vs_latency.png").read_bytes()[:4] == b"\x89PNG"
    assert "| 1 | " in (tmp_path / "select" / "report.md").read_text()
    assert os.path.isdir(tmp_path / "final" / "text_classifier" / "1")


def test_a_budget_too_small_for_a_step_is_reported(tiny_preset, tmp_path):
    result = model_selection.evaluate_candidate(
        "classify", tiny_preset, ["--train_steps=100000", "--batch_size=16", "--max_seq_length=32",
                                  "--precision=float32"],
        str(tmp_path / "candidate"), "accuracy", 16, ["a film"], max_train_minutes=0.001)
    assert result.status == "failed"
    assert "--max_train_minutes=0.001 ended before the first checkpoint" in result.message


def test_ranking_puts_constraint_breakers_after_the_ranked():
    results = [model_selection.CandidateResult("a", metric=0.9, parameters=10, p95_ms=50.0),
               model_selection.CandidateResult("b", metric=0.8, parameters=10, p95_ms=5.0),
               model_selection.CandidateResult("c", metric=0.95, parameters=99, p95_ms=5.0),
               model_selection.CandidateResult("d", status="failed", message="error: x")]
    ranked = model_selection.rank(results, model_selection.Constraints(max_params=50, max_latency_ms=20), "max")
    assert [r.backbone for r in ranked] == ["b", "a", "c", "d"]
    assert [r.status for r in ranked] == ["ok", "filtered", "filtered", "failed"]
    assert ranked[1].message == "p95 50.0 ms > --max_latency_ms=20"


def test_loss_like_metrics_rank_lowest_first():
    assert metrics.metric_direction("perplexity") == metrics.metric_direction("eval_loss") == "min"
    assert metrics.metric_direction("rougeLsum") == metrics.metric_direction("accuracy") == "max"
    results = [model_selection.CandidateResult("a", metric=30.0), model_selection.CandidateResult("b", metric=12.0)]
    ranked = model_selection.rank(results, model_selection.Constraints(0, 0), metrics.metric_direction("perplexity"))
    assert [r.backbone for r in ranked] == ["b", "a"]
