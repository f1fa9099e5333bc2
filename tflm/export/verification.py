"""Checks an export in a fresh process against the in-memory model."""

import json
import os
import subprocess
import sys

import numpy as np

from tflm.errors import UserError

_SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fresh_process_check.py")


def run_in_fresh_process(export_dir, signature, inputs, timeout=600):
    """Runs `signature` of `export_dir` in a new Python that never imports tflm.

    Returns {"session": outputs, "tf2": outputs, "tflm_imported": bool}.
    """
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    # The script's folder would otherwise be sys.path[0]; keep tflm unreachable.
    env.pop("PYTHONPATH", None)
    completed = subprocess.run(
        [sys.executable, _SCRIPT, export_dir, signature, json.dumps(inputs)],
        capture_output=True, text=True, timeout=timeout, env=env, cwd=os.path.dirname(export_dir) or ".",
    )
    for line in completed.stdout.splitlines():
        if line.startswith("FRESH_PROCESS_RESULT "):
            return json.loads(line[len("FRESH_PROCESS_RESULT "):])
    tail = (completed.stderr.strip().splitlines() or ["no output"])[-1]
    raise UserError(f"export {export_dir}: loading it in a fresh process failed: {tail}")


def verify_export(export_dir, signature, inputs, expected, atol=1e-4):
    """Raises UserError unless both loaders reproduce `expected`.

    `expected` maps output names to arrays from the in-memory model; float
    outputs must agree within `atol`, others exactly.
    """
    result = run_in_fresh_process(export_dir, signature, inputs)
    if result["tflm_imported"]:
        raise UserError(f"export {export_dir}: the check process imported tflm")
    for loader in ("session", "tf2"):
        for name, want in expected.items():
            got = result[loader].get(name)
            if got is None:
                raise UserError(f"export {export_dir}: {loader} loader gives no output {name!r}")
            want = np.asarray(want)
            if want.dtype.kind == "f":
                diff = float(np.max(np.abs(np.asarray(got, dtype=np.float64) - want))) if want.size else 0.0
                if not diff < atol:
                    raise UserError(
                        f"export {export_dir}: {loader} loader output {name!r} differs from the "
                        f"in-memory model by {diff:.3g} (limit {atol})"
                    )
            elif np.asarray(got).ravel().tolist() != [
                v.decode("utf-8", "replace") if isinstance(v, bytes) else v for v in want.ravel().tolist()
            ]:
                raise UserError(f"export {export_dir}: {loader} loader output {name!r} differs")
    return result
