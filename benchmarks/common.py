"""What every benchmark does: run a pipeline as a user would, find its export."""

import os

from tflm.tuning import pipeline_runs

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS_DIR = os.path.join(ROOT, "benchmarks", "results")


def run_pipeline(pipeline, flags, log_path):
    """Runs a tflm pipeline ("classify", "translate", ...) as a user would; returns wall seconds.

    Output is appended to `log_path`; a failed run stops the benchmark with its error line.
    """
    result = pipeline_runs.run_pipeline(pipeline, flags, log_path)
    if not result.ok:
        raise SystemExit(f"{pipeline} failed ({result.message}); log: {log_path}")
    return result.seconds


def latest_export(export_root, name):
    model_root = os.path.join(export_root, name)
    version = max(int(v) for v in os.listdir(model_root) if v.isdigit())
    return os.path.join(model_root, str(version))


def convert_trec(source, target):
    """TREC's `COARSE:fine text` lines -> a `question<TAB>label` TSV (coarse label, latin-1); returns the questions."""
    questions = []
    with open(source, encoding="latin-1") as f, open(target, "w", encoding="latin-1") as out:
        out.write("question\tlabel\n")
        for line in f:
            label, text = line.rstrip("\n").split(" ", 1)
            out.write(f"{text}\t{label.split(':')[0]}\n")
            questions.append(text)
    return questions
