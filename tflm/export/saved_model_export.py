"""Writes a ServingModule as a TF Serving model version: checked, published, listed in models.config.

A version holds the SavedModel (three signatures, see `serving_module`),
`assets.extra/tf_serving_warmup_requests` (requests built from validation
samples, one or more per signature) and `assets.extra/tflm_model.json`
(what the model is and how it was made). Before it is published, a fresh
Python process that never imports tflm loads it through TF Serving's Session
loader and through `tf.saved_model.load`, replays the warmup records and
edge-case requests, and must reproduce the in-memory model's outputs.
"""

import dataclasses
import datetime
import json
import os

import tensorflow as tf

from tflm.export import model_server_config
from tflm.export import saved_model_versions
from tflm.export import verification
from tflm.export import warmup_requests
from tflm.export.serving_module import EDGE_CASE_TEXTS
from tflm.export.serving_module import request_bytes

METADATA_FILE = os.path.join("assets.extra", "tflm_model.json")
# Validation samples per text input used for warmup requests.
WARMUP_SAMPLES = 8


@dataclasses.dataclass(frozen=True)
class ExportTarget:
    """Where and how a model is published."""

    root: str  # <root>/<name>/<version>/
    name: str
    version: int = 0  # 0: the next free version.
    keep_versions: int = 0  # 0: keep every version.
    config_base_path: str = ""  # How the server sees `root` in models.config; empty: its absolute path.


def signature_descriptions(module):
    """{signature: {"inputs": {name: dtype}, "outputs": {name: dtype}}}, as TF Serving clients see them."""
    described = {}
    for name, function in module.signatures().items():
        inputs = tf.nest.flatten(function.structured_input_signature)
        outputs = function.structured_outputs
        described[name] = {
            "inputs": {spec.name: {"dtype": spec.dtype.name, "shape": spec.shape.as_list()} for spec in inputs},
            "outputs": {k: {"dtype": v.dtype.name, "shape": v.shape.as_list()} for k, v in outputs.items()},
        }
    return described


def export_saved_model(module, target, sample_columns, metadata=None):
    """Exports `module`, checks it in a fresh process, publishes it; returns the version folder.

    Args:
      sample_columns: validation texts, one list per text input of the
        module; the first `WARMUP_SAMPLES` become the warmup requests.
      metadata: JSON-ready dict merged into tflm_model.json.
    """
    # A broken models.config fails the export before anything is written.
    model_server_config.read_config(os.path.join(target.root, model_server_config.CONFIG_FILE))
    warmup = module.requests([list(column[:WARMUP_SAMPLES]) for column in sample_columns])
    edge_cases = [("serving_default", {n: request_bytes(EDGE_CASE_TEXTS).numpy() for n in module.text_inputs})]
    expected = [module.run_request(signature, inputs) for signature, inputs in warmup + edge_cases]

    def write(path):
        # A serving export is never differentiated; saved custom gradients would
        # also bring back the kernels' XLA-compiled backward functions.
        tf.saved_model.save(module, path, signatures=module.signatures(),
                            options=tf.saved_model.SaveOptions(experimental_custom_gradients=False))
        tf.io.gfile.makedirs(os.path.join(path, "assets.extra"))
        warmup_requests.write_requests(os.path.join(path, warmup_requests.WARMUP_FILE), target.name, warmup)
        record = dict(metadata or {}, model_name=target.name, signatures=signature_descriptions(module),
                      exported_at=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"))
        with tf.io.gfile.GFile(os.path.join(path, METADATA_FILE), "w") as f:
            json.dump(record, f, indent=1, ensure_ascii=False)

    def verify(path):
        verification.verify_export(path, edge_cases, expected, atol=module.atol,
                                   min_row_agreement=module.min_row_agreement)

    path = saved_model_versions.write_new_version(target.root, target.name, write, verify, target.version)
    model_server_config.update_config(target.root, target.config_base_path)
    if target.keep_versions:
        model_server_config.retire_old_versions(target.root, target.name, target.keep_versions)
    return path
