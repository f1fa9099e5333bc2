"""Checks an export in a fresh process against the in-memory model."""

import json
import os
import subprocess
import sys
import tempfile

import numpy as np
from absl import logging

from tflm import run_files
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
    # The check runs in a scratch folder, where a relative path (the default --export_dir) means nothing.
    export_dir = run_files.absolute(export_dir)
    with tempfile.TemporaryDirectory() as scratch:
        record_files = []
        if requests:
            record_files.append(os.path.join(scratch, "requests.tfrecord"))
            warmup_requests.write_requests(record_files[0], "check", requests)
        try:
            completed = subprocess.run(
                [sys.executable, _SCRIPT, export_dir, *record_files],
                capture_output=True, text=True, timeout=timeout, env=env, cwd=scratch,
            )
        except subprocess.TimeoutExpired:
            raise UserError(f"export {export_dir}: loading it in a fresh process took over {timeout} s") from None
    for line in completed.stdout.splitlines():
        if line.startswith("FRESH_PROCESS_RESULT "):
            return json.loads(line[len("FRESH_PROCESS_RESULT "):])
    tail = (completed.stderr.strip().splitlines() or ["no output"])[-1]
    raise UserError(f"export {export_dir}: loading it in a fresh process failed: {tail}")


_SHOW = ("import sys, tensorflow_text\n"  # The graphs' tokenizer ops must be registered first.
         "from tensorflow.python.tools import saved_model_cli\n"
         "sys.argv = ['saved_model_cli', 'show', '--dir', sys.argv[1], '--all']\n"
         "saved_model_cli.main()\n")


def saved_model_cli_show(export_dir, timeout=600):
    """The text of `saved_model_cli show --dir export_dir --all`, run in a fresh process with tensorflow-text."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    try:
        completed = subprocess.run([sys.executable, "-c", _SHOW, export_dir], capture_output=True, text=True,
                                   timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        raise UserError(f"export {export_dir}: saved_model_cli show took over {timeout} s") from None
    if completed.returncode:
        tail = (completed.stderr.strip().splitlines() or ["no output"])[-1]
        raise UserError(f"export {export_dir}: saved_model_cli show failed: {tail}")
    return completed.stdout


def _float_problem(got, want, atol):
    got = np.asarray(got, dtype=np.float64)
    if got.shape != want.shape:
        return f"has shape {got.shape} instead of {want.shape}"
    diff = float(np.max(np.abs(got - want))) if want.size else 0.0
    return None if diff < atol else f"differs from the in-memory model by {diff:.3g} (limit {atol})"


def _rows(value):
    """Per-example rows of a string or integer output, comparable across loaders."""
    value = np.asarray(value)
    if value.dtype.kind in ("S", "O"):
        value = np.array([v.decode("utf-8", "replace") if isinstance(v, bytes) else v for v in value.ravel()])
    return [np.asarray(row).ravel().tolist() for row in value]


def verify_export(export_dir, requests, expected, atol=1e-4, min_row_agreement=1.0):
    """Raises UserError unless both loaders reproduce `expected`.

    `expected` holds, for each warmup record and then each of `requests`, the
    in-memory model's outputs. Float outputs must agree within `atol`.
    String and integer outputs are compared row by row (one row per example)
    and at least `min_row_agreement` of all rows must be identical: below
    1.0 for bfloat16 generation, where near-tied beams can break differently
    under the Session loader's graph rewrites; rows that differ are logged.
    """
    result = run_in_fresh_process(export_dir, requests)
    if result["tflm_imported"]:
        raise UserError(f"export {export_dir}: the check process imported tflm")
    if len(result["replies"]) != len(expected):
        raise UserError(f"export {export_dir}: {len(result['replies'])} replies to {len(expected)} requests")
    for loader in ("session", "tf2"):
        rows = matching = 0
        differing = []
        for index, (reply, want) in enumerate(zip(result["replies"], expected)):
            where = f"export {export_dir}: request {index} ({reply['signature']}): {loader} loader output"
            for name, value in want.items():
                got, value = reply[loader].get(name), np.asarray(value)
                if got is None:
                    raise UserError(f"{where} {name!r} is missing")
                if value.dtype.kind == "f":
                    problem = _float_problem(got, value, atol)
                    if problem:
                        raise UserError(f"{where} {name!r} {problem}")
                    continue
                got_rows, want_rows = _rows(got), _rows(value)
                if len(got_rows) != len(want_rows):
                    raise UserError(f"{where} {name!r} has {len(got_rows)} rows instead of {len(want_rows)}")
                for row, (a, b) in enumerate(zip(got_rows, want_rows)):
                    rows, matching = rows + 1, matching + (a == b)
                    if a != b:
                        differing.append(f"request {index} {name!r} row {row}")
        if rows and matching < min_row_agreement * rows:
            raise UserError(f"export {export_dir}: {loader} loader output differs from the in-memory model in "
                            f"{rows - matching} of {rows} rows ({', '.join(differing[:5])})")
        if differing:
            logging.warning("export %s: %s loader output differs in %d of %d rows (%s); allowed for bfloat16 "
                            "generation", export_dir, loader, len(differing), rows, ", ".join(differing[:5]))
    return result
