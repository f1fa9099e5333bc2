"""What every benchmark does: run a pipeline as a user would, find its export."""

import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS_DIR = os.path.join(ROOT, "benchmarks", "results")


def run_pipeline(module, flags, log_path):
    """Runs `python -m module flags` from the repo root, logging to `log_path`; returns wall seconds."""
    start = time.time()
    with open(log_path, "w") as log:
        subprocess.run([sys.executable, "-m", module, *flags], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                       check=True)
    return time.time() - start


def latest_export(export_root, name):
    model_root = os.path.join(export_root, name)
    version = max(int(v) for v in os.listdir(model_root) if v.isdigit())
    return os.path.join(model_root, str(version))
