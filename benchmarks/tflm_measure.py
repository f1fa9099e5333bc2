"""The tflm side of benchmarks/throughput.py, one measurement per process.

Prints one line `RESULT {json}`:

  tflm_measure.py matmul
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

SWEEP_BATCH_SIZES = (1, 2, 4, 8, 16)


def matmul_peak(size=2048, repeats=20):
    import tensorflow as tf

    result = {}
    for name, dtype in (("bf16", tf.bfloat16), ("fp32", tf.float32)):
        a = tf.random.normal([size, size], dtype=tf.float32)
        a, b = tf.cast(a, dtype), tf.cast(tf.transpose(a), dtype)

        @tf.function
        def loop(a, b):
            total = tf.zeros([], dtype)
            for _ in tf.range(repeats):
                total += tf.linalg.matmul(a, b)[0, 0]
            return total

        loop(a, b).numpy()
        start = time.perf_counter()
        loop(a, b).numpy()
        result[f"{name}_gflops"] = 2 * size ** 3 * repeats / (time.perf_counter() - start) / 1e9
    return result


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
    result = {"matmul": matmul_peak, "serve": serve, "decode": decode, "input_pipeline": input_pipeline}[mode]()
    print("RESULT " + json.dumps(result), flush=True)


if __name__ == "__main__":
    app.run(main)
