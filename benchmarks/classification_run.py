"""Shared by the classification benchmarks: run the pipeline, time the export.

The pipeline runs as a subprocess exactly as a user would run it; this module
then reads what it wrote (eval_results.json, train_stats.json) and measures
the exported SavedModel's single-sentence latency in-process with only
TensorFlow + tensorflow-text.
"""

import json
import os


from benchmarks.common import RESULTS_DIR
from benchmarks.common import latest_export  # noqa: F401  Re-exported for the scripts.
from benchmarks.common import run_pipeline
from tflm.export.serving_latency import serving_latency


def run_classify(flags, log_path):
    """Runs pipelines/classify.py with `flags`; returns wall seconds."""
    return run_pipeline("classify", flags, log_path)


def summarize(name, model_dir, export_dir, wall_seconds, batch_size, settings, latency_sentences):
    with open(os.path.join(model_dir, "eval_results.json")) as f:
        report = json.load(f)
    with open(os.path.join(model_dir, "train_stats.json")) as f:
        stats = json.load(f)
    latency = serving_latency(export_dir, latency_sentences)
    result = {
        "benchmark": name,
        "accuracy": report["accuracy"],
        "macro_f1": report["macro_f1"],
        "eval_examples": report["num_examples"],
        "train_examples_per_second": stats["steps_per_second"] * batch_size,
        "wall_seconds": wall_seconds,
        "export": export_dir,
        "export_p50_ms": latency["p50_ms"],
        "export_p95_ms": latency["p95_ms"],
        "settings": settings,
    }
    os.makedirs(RESULTS_DIR, exist_ok=True)
    with open(os.path.join(RESULTS_DIR, f"{name}.json"), "w") as f:
        json.dump(result, f, indent=1)
    rows = [
        ("accuracy (%)", f"{100 * result['accuracy']:.2f}"),
        ("macro F1 (%)", f"{100 * result['macro_f1']:.2f}"),
        ("train examples/s", f"{result['train_examples_per_second']:.1f}"),
        ("wall time (min)", f"{wall_seconds / 60:.1f}"),
        ("export p50 / p95 (ms, 1 sentence)", f"{latency['p50_ms']:.1f} / {latency['p95_ms']:.1f}"),
    ]
    print(f"\n{name}")
    for key, value in rows:
        print(f"  {key:<36}{value:>12}")
    print(f"  settings: {' '.join(settings)}")
    print(f"  wrote {os.path.join(RESULTS_DIR, name + '.json')}")
    return result
