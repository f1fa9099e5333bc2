"""Loads a SavedModel the way TF Serving does and replays PredictRequests.

Run as a script in a fresh Python process (it must not import tflm, so the
export is proven self-contained):

  python fresh_process_check.py EXPORT_DIR [RECORDS_FILE ...]

Replays every PredictionLog of the export's own warmup file (if any), then of
each RECORDS_FILE, through TF Serving's loader (TF1 Session) and the TF2
loader. Prints one JSON object: {"replies": [{"signature": name,
"session": {output: value}, "tf2": {output: value}}, ...],
"tflm_imported": bool}.
"""

import json
import os
import sys

import tensorflow as tf
import tensorflow_text  # noqa: F401  Registers the tokenizer ops the graph uses.
from tensorflow_serving.apis import prediction_log_pb2

# tflm.export.warmup_requests.WARMUP_FILE, repeated: this script must not import tflm.
WARMUP_FILE = os.path.join("assets.extra", "tf_serving_warmup_requests")


def _jsonable(value):
    value = value.numpy() if hasattr(value, "numpy") else value
    if value.dtype.kind in ("S", "O"):
        return [v.decode("utf-8", "replace") for v in value.ravel().tolist()]
    return value.tolist()


def read_requests(path):
    """The PredictRequests of a TFRecord file of PredictionLog."""
    requests = []
    for record in tf.compat.v1.io.tf_record_iterator(path):
        log = prediction_log_pb2.PredictionLog.FromString(record)
        requests.append(log.predict_log.request)
    return requests


def main(export_dir, record_files):
    warmup = os.path.join(export_dir, WARMUP_FILE)
    requests = [r for path in ([warmup] if os.path.exists(warmup) else []) + record_files
                for r in read_requests(path)]
    replies = []
    # 1. The TF1 Session loader: the C++ path TF Serving takes.
    with tf.compat.v1.Session(graph=tf.Graph()) as session:
        meta_graph = tf.compat.v1.saved_model.loader.load(session, ["serve"], export_dir)
        for request in requests:
            signature = request.model_spec.signature_name or "serving_default"
            signature_def = meta_graph.signature_def[signature]
            fetches = {k: v.name for k, v in signature_def.outputs.items()}
            feed_dict = {signature_def.inputs[k].name: tf.make_ndarray(v) for k, v in request.inputs.items()}
            outputs = session.run(fetches, feed_dict)
            replies.append({"signature": signature, "session": {k: _jsonable(v) for k, v in outputs.items()}})
    # 2. The TF2 loader.
    loaded = tf.saved_model.load(export_dir)
    for request, reply in zip(requests, replies):
        inputs = {k: tf.constant(tf.make_ndarray(v)) for k, v in request.inputs.items()}
        reply["tf2"] = {k: _jsonable(v) for k, v in loaded.signatures[reply["signature"]](**inputs).items()}
    return {"replies": replies,
            "tflm_imported": any(m == "tflm" or m.startswith("tflm.") for m in sys.modules)}


if __name__ == "__main__":
    result = main(sys.argv[1], sys.argv[2:])
    print("FRESH_PROCESS_RESULT " + json.dumps(result))
