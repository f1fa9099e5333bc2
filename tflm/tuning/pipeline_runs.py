"""Running a pipeline as a child process: how tuning trials and model-selection candidates train.

A process per run isolates what TensorFlow cannot undo in one process (the
strategy's devices and collectives, the dtype policy, a crash), lets a run
be stopped at a deadline with its progress saved, and gives its peak memory.
"""

import dataclasses
import os
import signal
import subprocess
import sys
import time

from tflm import run_files
from tflm.errors import UserError
from tflm.metrics.classification_metrics import CLASSIFICATION_METRICS
from tflm.metrics.generation_metrics import GENERATION_METRICS
from tflm.metrics.perplexity import LANGUAGE_MODEL_METRICS

PIPELINES = {"classify": "pipelines.classify", "translate": "pipelines.translate",
             "summarize": "pipelines.summarize", "generate_text": "pipelines.generate_text",
             "pretrain": "pipelines.pretrain"}
# Pipelines whose export is a SavedModel (pretrain's is a KerasHub preset, which serves nothing).
SERVING_PIPELINES = tuple(p for p in PIPELINES if p != "pretrain")
# Metrics each pipeline writes to eval_results.json that a search or selection can rank by.
METRICS = {"classify": CLASSIFICATION_METRICS,
           "translate": GENERATION_METRICS, "summarize": GENERATION_METRICS, "generate_text": GENERATION_METRICS,
           "pretrain": LANGUAGE_MODEL_METRICS}
DEFAULT_METRIC = {"classify": "accuracy", "translate": "bleu", "summarize": "rougeLsum", "generate_text": "rougeL",
                  "pretrain": "perplexity"}
# How long a run may take to checkpoint and exit after SIGTERM before it is killed.
STOP_GRACE_SECONDS = 120


@dataclasses.dataclass(frozen=True)
class RunResult:
    returncode: int
    seconds: float
    peak_memory_mb: float
    timed_out: bool
    message: str  # The run's own one-line error (or stop) message, else its last log line.
    log_path: str

    @property
    def ok(self):
        return self.returncode == 0


def objective_metric(pipeline, objective):
    """The metric to rank `pipeline` runs by: `objective`, or the pipeline's default when empty."""
    if not objective:
        return DEFAULT_METRIC[pipeline]
    if objective not in METRICS[pipeline]:
        raise UserError(f"--objective={objective}: the {pipeline} pipeline reports {', '.join(METRICS[pipeline])}")
    return objective


def passed_flags(pipeline_flags, owner, owned, hint=""):
    """{name: value} of the --flags given after `--` for every run; `owned` names are set by `owner` itself."""
    values = {}
    for flag in pipeline_flags:
        if not flag.startswith("--"):
            raise UserError(f"{flag!r} after '--': pipeline options are --flags")
        name, _, value = flag[2:].partition("=")
        if name in owned:
            raise UserError(f"--{name} after '--': {owner} sets it for each run{hint}")
        values[name] = value
    return values


def run_pipeline_process(pipeline, flags, log_path, timeout=None):
    """Runs `python -m pipelines.<pipeline> flags`, appending its output to `log_path`.

    At `timeout` seconds the run gets SIGTERM, on which a training pipeline
    saves a checkpoint and exits (rerunning resumes it); it is killed if it
    has not exited STOP_GRACE_SECONDS later.
    """
    start = time.time()
    environment = {k: v for k, v in os.environ.items() if k != "KERASTUNER_TUNER_ID"}
    with open(log_path, "a") as log:
        log.write(f"$ {PIPELINES[pipeline]} {' '.join(flags)}\n")
        log.flush()
        process = subprocess.Popen([sys.executable, "-m", PIPELINES[pipeline], *flags], stdout=log,
                                   stderr=subprocess.STDOUT, env=environment)
        timed_out, stop_sent = False, None
        while True:
            pid, status, usage = os.wait4(process.pid, os.WNOHANG)
            if pid:
                break
            now = time.time()
            if timeout is not None and not stop_sent and now - start > timeout:
                timed_out, stop_sent = True, now
                process.send_signal(signal.SIGTERM)
            elif stop_sent and now - stop_sent > STOP_GRACE_SECONDS:
                process.kill()
            time.sleep(0.2)
    return RunResult(os.waitstatus_to_exitcode(status), time.time() - start, usage.ru_maxrss / 1024, timed_out,
                     _last_message(log_path), log_path)


def export_run(pipeline, flags, model_dir, log_path):
    """Exports the weights of the run in `model_dir` with the pipeline's --mode=export; returns the version folder."""
    result = run_pipeline_process(pipeline, list(flags) + [f"--model_dir={model_dir}", "--mode=export"], log_path)
    if not result.ok:
        raise UserError(f"exporting {model_dir} failed: {result.message}")
    with open(log_path) as f:
        published = [line for line in f if line.startswith(run_files.EXPORTED)]
    return published[-1][len(run_files.EXPORTED):].strip()


def _last_message(log_path):
    with open(log_path, errors="replace") as f:
        lines = [line.strip() for line in f.read()[-20000:].splitlines() if line.strip()]
    for line in reversed(lines):
        if line.startswith(("error: ", "stopped: ", "FATAL Flags parsing error")):
            return line
    return lines[-1] if lines else ""
