"""Choosing a backbone: fine-tune each candidate under one budget, measure quality and cost, rank.

Every candidate is a normal pipeline run (train_and_export) in its own
folder, so a candidate that fails to load or train is recorded and the others
go on. Cost is measured on what would be deployed: the exported SavedModel.
"""

import dataclasses
import json
import os

import tensorflow as tf

from tflm import run_files
from tflm.export.saved_model_export import METADATA_FILE
from tflm.export.saved_model_versions import existing_versions
from tflm.export.serving_latency import serving_latency
from tflm.training.trainer import TRAIN_STATS_FILE
from tflm.training.trainer import latest_checkpoint
from tflm.tuning import pipeline_runs


@dataclasses.dataclass
class CandidateResult:
    backbone: str
    status: str = "ok"  # ok | failed | filtered
    metric: float = None
    parameters: int = None
    train_examples_per_second: float = None
    train_minutes: float = None
    p50_ms: float = None
    p95_ms: float = None
    savedmodel_mb: float = None
    peak_memory_mb: float = None
    export_path: str = ""
    model_dir: str = ""
    message: str = ""


@dataclasses.dataclass(frozen=True)
class Constraints:
    max_params: int = 0  # 0: no limit.
    max_latency_ms: float = 0.0  # On p95 single-request latency.

    def violations(self, result):
        reasons = []
        if self.max_params and result.parameters > self.max_params:
            reasons.append(f"{result.parameters:,} parameters > --max_params={self.max_params:,}")
        if self.max_latency_ms and result.p95_ms > self.max_latency_ms:
            reasons.append(f"p95 {result.p95_ms:.1f} ms > --max_latency_ms={self.max_latency_ms:g}")
        return reasons


def _directory_mb(path):
    total = 0
    for directory, _, names in tf.io.gfile.walk(path):
        total += sum(tf.io.gfile.stat(os.path.join(directory, n)).length for n in names)
    return total / 2**20


def evaluate_candidate(pipeline, backbone, pipeline_flags, work_dir, objective, batch_size, latency_texts,
                       max_train_minutes=0.0):
    """Trains, evaluates and exports one candidate, then measures it; never raises for the candidate's own failures."""
    result = CandidateResult(backbone=backbone, model_dir=os.path.join(work_dir, "model"))
    export_root = os.path.join(work_dir, "exports")
    log_path = os.path.join(work_dir, "pipeline.log")
    tf.io.gfile.makedirs(work_dir)
    flags = list(pipeline_flags) + [f"--backbone={backbone}", f"--model_dir={result.model_dir}",
                                    f"--export_dir={export_root}", "--export_name=candidate"]
    run = pipeline_runs.run_pipeline_process(pipeline, flags + ["--mode=train"], log_path,
                                             timeout=max_train_minutes * 60 or None)
    result.train_minutes = run.seconds / 60
    result.peak_memory_mb = run.peak_memory_mb
    if not run.ok and not run.timed_out:
        result.status, result.message = "failed", run.message
        return result
    if run.timed_out and not latest_checkpoint(result.model_dir):
        result.status = "failed"
        result.message = (f"--max_train_minutes={max_train_minutes:g} ended before the first checkpoint "
                          "(too small a budget for even a few steps)")
        return result
    # A run stopped by the budget has not evaluated its final weights: evaluate
    # the best (else latest) checkpoint, then export it, as the pipeline would.
    for mode in ("eval", "export") if run.timed_out else ("export",):
        step = pipeline_runs.run_pipeline_process(pipeline, flags + [f"--mode={mode}"], log_path)
        result.peak_memory_mb = max(result.peak_memory_mb, step.peak_memory_mb)
        if not step.ok:
            result.status, result.message = "failed", f"--mode={mode}: {step.message}"
            return result
    with tf.io.gfile.GFile(os.path.join(result.model_dir, run_files.EVAL_RESULTS_FILE)) as f:
        result.metric = float(json.load(f)[objective])
    stats_path = os.path.join(result.model_dir, TRAIN_STATS_FILE)
    if tf.io.gfile.exists(stats_path):
        with tf.io.gfile.GFile(stats_path) as f:
            steps_per_second = json.load(f)["steps_per_second"]
        result.train_examples_per_second = steps_per_second and steps_per_second * batch_size
    candidate_root = os.path.join(export_root, "candidate")
    result.export_path = os.path.join(candidate_root, str(existing_versions(candidate_root)[-1]))
    with tf.io.gfile.GFile(os.path.join(result.export_path, METADATA_FILE)) as f:
        result.parameters = json.load(f)["parameters"]
    result.savedmodel_mb = _directory_mb(result.export_path)
    result.p50_ms, result.p95_ms = serving_latency(result.export_path, latency_texts).values()
    if run.timed_out:
        result.message = f"stopped at --max_train_minutes={max_train_minutes:g}"
    return result


def rank(results, constraints, direction):
    """Marks constraint violations as filtered; returns the results best first (ok ones, then the rest)."""
    for result in results:
        if result.status == "ok":
            reasons = constraints.violations(result)
            if reasons:
                result.status, result.message = "filtered", "; ".join(reasons)
    sign = 1 if direction == "max" else -1
    ok = sorted((r for r in results if r.status == "ok"), key=lambda r: -sign * r.metric)
    return ok + [r for r in results if r.status != "ok"]


COLUMNS = (("rank", "rank"), ("backbone", "backbone"), ("status", "status"), ("metric", None),
           ("parameters", "params"), ("p50_ms", "p50 ms"), ("p95_ms", "p95 ms"),
           ("train_examples_per_second", "train ex/s"), ("train_minutes", "train min"),
           ("savedmodel_mb", "SavedModel MB"), ("peak_memory_mb", "peak mem MB"), ("message", "note"))


def _cell(value):
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 1000 else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value).replace("|", "/")


def write_report(ranked, objective, directory, winner=None):
    """report.md and report.json in `directory`; returns the markdown."""
    rows = []
    for position, result in enumerate(ranked, start=1):
        row = dataclasses.asdict(result)
        row["rank"] = position if result.status == "ok" else None
        rows.append(row)
    with open(os.path.join(directory, "report.json"), "w") as f:
        json.dump({"objective": objective, "winner": winner, "candidates": rows}, f, indent=1)
    header = [title or objective for _, title in COLUMNS]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        lines.append("| " + " | ".join(_cell(row[key]) for key, _ in COLUMNS) + " |")
    text = "\n".join(lines) + "\n"
    if winner:
        text += f"\nWinner: `{winner}`\n"
    with open(os.path.join(directory, "report.md"), "w") as f:
        f.write(f"# Model selection by {objective}\n\n" + text)
    return text


def plot(ranked, objective, path):
    """Metric against p95 latency, one labelled point per measured candidate."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    measured = [r for r in ranked if r.metric is not None and r.p95_ms is not None]
    figure, axes = pyplot.subplots(figsize=(6, 4))
    for r in measured:
        axes.scatter(r.p95_ms, r.metric, color="tab:blue" if r.status == "ok" else "tab:gray")
        axes.annotate(os.path.basename(r.backbone.rstrip("/")) or r.backbone, (r.p95_ms, r.metric),
                      textcoords="offset points", xytext=(4, 4), fontsize=8)
    axes.set_xlabel("exported model p95 latency, 1 request (ms)")
    axes.set_ylabel(objective)
    axes.set_title("Candidates: quality vs latency (gray: filtered)")
    axes.grid(alpha=0.3)
    axes.margins(x=0.2, y=0.1)  # Room for the labels.
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    pyplot.close(figure)
