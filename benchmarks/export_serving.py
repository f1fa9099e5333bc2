"""Export size and load + first-request time of each task's SavedModel, as TF Serving would load it.

  python benchmarks/export_serving.py

Each pipeline runs with its defaults (bundled data and backbone; a short
--train_steps, since only the export is measured) and exports. Then, in fresh
Python processes that import only TensorFlow and tensorflow-text, the export
is loaded through the TF1 Session loader (TF Serving's path) and timed:
load, the first single-text request without warmup, replaying the export's
warmup records, the first request after them, and the median of later
requests. Writes benchmarks/results/export_serving.json and the
`saved_model_cli show --all` listing of each export (export_listings/).
"""

import json
import os
import statistics
import subprocess
import sys

from absl import app
from absl import flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks.common import RESULTS_DIR  # noqa: E402
from benchmarks.common import latest_export  # noqa: E402
from benchmarks.common import run_pipeline  # noqa: E402
from tflm.export import verification  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string("work_dir", "/tmp/tflm_bench/export_serving", "Model dirs and exports.")
flags.DEFINE_integer("train_steps", 10, "Training steps before the export (the export is what is measured).")
flags.DEFINE_integer("repeats", 3, "Fresh processes per export; medians are reported.")
flags.DEFINE_list("pipelines", ["classify", "translate", "summarize", "generate_text"], "Pipelines to export.")

EXPORT_NAMES = {"classify": "text_classifier", "translate": "translator", "summarize": "summarizer",
                "generate_text": "text_generator"}
SAMPLE = {"classify": "a gorgeous, witty, seductive movie.", "translate": "Two dogs play in the snow.",
          "summarize": "Anna: are we still on for lunch?\nTom: yes, 12:30 at the usual place.",
          "generate_text": "a great film"}

_TIMED_LOAD = r"""
import json, os, sys, time
start = time.perf_counter()
import tensorflow as tf
import tensorflow_text
from tensorflow_serving.apis import prediction_log_pb2
imported = time.perf_counter()
export, text, warmup = sys.argv[1], sys.argv[2].encode(), sys.argv[3] == "1"
timings = {"import_s": imported - start}
with tf.compat.v1.Session(graph=tf.Graph()) as session:
    meta_graph = tf.compat.v1.saved_model.loader.load(session, ["serve"], export)
    timings["load_s"] = time.perf_counter() - imported

    def run(signature_name, inputs):
        signature = meta_graph.signature_def[signature_name or "serving_default"]
        return session.run({k: v.name for k, v in signature.outputs.items()},
                           {signature.inputs[k].name: v for k, v in inputs.items()})

    if warmup:
        start = time.perf_counter()
        path = os.path.join(export, "assets.extra", "tf_serving_warmup_requests")
        records = list(tf.compat.v1.io.tf_record_iterator(path))
        for record in records:
            request = prediction_log_pb2.PredictionLog.FromString(record).predict_log.request
            run(request.model_spec.signature_name, {k: tf.make_ndarray(v) for k, v in request.inputs.items()})
        timings["warmup_replay_s"] = time.perf_counter() - start
        timings["warmup_records"] = len(records)
    start = time.perf_counter()
    run("serving_default", {"text": [text]})
    timings["first_request_ms"] = (time.perf_counter() - start) * 1000
    later = []
    for _ in range(10):
        start = time.perf_counter()
        run("serving_default", {"text": [text]})
        later.append((time.perf_counter() - start) * 1000)
    timings["later_request_p50_ms"] = sorted(later)[len(later) // 2]
print("TIMINGS " + json.dumps(timings))
"""

def folder_mb(path):
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(path) for f in files) / 1e6


def timed_load(export, text, warmup):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    result = subprocess.run([sys.executable, "-c", _TIMED_LOAD, export, text, "1" if warmup else "0"],
                            capture_output=True, text=True, env=env, timeout=900)
    line = next((x for x in result.stdout.splitlines() if x.startswith("TIMINGS ")), None)
    if line is None:
        raise SystemExit(f"timing {export} failed: {result.stderr[-2000:]}")
    return json.loads(line[len("TIMINGS "):])


def measure(pipeline):
    model_dir = os.path.join(FLAGS.work_dir, pipeline)
    export_dir = os.path.join(FLAGS.work_dir, "savedmodels")
    seconds = run_pipeline(pipeline, [f"--model_dir={model_dir}", f"--export_dir={export_dir}",
                                      f"--train_steps={FLAGS.train_steps}", "--keep_versions=1"],
                           os.path.join(FLAGS.work_dir, f"{pipeline}.log"))
    export = latest_export(export_dir, EXPORT_NAMES[pipeline])
    with open(os.path.join(export, "assets.extra", "tflm_model.json")) as f:
        metadata = json.load(f)
    cold = [timed_load(export, SAMPLE[pipeline], warmup=False) for _ in range(FLAGS.repeats)]
    warm = [timed_load(export, SAMPLE[pipeline], warmup=True) for _ in range(FLAGS.repeats)]

    def median(runs, key):
        return statistics.median(r[key] for r in runs)

    os.makedirs(os.path.join(RESULTS_DIR, "export_listings"), exist_ok=True)
    with open(os.path.join(RESULTS_DIR, "export_listings", f"{EXPORT_NAMES[pipeline]}.txt"), "w") as f:
        f.write(verification.saved_model_cli_show(export))
    return {
        "pipeline": pipeline, "backbone": metadata["backbone"], "parameters": metadata["parameters"],
        "signatures": sorted(metadata["signatures"]),
        "export_mb": round(folder_mb(export), 1),
        "variables_mb": round(folder_mb(os.path.join(export, "variables")), 1),
        "pipeline_seconds": round(seconds, 1),
        "import_s": round(median(cold, "import_s"), 2),
        "load_s": round(median(cold, "load_s"), 2),
        "first_request_cold_ms": round(median(cold, "first_request_ms"), 1),
        "warmup_records": warm[0]["warmup_records"],
        "warmup_replay_s": round(median(warm, "warmup_replay_s"), 2),
        "first_request_after_warmup_ms": round(median(warm, "first_request_ms"), 1),
        "later_request_p50_ms": round(median(warm, "later_request_p50_ms"), 1),
    }


def main(argv):
    del argv
    rows = [measure(p) for p in FLAGS.pipelines]
    columns = ["pipeline", "backbone", "export_mb", "variables_mb", "load_s", "first_request_cold_ms",
               "warmup_replay_s", "first_request_after_warmup_ms", "later_request_p50_ms"]
    print("| " + " | ".join(columns) + " |")
    print("|" + "---|" * len(columns))
    for row in rows:
        print("| " + " | ".join(str(row[c]) for c in columns) + " |")
    # A run of some --pipelines replaces their rows and keeps the others'.
    path = os.path.join(RESULTS_DIR, "export_serving.json")
    kept = []
    if os.path.exists(path):
        with open(path) as f:
            kept = [row for row in json.load(f) if row["pipeline"] not in FLAGS.pipelines]
    os.makedirs(RESULTS_DIR, exist_ok=True)
    with open(path, "w") as f:
        json.dump(sorted(kept + rows, key=lambda row: list(EXPORT_NAMES).index(row["pipeline"])), f, indent=1)
    print(f"wrote {path}")


if __name__ == "__main__":
    app.run(main)
