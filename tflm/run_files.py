"""Writing the small files of a run (metrics, flags, predictions) so a crash never leaves half of one.

Also the one line of a run's output that a parent process reads: where it exported.
"""

import json
import os

import tensorflow as tf

# Every task's validation report, in its model dir: what a search or selection ranks by.
EVAL_RESULTS_FILE = "eval_results.json"
# Printed before the path of what a pipeline exported (a SavedModel, or pretrain's preset);
# tflm-tune and tflm-select-model read it from the run's log.
EXPORTED = "Exported and verified "


def write_atomically(path, text):
    """Writes `text` to `path` (any tf.io.gfile path) through a temporary file and a rename.

    A process killed mid-write leaves the previous file whole, and the
    rename replaces the old content outright on every file system.
    """
    temporary = f"{path}.tmp-{os.getpid()}"
    with tf.io.gfile.GFile(temporary, "w") as f:
        f.write(text)
    tf.io.gfile.rename(temporary, path, overwrite=True)


def absolute(path):
    """A local `path` made absolute; a URL (gs://...) as it is, since os.path would mangle it."""
    return path if "://" in path else os.path.abspath(path)


def write_json(path, value):
    write_atomically(path, json.dumps(value, indent=1, ensure_ascii=False) + "\n")


def write_json_lines(path, rows):
    write_atomically(path, "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))
