"""`<export_root>/models.config`: the TF Serving model config for the models under a root.

Start a server on it with `--model_config_file=<export_root>/models.config`.
After every export, each model folder under the root has an entry
(name, base path, platform); entries the user added or edited keep their
other settings (version policy, labels). Written atomically, so a server
polling the file (`--model_config_file_poll_wait_seconds`) never reads half
of it.
"""

import os
import uuid

import tensorflow as tf
from absl import logging
from google.protobuf import text_format
from tensorflow_serving.config import model_server_config_pb2

from tflm import run_files
from tflm.errors import UserError
from tflm.export.saved_model_versions import existing_versions

CONFIG_FILE = "models.config"


def read_config(path):
    """The ModelServerConfig in `path` (empty if there is no file)."""
    config = model_server_config_pb2.ModelServerConfig()
    if not tf.io.gfile.exists(path):
        return config
    with tf.io.gfile.GFile(path) as f:
        text = f.read()
    try:
        text_format.Parse(text, config)
    except text_format.ParseError as e:
        raise UserError(f"{path}: not a TF Serving model config ({e}); fix or remove it") from None
    if config.WhichOneof("config") == "custom_model_config":
        raise UserError(f"{path}: holds a custom_model_config; tflm only maintains model_config_list")
    return config


def model_names(export_root):
    """Folders under `export_root` holding at least one integer-named version."""
    if not tf.io.gfile.isdir(export_root):
        return []
    names = (n.rstrip("/") for n in tf.io.gfile.listdir(export_root))
    return sorted(n for n in names if not n.startswith(".") and existing_versions(os.path.join(export_root, n)))


def update_config(export_root, base_path=""):
    """Adds or updates an entry for every model under `export_root`; returns the config's path.

    Args:
      base_path: the folder the server sees `export_root` as (e.g. `/models`
        inside a container); empty: the absolute `export_root`.
    """
    path = os.path.join(export_root, CONFIG_FILE)
    config = read_config(path)
    entries = {entry.name: entry for entry in config.model_config_list.config}
    for name in model_names(export_root):
        entry = entries.get(name)
        if entry is None:
            entry = config.model_config_list.config.add(name=name, model_platform="tensorflow")
            entry.model_version_policy.latest.num_versions = 1
        entry.base_path = os.path.join(base_path or run_files.absolute(export_root), name)
    run_files.write_atomically(path, text_format.MessageToString(config))
    return path


def served_versions(config, name, versions):
    """Versions of model `name` the config's version policy serves (TF Serving's default: the latest)."""
    entry = next((e for e in config.model_config_list.config if e.name == name), None)
    if entry is None or not versions:
        return set(versions[-1:])
    policy = entry.model_version_policy
    kind = policy.WhichOneof("policy_choice")
    if kind == "all":
        return set(versions)
    if kind == "specific":
        return set(policy.specific.versions)
    return set(versions[-max(policy.latest.num_versions, 1):])


def retire_old_versions(export_root, name, keep_versions):
    """Deletes all but the newest `keep_versions` versions of `name`, never one the config serves.

    Each is first renamed to a hidden folder (the server stops seeing it at
    once; a loaded version keeps serving from memory) and then removed.
    Returns the retired version numbers.
    """
    model_root = os.path.join(export_root, name)
    versions = existing_versions(model_root)
    served = served_versions(read_config(os.path.join(export_root, CONFIG_FILE)), name, versions)
    retired = [v for v in versions[:-keep_versions] if v not in served]
    for version in retired:
        hidden = os.path.join(model_root, f".retired-{version}-{uuid.uuid4().hex[:8]}")
        tf.io.gfile.rename(os.path.join(model_root, str(version)), hidden)
        tf.io.gfile.rmtree(hidden)
    if retired:
        logging.info("Retired versions %s of %s (kept the newest %d)", retired, name, keep_versions)
    return retired
