"""TF Serving's layout: `<root>/<name>/<integer version>/`, written atomically.

A version is written into a hidden temporary folder beside the final one
(TF Serving only watches integer-named folders), verified, then renamed, so a
killed export never leaves a half-written version that a server could load.
Existing versions are never overwritten.
"""

import os
import re
import uuid

import tensorflow as tf
from absl import logging

from tflm.errors import UserError

# Model names TF Serving and file systems both accept.
VALID_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def existing_versions(model_root):
    if not tf.io.gfile.isdir(model_root):
        return []
    return sorted(int(n.rstrip("/")) for n in tf.io.gfile.listdir(model_root) if n.rstrip("/").isdigit())


def write_new_version(export_root, name, write, verify=None, version=0):
    """Writes a new version of model `name` under `export_root`.

    Args:
      write: callable(path) that writes a SavedModel at `path`.
      verify: optional callable(path) run before the version is published;
        it raises to reject the export.
      version: the version number to write; 0: the next free one. An
        existing version is an error, never overwritten.

    Returns the published version folder.
    """
    if not VALID_NAME.match(name or ""):
        raise UserError(f"--export_name={name!r}: use letters, digits, '.', '_' or '-'")
    model_root = os.path.join(export_root, name)
    try:
        tf.io.gfile.makedirs(model_root)
    except (tf.errors.OpError, OSError) as e:
        raise UserError(f"--export_dir={export_root}: cannot create {model_root} ({e})") from None
    if version < 0:
        raise UserError(f"--export_version={version}: must be >= 0 (0: the next free version)")
    if version and tf.io.gfile.exists(os.path.join(model_root, str(version))):
        raise UserError(f"--export_version={version}: {os.path.join(model_root, str(version))} already "
                        "exists and is never overwritten (a server may be serving it); omit "
                        "--export_version for the next free version")
    version = version or (existing_versions(model_root) or [0])[-1] + 1
    staging = os.path.join(model_root, f".staging-{version}-{uuid.uuid4().hex[:8]}")
    final = os.path.join(model_root, str(version))
    try:
        write(staging)
        if verify is not None:
            verify(staging)
        if tf.io.gfile.exists(final):
            raise UserError(f"{final} appeared while exporting; not overwriting it")
        tf.io.gfile.rename(staging, final)
    finally:
        if tf.io.gfile.exists(staging):
            tf.io.gfile.rmtree(staging)
    logging.info("Exported %s", final)
    return final
