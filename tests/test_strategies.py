"""The strategy matrix: every pipeline's training step under each tf.distribute strategy.

In-process: default, one_device and mirrored over the 2 logical CPU devices
that conftest sets up must all reach the same weights from the same start
(dropout off, same global batch). Across processes: multi_worker_mirrored
with 2 real workers on 127.0.0.1 must end with identical weights on both.
TPU: the flag to resolver wiring, with TensorFlow's TPU calls replaced.
"""

import json
import os
import socket
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from tests.conftest import ROOT, child_env, strategy_named
from tflm import backbones, generation, training
from tflm.data import demo
from tflm.errors import UserError
from tflm.tasks import LanguageModelConfig, LanguageModelTask, Seq2SeqConfig, Seq2SeqTask
from tflm.tasks import TextClassificationConfig, TextClassificationTask
from tflm.training import runtime

STRATEGIES = ("default", "one_device", "mirrored")


def classification_setup(preset, model_dir):
    task = TextClassificationTask(TextClassificationConfig(backbone=preset, max_seq_length=32))
    examples = task.read_examples(demo.SENTIMENT_TRAIN, "train")
    labels = task.label_vocabulary(examples)
    backbone, preset_dir = backbones.load_backbone(preset)
    preprocessor = task.build_preprocessor(preset_dir)
    model = task.build_model(backbone, len(labels))
    return model, task.loss, task.build_inputs(examples, labels, preprocessor)


def seq2seq_setup(preset, model_dir):
    task = Seq2SeqTask(Seq2SeqConfig(backbone=preset, max_source_length=16, max_target_length=16,
                                     decoding=generation.DecodingConfig("greedy", max_length=8)))
    examples = task.read_examples(demo.TRANSLATION_TRAIN, "train")
    model, preprocessor = task.build_model("float32", model_dir)
    return model, task.loss, task.build_inputs(examples, preprocessor)


def masked_lm_setup(preset, model_dir):
    task = LanguageModelTask(LanguageModelConfig(backbone=preset, max_seq_length=32, mask_rate=0.3))
    model, preprocessor = task.build_model("float32")
    return model, task.loss, task.build_inputs(task.read_corpus(demo.PRETRAINING_TRAIN, "train"), preprocessor, 5)


SETUPS = {"classification": classification_setup, "seq2seq": seq2seq_setup, "masked_lm": masked_lm_setup}


def train_two_steps(setup, preset, strategy_name, model_dir):
    """(replicas, weights before, weights after) of two training steps from a fixed start."""
    strategy = strategy_named(strategy_name)
    keras.utils.set_random_seed(3)
    with strategy.scope():
        model, loss, inputs = SETUPS[setup](preset, model_dir)
        # Plain SGD: the update is linear in the gradient, so equal updates
        # mean equal gradients (Adam's first step, ~lr * sign(g), would blow
        # float noise in near-zero gradients up to lr).
        optimizer = keras.optimizers.SGD(0.5)
    # Replicas draw their own dropout masks; without dropout every strategy
    # must compute the same update from the same global batch.
    for layer in model._flatten_layers():
        if isinstance(layer, keras.layers.Dropout):
            layer.rate = 0.0
    before = {v.path: v.numpy() for v in model.weights}
    config = training.TrainerConfig(train_steps=2, steps_per_epoch=2, best_metric="score")
    trainer = training.Trainer(model, optimizer, loss, strategy, model_dir, config, lambda: {"score": 1.0})
    trainer.train(inputs.training(8, seed=5))
    return strategy.num_replicas_in_sync, before, {v.path: v.numpy() for v in model.weights}


@pytest.mark.parametrize("setup", sorted(SETUPS))
def test_every_in_process_strategy_reaches_the_same_weights(setup, tiny_preset, tmp_path):
    results = {name: train_two_steps(setup, tiny_preset, name, str(tmp_path / name)) for name in STRATEGIES}
    assert [results[name][0] for name in STRATEGIES] == [1, 1, 2]  # Mirrored: 2 replicas of 4 examples.
    _, start, reference = results["default"]
    assert any(not np.array_equal(start[p], reference[p]) for p in reference)  # Training moved the weights.
    for name in ("one_device", "mirrored"):
        np.testing.assert_equal(results[name][1], start)  # Same initialisation everywhere.
        for path, value in results[name][2].items():
            np.testing.assert_allclose(value, reference[path], rtol=1e-4, atol=1e-5, err_msg=f"{name}: {path}")


def free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def checkpoint_weights(directory):
    reader = tf.train.load_checkpoint(tf.train.latest_checkpoint(directory))
    names = [n for n in reader.get_variable_to_shape_map() if n.startswith("model/")]
    assert names
    return {n: reader.get_tensor(n) for n in names}


MULTI_WORKER_RUNS = {
    "classify": ["--max_seq_length=32", "--train_steps=6", "--batch_size=16"],
    "translate": ["--train_steps=4", "--batch_size=8", "--target_vocabulary_size=200", "--decoding=greedy",
                  "--max_target_length=24"],
}


@pytest.mark.slow  # Two worker processes per pipeline; CI runs it (-m slow).
@pytest.mark.parametrize("pipeline", sorted(MULTI_WORKER_RUNS))
def test_multi_worker_mirrored_with_two_real_workers(pipeline, tiny_preset, tmp_path):
    """Two processes on 127.0.0.1 driven by TF_CONFIG train one model in lockstep."""
    cluster = {"worker": [f"127.0.0.1:{port}" for port in free_ports(2)]}
    flags = [f"--backbone={tiny_preset}", f"--model_dir={tmp_path}/run", f"--export_dir={tmp_path}/exports",
             "--strategy=multi_worker_mirrored", "--precision=float32", "--learning_rate=1e-3",
             *MULTI_WORKER_RUNS[pipeline]]
    workers = []
    for index in range(2):
        env = child_env(TF_CONFIG=json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}}))
        log = open(tmp_path / f"worker{index}.log", "w")
        workers.append((subprocess.Popen([sys.executable, "-m", f"pipelines.{pipeline}", *flags], cwd=ROOT,
                                         env=env, stdout=log, stderr=subprocess.STDOUT), log))
    try:
        codes = [process.wait(timeout=300) for process, _ in workers]
    finally:
        for process, log in workers:
            process.kill()
            log.close()
    logs = [(tmp_path / f"worker{i}.log").read_text() for i in range(2)]
    assert codes == [0, 0], "\n".join(log[-2000:] for log in logs)
    assert all("strategy=multi_worker_mirrored (CollectiveAllReduceStrategy, 2 replica(s))" in log for log in logs)
    chief = checkpoint_weights(f"{tmp_path}/run/checkpoints")
    other = checkpoint_weights(f"{tmp_path}/run/workers/worker-1/checkpoints")
    assert chief.keys() == other.keys()
    for name, value in chief.items():
        np.testing.assert_array_equal(value, other[name], err_msg=name)
    # Only the chief exports: one model folder beside the chief's models.config.
    (name,) = sorted(set(os.listdir(tmp_path / "exports")) - {"models.config"})
    assert (tmp_path / "exports" / "models.config").is_file()
    assert os.listdir(tmp_path / "exports" / name) == ["1"]
    assert "exporting is left to the chief" in logs[1]


class FakeResolver:
    def __init__(self, tpu=None, zone=None, project=None):
        self.arguments = dict(tpu=tpu, zone=zone, project=project)


def test_tpu_flags_reach_the_cluster_resolver(monkeypatch):
    calls = []
    monkeypatch.setattr(tf.distribute.cluster_resolver, "TPUClusterResolver", FakeResolver)
    monkeypatch.setattr(tf.config, "experimental_connect_to_cluster", lambda r: calls.append(("connect", r)))
    monkeypatch.setattr(tf.tpu.experimental, "initialize_tpu_system", lambda r: calls.append(("init", r)))
    monkeypatch.setattr(tf.distribute, "TPUStrategy", lambda r: ("TPUStrategy", r))

    kind, resolver = runtime.get_distribution_strategy("tpu", tpu="my-tpu", tpu_zone="us-central2-b",
                                                       gcp_project="my-project")
    assert kind == "TPUStrategy"
    assert resolver.arguments == dict(tpu="my-tpu", zone="us-central2-b", project="my-project")
    assert calls == [("connect", resolver), ("init", resolver)]  # Connect, then initialise, then the strategy.
    _, local = runtime.get_distribution_strategy("tpu", tpu="local")
    assert local.arguments == dict(tpu="", zone=None, project=None)  # A TPU VM's own chips.
    with pytest.raises(UserError, match="--tpu=local: --tpu_zone and --gcp_project only apply to a named TPU"):
        runtime.get_distribution_strategy("tpu", tpu="local", tpu_zone="us-central2-b")
    with pytest.raises(UserError, match="--tpu_zone / --gcp_project need --strategy=tpu"):
        runtime.get_distribution_strategy("mirrored", tpu_zone="us-central2-b")


def test_tpu_resolution_failure_is_one_line(monkeypatch):
    def unreachable(**kwargs):
        raise ValueError("Could not lookup TPU metadata from name 'nope'.\nmore detail")

    monkeypatch.setattr(tf.distribute.cluster_resolver, "TPUClusterResolver", unreachable)
    with pytest.raises(UserError, match=r"^--tpu=nope: cannot resolve the TPU \(Could not lookup TPU metadata"):
        runtime.get_distribution_strategy("tpu", tpu="nope")


class FakeClusterResolver:
    def __init__(self, cluster, task_type, task_id):
        self._cluster, self.task_type, self.task_id = cluster, task_type, task_id

    def cluster_spec(self):
        return tf.train.ClusterSpec(self._cluster)


class FakeStrategy:
    def __init__(self, cluster_resolver, replicas=2):
        self.cluster_resolver = cluster_resolver
        self.num_replicas_in_sync = replicas


def test_chief_writes_model_dir_and_other_workers_their_own_folder():
    workers = {"worker": ["a:1", "b:2"]}
    assert runtime.worker_model_dir("gs://b/run", FakeStrategy(FakeClusterResolver(workers, "worker", 0))) == \
        "gs://b/run"
    assert runtime.worker_model_dir("gs://b/run", FakeStrategy(FakeClusterResolver(workers, "worker", 1))) == \
        "gs://b/run/workers/worker-1"
    with_chief = {"chief": ["c:0"], "worker": ["a:1"]}
    assert runtime.is_chief(FakeStrategy(FakeClusterResolver(with_chief, "chief", 0)))
    assert not runtime.is_chief(FakeStrategy(FakeClusterResolver(with_chief, "worker", 0)))
    assert runtime.is_chief(tf.distribute.get_strategy())


def test_global_batch_must_split_evenly_and_data_is_sharded_by_data():
    assert runtime.per_replica_batch_size(32, FakeStrategy(None, replicas=2)) == 16
    with pytest.raises(UserError, match="--batch_size=33: must be a multiple of the 2 replicas"):
        runtime.per_replica_batch_size(33, FakeStrategy(None, replicas=2))
    captured = []
    strategy = tf.distribute.get_strategy()
    fake = type("S", (), {"experimental_distribute_dataset": lambda self, d: captured.append(d) or d})()
    runtime.distribute_dataset(fake, tf.data.Dataset.range(4))
    assert captured[0].options().experimental_distribute.auto_shard_policy == \
        tf.data.experimental.AutoShardPolicy.DATA
    assert strategy.num_replicas_in_sync == 1
