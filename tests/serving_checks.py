"""What a TF Serving operator checks on an export, done independently of tflm's own export check."""

import json
import pathlib
import re
import subprocess
import sys

from tests.conftest import child_env
from tflm.export import verification

# Runs in a fresh Python: the Session loader (TF Serving's path) replays every
# warmup record, each parsed as PredictionLog -> PredictRequest.
_REPLAY = r"""
import json, os, sys
import tensorflow as tf
import tensorflow_text
from tensorflow_serving.apis import predict_pb2, prediction_log_pb2
export = sys.argv[1]
replies = []
with tf.compat.v1.Session(graph=tf.Graph()) as session:
    meta_graph = tf.compat.v1.saved_model.loader.load(session, ["serve"], export)
    path = os.path.join(export, "assets.extra", "tf_serving_warmup_requests")
    for record in tf.compat.v1.io.tf_record_iterator(path):
        log = prediction_log_pb2.PredictionLog.FromString(record)
        assert log.WhichOneof("log_type") == "predict_log"
        request = predict_pb2.PredictRequest.FromString(log.predict_log.request.SerializeToString())
        signature = meta_graph.signature_def[request.model_spec.signature_name]
        inputs = {k: tf.make_ndarray(v) for k, v in request.inputs.items()}
        outputs = session.run({k: v.name for k, v in signature.outputs.items()},
                              {signature.inputs[k].name: v for k, v in inputs.items()})
        replies.append({"model": request.model_spec.name, "signature": request.model_spec.signature_name,
                        "batch": sorted({len(v) for v in inputs.values()}),
                        "output_batch": sorted({len(v) for v in outputs.values()}),
                        "outputs": sorted(outputs)})
print("REPLIES " + json.dumps(replies))
"""

def replay_warmup_requests(export_path):
    """[{model, signature, batch, output_batch, outputs}] for each warmup record, from a fresh process."""
    result = subprocess.run([sys.executable, "-c", _REPLAY, export_path], capture_output=True, text=True,
                            env=child_env(), timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    line = next(line for line in result.stdout.splitlines() if line.startswith("REPLIES "))
    return json.loads(line[len("REPLIES "):])


def saved_model_cli_signatures(export_path):
    """{signature: {"inputs": {name: DT_...}, "outputs": {name: DT_...}}} parsed from `saved_model_cli show --all`."""
    signatures = {}
    for block in re.split(r"\nsignature_def\['", verification.saved_model_cli_show(export_path))[1:]:
        name = block[:block.index("'")]
        inputs, _, outputs = block.partition("contains the following output(s):")
        signatures[name] = {
            "inputs": dict(re.findall(r"inputs\['(\w+)'\] tensor_info:\s+dtype: (\w+)", inputs)),
            "outputs": dict(re.findall(r"outputs\['(\w+)'\] tensor_info:\s+dtype: (\w+)", outputs)),
        }
    return signatures


def assert_serving_grade(export_path, model_name, signatures):
    """The export lists exactly `signatures` (name -> {"inputs": {..}, "outputs": {..}} of DT_ types)
    and its warmup records cover every one of them and replay through the Session loader."""
    listed = saved_model_cli_signatures(export_path)
    listed.pop("__saved_model_init_op", None)
    assert listed == signatures
    replies = replay_warmup_requests(export_path)
    assert {r["signature"] for r in replies} == set(signatures)
    for reply in replies:
        assert reply["model"] == model_name
        assert len(reply["batch"]) == 1 and reply["output_batch"] == reply["batch"]
        assert reply["outputs"] == sorted(signatures[reply["signature"]]["outputs"])
    assert max(r["batch"][0] for r in replies) > 1  # A batched request, not only single texts.
    # No function TF Serving would have to XLA-compile: its CPU build does not unless started with a flag.
    assert b"_XlaMustCompile" not in (pathlib.Path(export_path) / "saved_model.pb").read_bytes()
