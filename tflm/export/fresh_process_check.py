"""Loads a SavedModel the way TF Serving does and runs one signature.

Run as a script in a fresh Python process (it must not import tflm, so the
export is proven self-contained):

  python fresh_process_check.py EXPORT_DIR SIGNATURE INPUTS_JSON

INPUTS_JSON maps input names to lists of strings. Prints one JSON object:
{"session": {output: value}, "tf2": {output: value}, "tflm_imported": bool}.
"""

import json
import sys

import tensorflow as tf
import tensorflow_text  # noqa: F401  Registers the tokenizer ops the graph uses.


def _jsonable(value):
    value = value.numpy() if hasattr(value, "numpy") else value
    if value.dtype.kind in ("S", "O"):
        return [v.decode("utf-8", "replace") for v in value.ravel().tolist()]
    return value.tolist()


def main(export_dir, signature, inputs):
    feeds = {k: [s.encode("utf-8", "surrogateescape") for s in v] for k, v in inputs.items()}
    # 1. The TF1 Session loader: the C++ path TF Serving takes.
    with tf.compat.v1.Session(graph=tf.Graph()) as session:
        meta_graph = tf.compat.v1.saved_model.loader.load(session, ["serve"], export_dir)
        signature_def = meta_graph.signature_def[signature]
        fetches = {k: v.name for k, v in signature_def.outputs.items()}
        feed_dict = {signature_def.inputs[k].name: v for k, v in feeds.items()}
        session_out = session.run(fetches, feed_dict)
    # 2. The TF2 loader.
    loaded = tf.saved_model.load(export_dir)
    tf2_out = loaded.signatures[signature](**{k: tf.constant(v) for k, v in feeds.items()})
    return {
        "session": {k: _jsonable(v) for k, v in session_out.items()},
        "tf2": {k: _jsonable(v) for k, v in tf2_out.items()},
        "tflm_imported": any(m == "tflm" or m.startswith("tflm.") for m in sys.modules),
    }


if __name__ == "__main__":
    result = main(sys.argv[1], sys.argv[2], json.loads(sys.argv[3]))
    print("FRESH_PROCESS_RESULT " + json.dumps(result))
