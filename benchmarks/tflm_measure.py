"""The tflm side of benchmarks/throughput.py, one measurement per process.

Prints one line `RESULT {json}`:

  tflm_measure.py matmul
  tflm_measure.py mfu [--seq_lengths=64,128]
  tflm_measure.py serve --export=DIR --texts_file=F
  tflm_measure.py decode --texts_file=F --beams=4 --length=32 --batch=8
  tflm_measure.py input_pipeline --train_file=F --max_seq_length=128 --batches=300
"""

import json
import os
import statistics
import sys
import time

from absl import app
from absl import flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks.common import BATCH  # noqa: E402
from benchmarks.common import training_flops_per_example  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string("export", "", "serve: the SavedModel version folder.")
flags.DEFINE_string("texts_file", "", "Sentences, one per line.")
flags.DEFINE_integer("requests", 200, "serve: single-text requests timed.")
flags.DEFINE_integer("beams", 1, "decode: 1 (greedy) or the beam width.")
flags.DEFINE_integer("length", 32, "decode: new tokens per example.")
flags.DEFINE_integer("batch", 8, "decode: sentences per call.")
flags.DEFINE_integer("repeats", 3, "decode: timed calls (median).")
flags.DEFINE_string("train_file", "", "input_pipeline: SST-2-style train.tsv(.gz).")
flags.DEFINE_integer("max_seq_length", 128, "input_pipeline: tokens per example.")
flags.DEFINE_integer("batches", 300, "input_pipeline: batches drawn.")
flags.DEFINE_list("seq_lengths", ["64", "128"], "mfu: sequence lengths of the training steps timed.")

SWEEP_BATCH_SIZES = (1, 2, 4, 8, 16)


def matmul_peak(calls=5):
    """GFLOP/s of square bf16 / fp32 matmuls: the best of `calls` timed calls.

    The best call, not the median: a peak is what the machine can do, and on
    this shared VM single calls vary by more than 2x within a minute.
    """
    import tensorflow as tf

    result = {}
    for name, dtype in (("bf16", tf.bfloat16), ("fp32", tf.float32)):
        call, flops = square_matmuls(dtype)
        call()  # Traces and warms up.
        result[f"{name}_gflops"] = flops / min(_seconds(call) for _ in range(calls)) / 1e9
    return result


def mfu(rounds=6, steps=3):
    """Model FLOPs utilisation, paired: the peak, the step's matmuls alone and the real step, alternating.

    All in the matmul dtype of the default precision (`--precision=auto`).
    Per sequence length and round, one timed call of each: the square-matmul
    peak loop, `step_matmuls` and `steps` steps of tflm-classify's compiled
    training step (bundled MiniLM, batch 32, full-length rows, default
    precision). Each round's rates are divided by that round's peak, so a
    machine that speeds up or slows down between calls moves all three;
    the medians over rounds are returned.
    """
    import keras
    import tensorflow as tf

    from benchmarks.common import classifier_training_loop
    from benchmarks.common import matmul_dtype
    from tflm.training import runtime

    precision = runtime.resolve_precision("auto", tf.distribute.get_strategy())
    keras.config.set_dtype_policy(precision)
    dtype = {"bf16": tf.bfloat16, "fp32": tf.float32}[matmul_dtype(precision)]
    peak, peak_flops = square_matmuls(dtype)
    peak()
    result = {}
    for seq in (int(s) for s in FLAGS.seq_lengths):
        loop, iterator = classifier_training_loop(seq, BATCH, 3 + (rounds + 1) * steps)
        matmuls = step_matmuls(seq, BATCH, dtype)
        matmuls()
        loop(iterator, tf.constant(steps), tf.constant(0.0))[0].numpy()
        step_flops = BATCH * training_flops_per_example(seq)
        rows = []
        for _ in range(rounds):
            peak_rate = peak_flops / _seconds(peak)
            matmul_rate = step_flops / _seconds(matmuls)
            step_rate = steps * step_flops / _seconds(
                lambda: loop(iterator, tf.constant(steps), tf.constant(0.0))[0].numpy())
            rows.append({"peak_gflops": peak_rate / 1e9, "step_matmuls_vs_peak": matmul_rate / peak_rate,
                         "mfu": step_rate / peak_rate, "step_gflops": step_rate / 1e9})
        result[str(seq)] = dict({k: statistics.median(row[k] for row in rows) for k in rows[0]},
                                precision=precision, rounds=rows)
    return result


def square_matmuls(dtype, size=2048, repeats=20):
    """(call, FLOPs): a compiled loop of `repeats` size x size products."""
    import tensorflow as tf

    a = tf.cast(tf.random.normal([size, size]), dtype)
    b = tf.transpose(a)

    @tf.function
    def loop(a, b):
        total = tf.zeros([], dtype)
        for _ in tf.range(repeats):
            total += tf.linalg.matmul(a, b)[0, 0]
        return total

    return lambda: loop(a, b).numpy(), 2 * size ** 3 * repeats


def _seconds(call):
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


def step_matmuls(seq, batch, dtype, layers=6, hidden=384, intermediate=1536, heads=12):
    """A callable running only the matmuls of one MiniLM training step in `dtype`, forward and backward.

    The FLOPs `training_flops_per_example` counts, at the step's own shapes:
    per layer the four attention projections and the two feed-forward
    products over all batch x seq tokens, and the two attention products per
    head; the backward pass as TensorFlow derives it (two products per
    product, and the sums where gradients meet). Everything else a step does
    (bias, GELU, layer norm, softmax, dropout, casts, optimizer) is left
    out, so this rate bounds the MFU a real step can reach with the same
    matmul library.
    """
    import tensorflow as tf

    tokens = batch * seq

    def normal(*shape):
        return tf.cast(tf.random.normal(shape, stddev=0.02), dtype)

    weights = [tf.Variable(normal(*shape)) for _ in range(layers)
               for shape in [(hidden, hidden)] * 4 + [(hidden, intermediate), (intermediate, hidden)]]
    # Separate attention inputs (heads-major) per layer and role: slices of one tensor would add
    # the slicing and the scatter of their gradients, which cost more than these small products.
    attention = [normal(batch, heads, seq, hidden // heads) for _ in range(3 * layers)]
    inputs = normal(tokens, hidden)

    @tf.function
    def step(inputs, attention):
        with tf.GradientTape() as tape:
            tape.watch([inputs] + attention)
            outputs, x = [], inputs
            for layer in range(layers):
                query, key, value, out, up, down = weights[6 * layer:6 * layer + 6]
                outputs += [tf.matmul(x, w) for w in (query, key, value, out)]
                queries, keys, values = attention[3 * layer:3 * layer + 3]
                outputs.append(tf.matmul(tf.matmul(queries, keys, transpose_b=True), values))
                x = tf.matmul(tf.matmul(x, up), down)
            outputs.append(x)
        gradients = tape.gradient(outputs, [inputs] + attention + weights,
                                  output_gradients=[tf.ones_like(o) for o in outputs])
        return [tf.reshape(g, [-1])[0] for g in gradients]  # Forces every gradient, copies nothing.

    return lambda: [g.numpy() for g in step(inputs, attention)]


def _texts():
    with open(FLAGS.texts_file, encoding="utf-8") as f:
        return [line.rstrip("\n") for line in f if line.strip()]


def serve():
    import numpy as np
    import tensorflow as tf

    from tflm.export.serving_latency import serving_latency

    texts = _texts()
    latency = serving_latency(FLAGS.export, texts, repeats=FLAGS.requests)
    signature = tf.saved_model.load(FLAGS.export).signatures["serving_default"]

    def requests_of(size, count):  # `count` requests of `size` consecutive texts, wrapping around.
        return [tf.constant([texts[(i + j) % len(texts)] for j in range(size)]) for i in range(0, count * size, size)]

    # Latency by request size, to see where float32 and bfloat16 cross.
    latency["p50_ms_by_batch"] = {}
    for size in SWEEP_BATCH_SIZES:
        requests = requests_of(size, 40)
        signature(text=requests[0])
        times = []
        for request in requests:
            start = time.perf_counter()
            signature(text=request)
            times.append((time.perf_counter() - start) * 1000)
        latency["p50_ms_by_batch"][str(size)] = float(np.percentile(times, 50))
    batches = requests_of(32, 10)
    signature(text=batches[0])
    start = time.perf_counter()
    for batch in batches:
        signature(text=batch)
    latency["batch32_texts_per_second"] = 32 * len(batches) / (time.perf_counter() - start)
    return latency


def decode():
    import keras
    import tensorflow as tf

    from tflm import generation
    from tflm.generation.decoding import SpecialTokens
    from tflm.tasks import Seq2SeqConfig
    from tflm.tasks import Seq2SeqTask
    from tflm.training import runtime

    precision = runtime.resolve_precision("auto", tf.distribute.get_strategy())
    keras.config.set_dtype_policy(precision)
    keras.utils.set_random_seed(0)
    task = Seq2SeqTask(Seq2SeqConfig(max_source_length=64, max_target_length=FLAGS.length + 1))
    model, preprocessor = task.build_model(precision, "/tmp/tflm_measure_unused")
    special = preprocessor.special_tokens
    # An end id no token has: every example decodes exactly --length tokens, as on the PyTorch side.
    tokens = SpecialTokens(special.start_ids, end_id=-1, pad_id=special.pad_id)
    config = generation.DecodingConfig("beam" if FLAGS.beams > 1 else "greedy", beam_size=max(FLAGS.beams, 1),
                                       max_length=FLAGS.length)
    features = preprocessor.encode_prompts(tf.constant(_texts()[:FLAGS.batch]))
    # Batch and length left open, as in the exported signature.
    run = tf.function(lambda ids, mask: generation.generate(model, ids, mask, tokens, config),
                      input_signature=[tf.TensorSpec([None, None], tf.int32)] * 2)
    run(features["encoder_token_ids"], features["encoder_padding_mask"]).numpy()
    times = []
    for _ in range(FLAGS.repeats):
        start = time.perf_counter()
        run(features["encoder_token_ids"], features["encoder_padding_mask"]).numpy()
        times.append(time.perf_counter() - start)
    return {"examples_per_second": FLAGS.batch / statistics.median(times), "precision": precision}


def input_pipeline():
    """Batches/s of the classification training input alone (tokenized once, then served)."""
    import tensorflow as tf

    from tflm import backbones
    from tflm.data.label_vocabulary import LabelVocabulary
    from tflm.tasks import TextClassificationConfig
    from tflm.tasks import TextClassificationTask

    task = TextClassificationTask(TextClassificationConfig(max_seq_length=FLAGS.max_seq_length))
    examples = task.read_examples(FLAGS.train_file, "train")
    preprocessor = task.build_preprocessor(backbones.resolve_backbone(task.config.backbone))
    start = time.perf_counter()
    inputs = task.build_inputs(examples, LabelVocabulary(sorted(set(examples.labels))), preprocessor)
    tokenize_seconds = time.perf_counter() - start
    iterator = iter(inputs.training(32, seed=0))
    next(iterator)
    start = time.perf_counter()
    for _ in range(FLAGS.batches):
        tf.nest.map_structure(lambda t: t.numpy(), next(iterator))
    seconds = time.perf_counter() - start
    return {"examples": len(inputs), "tokenize_seconds": tokenize_seconds,
            "tokenize_examples_per_second": len(inputs) / tokenize_seconds,
            "batches_per_second": FLAGS.batches / seconds}


def main(argv):
    mode = argv[1]
    result = {"matmul": matmul_peak, "mfu": mfu, "serve": serve, "decode": decode,
              "input_pipeline": input_pipeline}[mode]()
    print("RESULT " + json.dumps(result), flush=True)


if __name__ == "__main__":
    app.run(main)
