import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from tests.conftest import make_tiny_bert_preset, strategy_named, tiny_classifier_trainer, weights
from tflm.errors import TrainingDiverged, UserError
from tflm import backbones
from tflm.backbones.fast_kernels import fast_dropout_call
from tflm.training.layer_lr_decay import layer_lr_multipliers
from tflm.training.optimization import FusedAdamW, WarmupLinearDecay, averaged_weights, create_optimizer
from tflm.training import runtime
from tflm.training.runtime import get_distribution_strategy, resolve_jit_compile, resolve_precision


def test_warmup_then_linear_decay():
    schedule = WarmupLinearDecay(1.0, total_steps=110, warmup_steps=10)
    values = [float(schedule(s)) for s in (0, 5, 10, 60, 110, 200)]
    assert values == pytest.approx([0.0, 0.5, 1.0, 0.5, 0.0, 0.0])


def test_weight_decay_skips_bias_and_layer_norm():
    optimizer = create_optimizer(1e-3, 100)
    dense = keras.layers.Dense(2)
    norm = keras.layers.LayerNormalization()
    dense.build((None, 3))
    norm.build((None, 3))
    optimizer.build(dense.weights + norm.weights)
    decayed = {v.path for v in dense.weights + norm.weights if optimizer._use_weight_decay(v)}
    assert decayed == {dense.kernel.path}


@pytest.mark.parametrize("strategy", ["default", "mirrored"])
def test_fused_adamw_takes_the_same_steps_as_keras_adamw(strategy):
    """Same trajectory as keras.optimizers.AdamW, dense and embedding (IndexedSlices) gradients."""
    strategy = strategy_named(strategy)
    rng = np.random.default_rng(0)
    init = [rng.normal(size=(50, 8)).astype("float32"), rng.normal(size=(8, 3)).astype("float32")]
    ids = tf.constant([[1, 4, 4], [7, 1, 0]])

    def train(optimizer_class):
        with strategy.scope():
            embedding, kernel = (keras.Variable(value, name=name) for value, name in zip(init, ["emb", "kernel"]))
            optimizer = optimizer_class(learning_rate=1e-2, weight_decay=0.1, global_clipnorm=1.0, epsilon=1e-6)
            optimizer.build([embedding, kernel])

        @tf.function
        def step():
            def replica_step():
                with tf.GradientTape() as tape:
                    hidden = tf.reduce_sum(tf.gather(embedding.value, ids), axis=1)
                    loss = tf.reduce_sum(tf.square(hidden @ kernel.value - 1.0))
                gradients = tape.gradient(loss, [embedding.value, kernel.value])
                assert isinstance(gradients[0], tf.IndexedSlices)
                optimizer.apply_gradients(zip(gradients, [embedding, kernel]))
            strategy.run(replica_step)

        for _ in range(5):
            step()

        def every_copy(variable):  # Each replica's copy under mirrored.
            return np.stack([c.numpy() for c in getattr(variable.value, "values", [variable.value])])

        slots = optimizer._momentums + optimizer._velocities
        return [every_copy(v) for v in [embedding, kernel, optimizer.iterations, *slots]]

    expected, fused = train(keras.optimizers.AdamW), train(FusedAdamW)
    assert len(expected) == len(fused) == 7  # Variables, step, then m and v of each.
    for want, got in zip(expected, fused):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    assert not np.allclose(fused[0], init[0])


def test_layer_lr_decay_multipliers_fall_from_the_top_block_to_the_embeddings(tiny_preset):
    backbone, _ = backbones.load_backbone(tiny_preset)  # Two blocks.
    multipliers = layer_lr_multipliers(backbone, 0.5)
    by_part = {}
    for variable in backbone.weights:
        part = variable.path.split("/")[0]
        by_part.setdefault(part, set()).add(multipliers.get(variable.path, 1.0))
    assert by_part["transformer_layer_1"] == {0.5} and by_part["transformer_layer_0"] == {0.25}
    assert by_part["token_embedding"] == by_part["embeddings_layer_norm"] == {0.125}
    assert by_part["pooled_dense"] == {1.0}  # Above the blocks: full rate.
    assert layer_lr_multipliers(backbone, 1.0) == {}
    with pytest.raises(UserError, match=r"--layer_lr_decay=1.5: must lie in \(0, 1\]"):
        layer_lr_multipliers(backbone, 1.5)
    with pytest.raises(UserError, match="Sequential has no transformer blocks"):
        layer_lr_multipliers(keras.Sequential([keras.layers.Dense(2)]), 0.5)


def test_a_variables_lr_multiplier_scales_its_adam_step_and_weight_decay():
    """Factor 0.5 on one variable: it moves exactly as under half the learning rate; the other is untouched."""
    rng = np.random.default_rng(0)
    init = [rng.normal(size=(4, 3)).astype("float32") for _ in range(2)]
    targets = tf.constant(rng.normal(size=(2, 3)).astype("float32"))

    def train(optimizer_groups):
        """5 steps; `optimizer_groups(low, high)` gives (optimizer, variables) pairs. Returns (low, high)."""
        low, high = keras.Variable(init[0], name="low"), keras.Variable(init[1], name="high")
        groups = optimizer_groups(low, high)
        for optimizer, variables in groups:
            optimizer.build(variables)
        for _ in range(5):
            with tf.GradientTape() as tape:
                loss = tf.reduce_sum(tf.square(tf.ones((2, 4)) @ (low.value * high.value) - targets))
            gradients = dict(zip(("low", "high"), tape.gradient(loss, [low.value, high.value])))
            for optimizer, variables in groups:
                optimizer.apply_gradients([(gradients[v.name], v) for v in variables])
        return low.numpy(), high.numpy()

    def adamw(learning_rate, lr_multipliers=None):
        return FusedAdamW(learning_rate=learning_rate, weight_decay=0.1, epsilon=1e-6, lr_multipliers=lr_multipliers)

    half_low, full_high = train(lambda low, high: [(adamw(1e-2, {low.path: 0.5}), [low, high])])
    assert not np.allclose(half_low, init[0]) and not np.allclose(full_high, init[1])
    assert not np.allclose(half_low, train(lambda low, high: [(adamw(1e-2), [low, high])])[0], atol=1e-4)
    # The reference: `low` alone under half the rate, `high` at the full rate, each in its own optimizer.
    want_low, want_high = train(lambda low, high: [(adamw(5e-3), [low]), (adamw(1e-2), [high])])
    np.testing.assert_allclose(half_low, want_low, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(full_high, want_high, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("strategy", ["default", "mirrored"])
def test_weight_average_uses_the_warmed_up_decay_and_leaves_the_steps_alone(strategy):
    strategy = strategy_named(strategy)
    init = np.random.default_rng(0).normal(size=(4, 3)).astype("float32")

    def train(ema_momentum):
        """8 steps; returns (variable after each step, the variable, the optimizer)."""
        with strategy.scope():
            variable = keras.Variable(init, name="w")
            optimizer = create_optimizer(1e-1, 8, warmup_fraction=0.0, ema_momentum=ema_momentum)
            optimizer.build([variable])

        @tf.function
        def step():
            def replica_step():
                with tf.GradientTape() as tape:
                    loss = tf.reduce_sum(tf.square(variable.value - 1.0))
                optimizer.apply_gradients([(tape.gradient(loss, variable.value), variable)])
            strategy.run(replica_step)

        history = []
        for _ in range(8):
            step()
            history.append(variable.numpy().copy())
        return history, variable, optimizer

    plain, _, _ = train(0.0)
    history, variable, optimizer = train(0.5)
    np.testing.assert_array_equal(history, plain)  # Averaging does not change training.
    average = init
    for t, value in enumerate(history):
        decay = min(0.5, (1 + t) / (10 + t))  # 0.5 from t = 8 on; the warm-up before.
        average = decay * average + (1 - decay) * value
    assert not np.allclose(average, history[-1], atol=1e-3)
    with averaged_weights(optimizer):
        np.testing.assert_allclose(variable.numpy(), average, rtol=1e-5)
        copies = getattr(variable.value, "values", [variable.value])
        assert all(np.array_equal(c.numpy(), variable.numpy()) for c in copies)  # Every replica's copy.
    np.testing.assert_array_equal(variable.numpy(), history[-1])
    with averaged_weights(create_optimizer(1e-1, 8)):  # Without averages: nothing to swap.
        np.testing.assert_array_equal(variable.numpy(), history[-1])


def test_trainer_evaluates_keeps_and_ends_with_the_weight_average(tiny_preset, tmp_path):
    evaluated, trained = {}, {}

    def record(step, real_evaluate):
        # During an evaluation the model holds the averages and the optimizer's slots the trained values.
        evaluated[step] = [v.numpy().copy() for v in trainer.model.trainable_variables]
        trained[step] = [v.numpy().copy() for v in trainer.optimizer._model_variables_moving_average]
        assert not all(np.array_equal(a, b) for a, b in zip(evaluated[step], trained[step]))
        return {"accuracy": {2: 0.5, 4: 0.9, 6: 0.7}[step]}

    trainer, dataset = tiny_classifier_trainer(tiny_preset, tmp_path, train_steps=6, steps_per_epoch=2,
                                               evaluate=record, ema_momentum=0.9)
    assert trainer.train(dataset) == {"accuracy": 0.9}
    for value, best in zip(trainer.model.trainable_variables, evaluated[4]):
        np.testing.assert_array_equal(value.numpy(), best)  # The best average, restored.
    # The training checkpoint holds the trained weights and, in the optimizer, their averages: a resume goes on
    # training the former and averaging into the latter.
    resumed, _ = tiny_classifier_trainer(tiny_preset, tmp_path, train_steps=6, steps_per_epoch=2, ema_momentum=0.9)
    assert resumed.restore() == 6
    for value, average, want_value, want_average in zip(resumed.model.trainable_variables,
                                                        resumed.optimizer._model_variables_moving_average,
                                                        trained[6], evaluated[6]):
        np.testing.assert_array_equal(value.numpy(), want_value)
        np.testing.assert_array_equal(average.numpy(), want_average)


def test_strategies_and_errors():
    assert get_distribution_strategy("default").num_replicas_in_sync == 1
    assert isinstance(get_distribution_strategy("one_device"), tf.distribute.OneDeviceStrategy)
    with pytest.raises(UserError, match="--strategy=bogus"):
        get_distribution_strategy("bogus")
    with pytest.raises(UserError, match="--tpu=my-tpu needs --strategy=tpu"):
        get_distribution_strategy("default", tpu="my-tpu")
    with pytest.raises(UserError, match="--strategy=tpu needs --tpu"):
        get_distribution_strategy("tpu")
    with pytest.raises(UserError, match="--num_gpus=2: only 0 GPU"):
        get_distribution_strategy("mirrored", num_gpus=2)
    with pytest.raises(UserError, match="--num_gpus=2 needs --strategy=mirrored"):
        get_distribution_strategy("one_device", num_gpus=2)
    assert resolve_precision("float32", None) == "float32"
    assert resolve_precision("auto", tf.distribute.get_strategy()) in ("float32", "mixed_bfloat16")


def test_auto_precision_on_cpu_follows_the_measured_bfloat16_speedup(monkeypatch):
    speedup = runtime.cpu_bfloat16_matmul_speedup()
    assert 0 < speedup < float("inf")
    if tf.config.list_physical_devices("GPU"):
        pytest.skip("auto asks the GPU's compute capability, not the CPU probe")
    strategy = tf.distribute.get_strategy()
    for measured, expected in ((4.0, "mixed_bfloat16"), (1.3, "mixed_bfloat16"), (1.1, "float32"),
                               (0.5, "float32")):
        monkeypatch.setattr(runtime, "cpu_bfloat16_matmul_speedup", lambda m=measured: m)
        assert resolve_precision("auto", strategy) == expected
    assert resolve_precision("mixed_bfloat16", strategy) == "mixed_bfloat16"  # An explicit choice is kept.


def test_frozen_weights_stay_bit_identical(tiny_preset, tmp_path):
    trainer, dataset = tiny_classifier_trainer(tiny_preset, tmp_path, freeze="embeddings,bottom:1")
    before = weights(trainer.model)
    frozen = {v.path for v in trainer.model.weights if not v.trainable}
    assert any(p.startswith("token_embedding") for p in frozen)
    assert any(p.startswith("transformer_layer_0/") for p in frozen)
    trainer.train(dataset)
    for v in trainer.model.weights:
        if v.path in frozen:
            np.testing.assert_array_equal(v.numpy(), before[v.path], err_msg=v.path)
    unchanged = [v.path for v in trainer.model.trainable_weights if np.array_equal(v.numpy(), before[v.path])]
    assert unchanged == []


class Crash(Exception):
    pass


def test_resume_after_crash_matches_uninterrupted_run(tiny_preset, tmp_path):
    reference, dataset = tiny_classifier_trainer(tiny_preset, tmp_path / "reference", train_steps=8, steps_per_epoch=4)
    reference.train(dataset)

    def crash_at_step_4(step, real_evaluate):
        if step == 4:
            raise Crash()
        return real_evaluate()

    crashing, dataset = tiny_classifier_trainer(tiny_preset, tmp_path / "run", train_steps=8, steps_per_epoch=4,
                              evaluate=crash_at_step_4)
    with pytest.raises(Crash):
        crashing.train(dataset)
    # The crash came before step 4's checkpoint: the latest is step 2.
    assert tf.train.latest_checkpoint(str(tmp_path / "run" / "checkpoints")).endswith("ckpt-2")

    resumed, dataset = tiny_classifier_trainer(tiny_preset, tmp_path / "run", train_steps=8, steps_per_epoch=4)
    resumed.train(dataset)
    stats = json.load(open(tmp_path / "run" / "train_stats.json"))
    assert stats["steps"] == 6  # Steps 3..8: resumed at 2, not from zero.
    assert len(stats["rss_mb_at_epoch_end"]) == 2 and min(stats["rss_mb_at_epoch_end"]) > 100  # Steps 4 and 8.
    assert stats["peak_rss_mb"] >= max(stats["rss_mb_at_epoch_end"])
    assert int(resumed.optimizer.iterations.numpy()) == 8
    # tflm's dropout (the task switched it), whose masks the weights below depend on.
    assert any(getattr(layer.call, "__func__", None) is fast_dropout_call for layer in resumed.model._flatten_layers())
    expected = weights(reference.model)
    for path, value in weights(resumed.model).items():
        np.testing.assert_allclose(value, expected[path], rtol=1e-5, atol=1e-6, err_msg=path)


def test_xla_compiled_step_trains_like_the_default_step(tmp_path):
    # Without dropout: XLA draws different random numbers (another RNG algorithm), so only then are runs comparable.
    preset = make_tiny_bert_preset(str(tmp_path / "preset"), dropout=0.0)
    default, dataset = tiny_classifier_trainer(preset, tmp_path / "default", train_steps=4, steps_per_epoch=4,
                                               dropout=0.0)
    default.train(dataset)
    compiled, dataset = tiny_classifier_trainer(preset, tmp_path / "xla", train_steps=4, steps_per_epoch=4,
                                                dropout=0.0, jit_compile=True)
    compiled.train(dataset)
    expected = weights(default.model)
    moved = 0
    for path, value in weights(compiled.model).items():
        np.testing.assert_allclose(value, expected[path], rtol=1e-3, atol=1e-5, err_msg=path)
    initial, _ = tiny_classifier_trainer(preset, tmp_path / "initial", dropout=0.0)
    for path, value in weights(initial.model).items():
        moved += not np.allclose(value, expected[path])
    assert moved > 10  # Training changed the weights, so the comparison means something.
    assert resolve_jit_compile("auto") is False and resolve_jit_compile("true") is True
    with pytest.raises(UserError, match="--jit_compile=yes"):
        resolve_jit_compile("yes")


def test_early_stopping_restores_best_weights(tiny_preset, tmp_path):
    scores = {2: 0.9, 4: 0.5, 6: 0.4, 8: 0.3}
    snapshots = {}

    def scripted(step, real_evaluate):
        snapshots[step] = weights(trainer.model)
        return {"accuracy": scores[step]}

    trainer, dataset = tiny_classifier_trainer(tiny_preset, tmp_path, train_steps=8, steps_per_epoch=2,
                             evaluate=scripted, early_stopping_patience=2)
    best = trainer.train(dataset)
    assert best == {"accuracy": 0.9}
    assert sorted(snapshots) == [2, 4, 6]  # Stopped after two evaluations without improvement.
    assert not trainer.best_is_last_evaluation  # The pipeline must evaluate the restored weights again.
    for path, value in weights(trainer.model).items():
        if "seed_generator" not in path:
            np.testing.assert_array_equal(value, snapshots[2][path], err_msg=path)
    # Running again does not train past the early stop.
    again, dataset = tiny_classifier_trainer(tiny_preset, tmp_path, train_steps=8, steps_per_epoch=2)
    assert again.train(dataset) == {"accuracy": 0.9}


def test_best_is_last_evaluation_when_the_final_evaluation_is_the_best(tiny_preset, tmp_path):
    scores = {2: 0.5, 4: 0.9}
    trainer, dataset = tiny_classifier_trainer(tiny_preset, tmp_path, train_steps=4, steps_per_epoch=2,
                             evaluate=lambda step, real_evaluate: {"accuracy": scores[step]})
    assert not trainer.best_is_last_evaluation  # Nothing evaluated yet.
    trainer.train(dataset)
    assert trainer.best_is_last_evaluation
    # A run that resumes past its end evaluates nothing in this process.
    again, dataset = tiny_classifier_trainer(tiny_preset, tmp_path, train_steps=4, steps_per_epoch=2)
    again.train(dataset)
    assert not again.best_is_last_evaluation


def test_unknown_best_metric_is_a_user_error(tiny_preset, tmp_path):
    trainer, dataset = tiny_classifier_trainer(tiny_preset, tmp_path, train_steps=2, steps_per_epoch=2, best_metric="bleu")
    with pytest.raises(UserError, match="--best_metric=bleu: not computed by this task"):
        trainer.train(dataset)


def test_loss_blow_up_stops_with_a_message(tiny_preset, tmp_path):
    trainer, dataset = tiny_classifier_trainer(tiny_preset, tmp_path, train_steps=4, steps_per_epoch=4)
    kernel = trainer.model.get_layer("logits").kernel
    kernel.assign(np.full(kernel.shape, np.inf, dtype="float32"))
    with pytest.raises(TrainingDiverged, match="training loss became nan at step"):
        trainer.train(dataset)
