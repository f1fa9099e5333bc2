"""Checks an export in a fresh process against the in-memory model."""

import json
import os
import subprocess
import sys
import tempfile

import numpy as np

from tflm.errors import UserError
from tflm.export import warmup_requests

_SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fresh_process_check.py")


def run_in_fresh_process(export_dir, requests=(), timeout=600):
    """Replays the export's warmup records, then `requests`, in a new Python that never imports tflm.

    Args:
      requests: (signature, inputs) pairs, inputs mapping names to numpy arrays.

    Returns {"replies": [{"signature", "session", "tf2"}, ...], "tflm_imported": bool},
    one reply per warmup record, then one per request.
    """
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    # The script's folder would otherwise be sys.path[0]; keep tflm unreachable.
    env.pop("PYTHONPATH", None)
    with tempfile.TemporaryDirectory() as scratch:
        record_files = []
        if requests:
            record_files.append(os.path.join(scratch, "requests.tfrecord"))
            warmup_requests.write_requests(record_files[0], "check", requests)
        completed = subprocess.run(
            [sys.executable, _SCRIPT, export_dir, *record_files],
            capture_output=True, text=True, timeout=timeout, env=env, cwd=scratch,
        )
    for line in completed.stdout.splitlines():
        if line.startswith("FRESH_PROCESS_RESULT "):
            return json.loads(line[len("FRESH_PROCESS_RESULT "):])
    tail = (completed.stderr.strip().splitlines() or ["no output"])[-1]
    raise UserError(f"export {export_dir}: loading it in a fresh process failed: {tail}")


def _differs(got, want, atol):
    want = np.asarray(want)
    if want.dtype.kind == "f":
        got = np.asarray(got, dtype=np.float64)
        if got.shape != want.shape:
            return f"shape {got.shape} instead of {want.shape}"
        diff = float(np.max(np.abs(got - want))) if want.size else 0.0
        return None if diff < atol else f"differs from the in-memory model by {diff:.3g} (limit {atol})"
    if want.dtype.kind in ("S", "O"):
        want = np.array([v.decode("utf-8", "replace") if isinstance(v, bytes) else v for v in want.ravel()])
    return None if np.asarray(got).ravel().tolist() == want.ravel().tolist() else "differs"


def verify_export(export_dir, requests, expected, atol=1e-4):
    """Raises UserError unless both loaders reproduce `expected`.

    `expected` holds, for each warmup record and then each of `requests`, the
    in-memory model's outputs; float outputs must agree within `atol`,
    others exactly.
    """
    result = run_in_fresh_process(export_dir, requests)
    if result["tflm_imported"]:
        raise UserError(f"export {export_dir}: the check process imported tflm")
    if len(result["replies"]) != len(expected):
        raise UserError(f"export {export_dir}: {len(result['replies'])} replies to {len(expected)} requests")
    for index, (reply, want) in enumerate(zip(result["replies"], expected)):
        for loader in ("session", "tf2"):
            for name, value in want.items():
                got = reply[loader].get(name)
                problem = "is missing" if got is None else _differs(got, value, atol)
                if problem:
                    raise UserError(f"export {export_dir}: request {index} ({reply['signature']}): {loader} "
                                    f"loader output {name!r} {problem}")
    return result
