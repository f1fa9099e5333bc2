"""tflm's fast dropout / GELU / layer-norm / attention kernels and its AdamW against Keras's own, side by side.

  python benchmarks/fast_kernels.py --sst2_dir=../shared/data/sst2

Training: the bundled-MiniLM classifier is built twice as tflm-classify
builds it (default precision), once with Keras's kernels and once switched
by `use_fast_kernels`; each gets the tflm Trainer's compiled step. Their
timed calls (`--steps` steps on full-length batch-32 rows) alternate for
`--rounds` rounds, so both see the same machine load; the table gives the
median step time and the median of the paired ratios. Serving: both models
are exported as raw-text SavedModels (the classifier's serving module) and
answer the same SST-2 dev sentences alternately, one text and 32 texts per
request. Optimizer: keras.optimizers.AdamW and tflm's FusedAdamW (both with
tflm-classify's settings: global-norm clipping 1.0, weight decay 0.01 except
bias and LayerNorm) apply the same MiniLM gradients (a real seq-64 batch;
the word embedding's as IndexedSlices) in alternating timed calls. Writes
benchmarks/results/fast_kernels.json.
"""

import json
import os
import statistics
import sys
import tempfile
import time

from absl import app
from absl import flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks.common import full_length_batch  # noqa: E402
from benchmarks.common import full_length_training_loop  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string("sst2_dir", os.path.join("..", "shared", "data", "sst2"), "SST-2 folder (dev.tsv) for serving.")
flags.DEFINE_list("seq_lengths", ["64", "128"], "Training sequence lengths.")
flags.DEFINE_integer("batch", 32, "Training batch size.")
flags.DEFINE_integer("steps", 5, "Training steps per timed call.", lower_bound=1)
flags.DEFINE_integer("rounds", 8, "Alternating timed calls per model.", lower_bound=1)
flags.DEFINE_integer("requests", 150, "Timed one-text requests per export (32-text requests: a fifth).", lower_bound=5)

VARIANTS = ("keras", "fast")


def build_classifier(variant):
    """The classifier TextClassificationTask builds, with Keras's kernels or switched to tflm's."""
    from tflm import backbones
    from tflm import heads
    from tflm.tasks import TextClassificationConfig
    from tflm.tasks import TextClassificationTask

    task = TextClassificationTask(TextClassificationConfig(max_seq_length=max(int(s) for s in FLAGS.seq_lengths)))
    backbone, preset = backbones.load_backbone(task.config.backbone)
    model = heads.build_text_classifier(backbone, 2, task.config.dropout, task.config.pooling)
    if variant == "fast":
        backbones.use_fast_kernels(model)  # As TextClassificationTask.build_model does.
    return task, model, preset


def time_training(seq):
    import keras
    import tensorflow as tf

    loops = {}
    for variant in VARIANTS:
        keras.utils.set_random_seed(0)
        task, model, _ = build_classifier(variant)
        loops[variant] = full_length_training_loop(model, task.loss, seq, FLAGS.batch,
                                                   3 + (FLAGS.rounds + 1) * FLAGS.steps)

    def call(loop, iterator):
        return lambda: loop(iterator, tf.constant(FLAGS.steps), tf.constant(0.0))[0].numpy()

    return summary(alternate_timed_calls({variant: call(*loop) for variant, loop in loops.items()}))


def time_optimizer():
    import keras
    import tensorflow as tf

    from tflm.training import optimization

    task, model, _ = build_classifier("fast")
    features, labels = full_length_batch(FLAGS.batch, 64)
    variables = model.trainable_variables

    @tf.function
    def gradients():
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(task.loss(labels, model(features, training=True)))
        return tape.gradient(loss, [v.value for v in variables])

    grads = gradients()
    keras_adamw = keras.optimizers.AdamW(optimization.WarmupLinearDecay(5e-5, 1000, 100), weight_decay=0.01,
                                         global_clipnorm=1.0, epsilon=1e-6)
    keras_adamw.exclude_from_weight_decay(var_names=optimization.NO_DECAY_NAMES)
    optimizers = {"keras": keras_adamw, "fast": optimization.create_optimizer(5e-5, 1000, 0.1, 0.01, 1.0)}

    def apply_n_times(optimizer):
        @tf.function
        def step(n):
            for _ in tf.range(n):
                optimizer.apply(grads, variables)
        step(tf.constant(1))
        return step

    steps = {variant: apply_n_times(optimizer) for variant, optimizer in optimizers.items()}
    return summary(alternate_timed_calls({variant: lambda step=step: step(tf.constant(FLAGS.steps))
                                          for variant, step in steps.items()}))


def alternate_timed_calls(calls):
    """{variant: ms per step of each timed call}: the variants' calls (`--steps` steps each) take turns.

    One untimed round first (first multi-step calls ran slow), then `--rounds` timed ones.
    """
    times = {variant: [] for variant in calls}
    for round_ in range(-1, FLAGS.rounds):
        for variant, call in calls.items():
            start = time.perf_counter()
            call()
            if round_ >= 0:
                times[variant].append((time.perf_counter() - start) / FLAGS.steps * 1000)
    return times


def summary(times):
    """Median ms per variant, and the median / min / max of the paired keras/fast ratios."""
    ratios = [k / f for k, f in zip(times["keras"], times["fast"])]
    return {**{f"{v}_ms": statistics.median(times[v]) for v in VARIANTS},
            "speedup": {"median": statistics.median(ratios), "min": min(ratios), "max": max(ratios),
                        "n": len(ratios)}}


def time_serving():
    import tensorflow as tf
    import tensorflow_text  # noqa: F401 (registers the tokenizer ops the exports use)

    from tflm.export.text_classifier_export import TextClassifierServingModule

    signatures = {}
    for variant in VARIANTS:
        task, model, preset = build_classifier(variant)
        module = TextClassifierServingModule(model, task.build_preprocessor(preset), ["negative", "positive"])
        path = os.path.join(tempfile.mkdtemp(), variant)
        tf.saved_model.save(module, path, signatures=module.signatures())
        signatures[variant] = tf.saved_model.load(path).signatures["serving_default"]
    with open(os.path.join(FLAGS.sst2_dir, "dev.tsv"), encoding="utf-8") as f:
        sentences = [line.split("\t")[0] for line in f.read().splitlines()[1:]]
    results = {}
    for texts, requests in ((1, FLAGS.requests), (32, max(FLAGS.requests // 5, 5))):
        times = {variant: [] for variant in VARIANTS}
        for i in range(-10, requests):  # Ten untimed warm-up requests each.
            batch = tf.constant((sentences * 2)[abs(i) * texts:(abs(i) + 1) * texts])
            for variant, serve in signatures.items():
                start = time.perf_counter()
                serve(text=batch)["label"].numpy()
                if i >= 0:
                    times[variant].append((time.perf_counter() - start) * 1000)
        results[f"{texts}_text{'s' if texts > 1 else ''}_per_request"] = summary(times)
    return results


def main(argv):
    del argv
    import keras
    import tensorflow as tf

    from tflm.training import runtime

    precision = runtime.resolve_precision("auto", tf.distribute.get_strategy())
    keras.config.set_dtype_policy(precision)
    result = {"precision": precision, "batch": FLAGS.batch, "steps_per_call": FLAGS.steps, "rounds": FLAGS.rounds,
              "training": {str(seq): time_training(int(seq)) for seq in FLAGS.seq_lengths},
              "optimizer": time_optimizer(), "serving": time_serving()}
    print(f"| measurement ({precision}) | Keras kernels ms | tflm fast kernels ms | paired speedup, median (min-max) |")
    print("|---|---|---|---|")
    rows = [(f"training step, batch {FLAGS.batch}, seq {seq}", r) for seq, r in result["training"].items()]
    rows.append(("optimizer step (Keras AdamW vs tflm FusedAdamW)", result["optimizer"]))
    rows += [(f"serving p50, {key.replace('_', ' ')}", r) for key, r in result["serving"].items()]
    for name, r in rows:
        s = r["speedup"]
        print(f"| {name} | {r['keras_ms']:.1f} | {r['fast_ms']:.1f} | {s['median']:.3f}x "
              f"({s['min']:.3f}-{s['max']:.3f}) |")
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "fast_kernels.json")
    with open(path, "w") as f:
        json.dump(result, f, indent=1)
    print(f"wrote {path}")


if __name__ == "__main__":
    app.run(main)
