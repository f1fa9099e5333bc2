"""What every benchmark does: run a pipeline as a user would, find its export."""

import os
import tempfile

from tflm.tuning import pipeline_runs

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS_DIR = os.path.join(ROOT, "benchmarks", "results")
BATCH = 32  # Training batch of the throughput comparisons (throughput.py, tflm_measure.py).


def run_pipeline(pipeline, flags, log_path):
    """Runs a tflm pipeline ("classify", "translate", ...) as a user would; returns wall seconds.

    Output is appended to `log_path`; a failed run stops the benchmark with its error line.
    """
    os.makedirs(os.path.dirname(os.path.abspath(log_path)), exist_ok=True)  # A fresh --work_dir.
    result = pipeline_runs.run_pipeline_process(pipeline, flags, log_path)
    if not result.ok:
        raise SystemExit(f"{pipeline} failed ({result.message}); log: {log_path}")
    return result.seconds


def training_flops_per_example(seq, layers=6, hidden=384, intermediate=1536):
    """Matmul FLOPs of one training example (forward + backward = 3x forward) through the encoder (MiniLM-L6-H384)."""
    per_token = layers * (4 * hidden * hidden + 2 * hidden * intermediate) * 2  # Projections and FFN.
    attention = layers * 2 * 2 * seq * seq * hidden  # Scores and weighted sum.
    return 3 * (per_token * seq + attention)


def matmul_dtype(precision):
    """"bf16" or "fp32" (the peak part's names): the dtype tflm's matmuls run in under dtype policy `precision`."""
    return "bf16" if precision == "mixed_bfloat16" else "fp32"


def full_length_batch(batch, seq):
    """(features, labels): `batch` rows of `seq` random word-piece ids (no padding), labels alternating 0 / 1."""
    import numpy as np
    import tensorflow as tf

    rows = np.random.default_rng(0).integers(1000, 30000, (batch, seq)).astype(np.int32)
    features = {"token_ids": tf.constant(rows), "segment_ids": tf.zeros_like(rows), "padding_mask": tf.ones_like(rows)}
    return features, tf.constant(np.arange(batch) % 2, tf.int32)


def full_length_training_loop(model, loss, seq, batch, steps):
    """The tflm Trainer's compiled training step over one repeated batch of full-length random rows.

    The pipeline's own step without checkpoints or evaluation (optimizer and
    schedule as tflm-classify makes them, for `steps` steps), traced and run
    for 3 warm-up steps. Returns (loop, iterator): `loop(iterator,
    tf.constant(n), tf.constant(0.0))` runs n steps.
    """
    import tensorflow as tf

    from tflm import training

    dataset = tf.data.Dataset.from_tensors(full_length_batch(batch, seq)).repeat()
    optimizer = training.create_optimizer(5e-5, steps, 0.1, 0.01, 1.0)
    config = training.TrainerConfig(train_steps=steps, steps_per_epoch=steps)
    trainer = training.Trainer(model, optimizer, loss, tf.distribute.get_strategy(), tempfile.mkdtemp(), config,
                               lambda: ({}, None))
    loop, iterator = trainer._make_train_loop(), iter(dataset)
    for _ in range(3):
        loop(iterator, tf.constant(1), tf.constant(0.0))
    return loop, iterator


def classifier_training_loop(seq, batch, steps, prepare=None):
    """`full_length_training_loop` over the bundled-MiniLM classifier as tflm-classify builds it (seed 0).

    Uses Keras's current dtype policy. `prepare(model)`, if given, changes the
    model before its step is traced (timing-only variants).
    """
    import keras

    from tflm import backbones
    from tflm.tasks import TextClassificationConfig
    from tflm.tasks import TextClassificationTask

    keras.utils.set_random_seed(0)
    task = TextClassificationTask(TextClassificationConfig(max_seq_length=seq))
    backbone, _ = backbones.load_backbone(task.config.backbone)
    model = task.build_model(backbone, 2)
    if prepare:
        prepare(model)
    return full_length_training_loop(model, task.loss, seq, batch, steps)


def latest_export(export_root, name):
    model_root = os.path.join(export_root, name)
    version = max(int(v) for v in os.listdir(model_root) if v.isdigit())
    return os.path.join(model_root, str(version))


def convert_trec(source, target):
    """TREC's `COARSE:fine text` lines -> a `question<TAB>label` TSV (coarse label, latin-1); returns the questions."""
    questions = []
    with open(source, encoding="latin-1") as f, open(target, "w", encoding="latin-1") as out:
        out.write("question\tlabel\n")
        for line in f:
            label, text = line.rstrip("\n").split(" ", 1)
            out.write(f"{text}\t{label.split(':')[0]}\n")
            questions.append(text)
    return questions
