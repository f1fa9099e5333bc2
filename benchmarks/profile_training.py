"""Where a tflm training step spends its time: TensorFlow profiler, op time by category.

  python benchmarks/profile_training.py --seq=64

Builds the bundled-MiniLM classifier exactly as tflm-classify does (default
precision), runs the tflm Trainer's compiled step on full-length batch-32
rows, profiles `--steps` steps with `tf.profiler`, and sums the device time
of every TensorFlow op on the host CPU by category (matmul, attention
softmax, layer norm, GELU, dropout, optimizer, casts, ...). XLA-compiled
functions (tflm's GELU, layer norm, softmax and dropout kernels and its
optimizer update) leave no op events in the CPU trace, so their time is not
in the sums: it is part of the gap between the step and the ops. With
`--ablation_rounds=N` it then measures them the other way: the real step
alternates with timing-only variants of the model in which one kernel family
costs nothing (dropout rates 0; GELU or layer norm the identity), N rounds
of 3 steps, and the paired median saving is that family's share; one more
variant runs the attention softmax and dropout unfused, so its (negative)
saving is the fusion's gain. Writes
benchmarks/results/profile_seq<N>.json and prints the tables.
"""

import collections
import glob
import json
import os
import re
import statistics
import sys
import tempfile
import time
import types
import warnings

from absl import app
from absl import flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks.common import classifier_training_loop  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_integer("seq", 64, "Sequence length (every row full length).")
flags.DEFINE_integer("batch", 32, "Batch size.")
flags.DEFINE_integer("steps", 5, "Profiled steps (after 3 warm-up steps).")
flags.DEFINE_string("precision", "auto", "tflm --precision.")
flags.DEFINE_integer("ablation_rounds", 0, "If > 0, also time the step with each element-wise kernel family made "
                     "free (ABLATIONS), alternating with the real step for this many rounds of 3 steps.", lower_bound=0)

# First match wins; patterns are matched against "<op type>:<op name>".
CATEGORIES = [
    ("optimizer (AdamW, clipping)", r"adam|optimizer|clip|global_norm|Assign(Add|Sub)?Variable|ResourceApply"),
    ("matmul (dense layers, attention)", r"^_?(Mkl)?(Native)?(Fused)?(MatMul|BatchMatMul|Einsum|Conv)"),
    ("softmax", r"Softmax"),
    ("layer norm", r"layer_norm|LayerNorm|FusedBatchNorm|Rsqrt|SquaredDifference|Mean"),
    ("GELU / activations", r"Erf|Gelu|Tanh|Relu|Sigmoid"),
    ("dropout (random)", r"dropout|Stateless|Random|GreaterEqual|SelectV2"),
    ("dtype casts", r"^Cast"),
    ("embedding gather / scatter", r"Gather|Scatter|UnsortedSegmentSum|embedding"),
    ("elementwise / other", r".*"),
]


def categorize(op_type, op_name):
    key = f"{op_type}:{op_name}"
    for category, pattern in CATEGORIES:
        if re.search(pattern, key, flags=re.IGNORECASE):
            return category
    return "elementwise / other"


def op_times(logdir):
    """{(op type, op name): microseconds} over TensorFlow op events of the host trace."""
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    path = sorted(glob.glob(os.path.join(logdir, "**", "*.xplane.pb"), recursive=True))[-1]
    space = xplane_pb2.XSpace()
    with open(path, "rb") as f:
        space.ParseFromString(f.read())
    totals = collections.Counter()
    for plane in space.planes:
        if not plane.name.startswith("/host:CPU"):
            continue
        metadata = plane.event_metadata
        for line in plane.lines:
            if "TraceMe" in line.name or "Python" in line.name:
                continue
            for event in line.events:
                name = metadata[event.metadata_id].name
                # TF op events are named "op_name:OpType"; executor and Python trace events are not.
                if ":" not in name or name.startswith(("Iterator", "tf_data", "ThreadPool")):
                    continue
                op_name, _, op_type = name.rpartition(":")
                # Executor events ("ExecutorState::Process") are not ops; oneDNN ops start with "_Mkl".
                if "::" in name or not re.fullmatch(r"_?[A-Z]\w*", op_type):
                    continue
                totals[(op_type, op_name)] += event.duration_ps / 1e6
    return totals


def training_loop(steps, ablation=None):
    """The classifier's compiled step as tflm-classify builds it, optionally with one ABLATIONS family made free."""
    def make_free(model):
        for layer in model._flatten_layers(include_self=True):
            ABLATIONS[ablation](layer)
        # Made-free layer norms leave their gamma and beta without gradients; Keras warns every step.
        warnings.filterwarnings("ignore", message="Gradients do not exist")

    return classifier_training_loop(FLAGS.seq, FLAGS.batch, steps, make_free if ablation else None)


def _no_dropout(layer):
    import keras

    if isinstance(layer, keras.layers.Dropout):
        layer.rate = 0.0
    if isinstance(layer, keras.layers.MultiHeadAttention):
        layer._dropout = 0.0  # Its attention-weights dropout.


def _no_gelu(layer):
    import keras

    if isinstance(layer, (keras.layers.Dense, keras.layers.EinsumDense)) and \
            getattr(layer.activation, "__name__", "") in ("fast_gelu", "fast_gelu_approximate"):
        layer.activation = keras.activations.linear


def _no_layer_norm(layer):
    import keras

    if isinstance(layer, keras.layers.LayerNormalization):
        layer.call = lambda inputs, *args, **kwargs: inputs


def _softmax_dropout_apart(layer):
    import keras

    from tflm.backbones.fast_kernels import fast_dropout_call

    if isinstance(layer, keras.layers.MultiHeadAttention):
        # The same dropout through another function: fast_attention then runs the softmax and it apart.
        layer._dropout_layer.call = types.MethodType(
            lambda self, inputs, training=False: fast_dropout_call(self, inputs, training), layer._dropout_layer)


# Timing-only variants of the model: what a step would save if one family of
# tflm's XLA-compiled element-wise kernels cost nothing. XLA kernels leave no
# op events in the profile, so this is how their share is measured. The last
# one undoes a fusion instead: its negative saving is what the fusion gains.
ABLATIONS = {"dropout (all rates 0)": _no_dropout, "GELU (identity)": _no_gelu,
             "layer norm (identity)": _no_layer_norm,
             "attention softmax and dropout in two passes (not fused)": _softmax_dropout_apart}


def ablation_savings(rounds, steps=3):
    """{family: {"step_ms", "saving_ms", "share"}}: medians over rounds of the real step alternating with each variant."""
    import tensorflow as tf

    loops = {name: training_loop(3 + (rounds + 1) * steps, name) for name in [None, *ABLATIONS]}
    times = {name: [] for name in loops}
    for round_ in range(rounds + 1):  # The first round is untimed.
        for name, (loop, iterator) in loops.items():
            start = time.perf_counter()
            loop(iterator, tf.constant(steps), tf.constant(0.0))[0].numpy()
            if round_:
                times[name].append((time.perf_counter() - start) / steps * 1000)
    real = statistics.median(times[None])
    savings = {name: statistics.median(a - b for a, b in zip(times[None], times[name])) for name in ABLATIONS}
    return {name: {"step_ms": statistics.median(times[name]), "saving_ms": saving, "share": saving / real}
            for name, saving in savings.items()}


def main(argv):
    del argv
    import keras
    import tensorflow as tf

    from tflm.training import runtime

    precision = runtime.resolve_precision(FLAGS.precision, tf.distribute.get_strategy())
    keras.config.set_dtype_policy(precision)
    train_loop, iterator = training_loop(3 + FLAGS.steps + 1000)
    start = time.perf_counter()
    train_loop(iterator, tf.constant(FLAGS.steps), tf.constant(0.0))[0].numpy()
    unprofiled = (time.perf_counter() - start) / FLAGS.steps
    logdir = tempfile.mkdtemp()
    tf.profiler.experimental.start(logdir)
    train_loop(iterator, tf.constant(FLAGS.steps), tf.constant(0.0))[0].numpy()
    tf.profiler.experimental.stop()
    totals = op_times(logdir)
    by_category = collections.Counter()
    for (op_type, op_name), micros in totals.items():
        by_category[categorize(op_type, op_name)] += micros
    op_total = sum(by_category.values())
    result = {
        "seq": FLAGS.seq, "batch": FLAGS.batch, "precision": precision,
        "step_ms_unprofiled": unprofiled * 1000,
        "op_ms_per_step": op_total / 1000 / FLAGS.steps,
        "categories_ms_per_step": {k: v / 1000 / FLAGS.steps for k, v in by_category.most_common()},
        "top_op_types_ms_per_step": {
            t: v / 1000 / FLAGS.steps for t, v in collections.Counter(
                {t: sum(m for (ty, _), m in totals.items() if ty == t) for t in {ty for ty, _ in totals}}
            ).most_common(15)},
    }
    print(f"step {result['step_ms_unprofiled']:.0f} ms unprofiled; summed op time {result['op_ms_per_step']:.0f} ms "
          "per step (ops on two cores overlap, so the sum can exceed the step)")
    print("| category | ms / step | share of op time |\n|---|---|---|")
    for category, ms in result["categories_ms_per_step"].items():
        print(f"| {category} | {ms:.1f} | {100 * ms / result['op_ms_per_step']:.1f}% |")
    print("\ntop op types:", ", ".join(f"{t} {ms:.1f}" for t, ms in result["top_op_types_ms_per_step"].items()))
    if FLAGS.ablation_rounds:
        result["ablations"] = ablation_savings(FLAGS.ablation_rounds)
        print("\n| made free (timing only) | step ms | paired saving, ms | share of the real step |\n|---|---|---|---|")
        for name, a in result["ablations"].items():
            print(f"| {name} | {a['step_ms']:.0f} | {a['saving_ms']:.0f} | {100 * a['share']:.0f}% |")
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", f"profile_seq{FLAGS.seq}.json")
    with open(path, "w") as f:
        json.dump(result, f, indent=1)
    print(f"wrote {path}")


if __name__ == "__main__":
    app.run(main)
