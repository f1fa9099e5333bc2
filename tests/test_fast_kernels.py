"""The fast dropout, GELU, layer-norm and attention kernels compute what Keras's do."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tflm import backbones
from tflm.backbones import fast_kernels
from keras_hub.src.layers.modeling.cached_multi_head_attention import CachedMultiHeadAttention

from tflm.backbones.fast_kernels import fast_attention, fast_dropout_call, fast_gelu, fast_gelu_approximate
from tflm.backbones.fast_kernels import fast_dense_call, fast_projection_call, portable_kernels
from tflm.backbones.fast_kernels import use_fast_kernels
from keras_hub.src.utils.keras_utils import gelu_approximate
from tensorflow.python.util import _pywrap_util_port


def switched(layer):
    use_fast_kernels(layer)
    return layer


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_fast_dropout_drops_at_the_rate_and_keeps_the_mean(dtype):
    layer = switched(keras.layers.Dropout(0.1, seed=3, dtype=dtype))
    x = tf.ones([1000, 1000], dtype)
    first, second = (layer(x, training=True).numpy().astype("float32") for _ in range(2))
    dropped = float(np.mean(first == 0))
    assert abs(dropped - 0.1) < 0.002  # 1e6 draws: the standard error is 0.0003.
    kept = np.unique(first[first != 0])
    assert kept.size == 1 and kept[0] == pytest.approx(1 / 0.9, rel=1e-2 if dtype == "bfloat16" else 1e-4)
    assert abs(first.mean() - 1) < 0.01
    # Each call draws a new, independent mask; neighbours are independent too.
    assert abs(float(np.mean((first == 0) != (second == 0))) - 2 * 0.1 * 0.9) < 0.003
    assert abs(float(np.mean((first[:, 1:] == 0) & (first[:, :-1] == 0))) - 0.01) < 0.001
    assert abs(float(np.mean((first[1:] == 0) & (first[:-1] == 0))) - 0.01) < 0.001
    assert layer(x, training=False) is x
    compiled = tf.function(lambda x: layer(x, training=True), jit_compile=True)(x).numpy()  # As under TPUs.
    assert abs(float(np.mean(compiled == 0)) - 0.1) < 0.002


def test_fast_dropout_gradient_is_its_mask_and_noise_shape_broadcasts():
    layer = switched(keras.layers.Dropout(0.5, noise_shape=(None, 1, 8), seed=0))
    x = tf.random.normal([4, 5, 8])
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = layer(x, training=True)
    gradient = tape.gradient(y, x).numpy()
    np.testing.assert_allclose(y.numpy(), x.numpy() * gradient, rtol=1e-6)
    assert set(np.unique(gradient)) == {0.0, 2.0}
    assert (gradient == gradient[:, :1, :]).all()  # One mask along the noise-shape's 1.


@pytest.mark.parametrize("fast, reference", [
    (fast_gelu_approximate, lambda x: keras.activations.gelu(x, approximate=True)),
    (fast_gelu, lambda x: keras.activations.gelu(x, approximate=False)),
])
def test_fast_gelus_match_keras_values_and_gradients(fast, reference):
    x = tf.constant(np.linspace(-8, 8, 2001), tf.float32)
    values, gradients = [], []
    for function in (fast, reference):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = function(x)
        values.append(y.numpy())
        gradients.append(tape.gradient(y, x).numpy())
    np.testing.assert_allclose(values[0], values[1], rtol=1e-5, atol=1e-6)
    # Keras's tanh saturates below x = -4.5 in float32, zeroing its gradient there; ours keeps
    # the true value, under 1e-5.
    np.testing.assert_allclose(gradients[0], gradients[1], rtol=1e-5, atol=1e-5)
    half = tf.constant([-1.5, 0.25, 3.0], tf.bfloat16)
    assert fast(half).dtype == tf.bfloat16
    np.testing.assert_allclose(fast(half).numpy().astype("float32"), values[1][[812, 1031, 1375]], rtol=1e-2)


def test_use_fast_kernels_switches_plain_layers_only_and_weights_still_load(tiny_preset, tmp_path):
    backbone, _ = backbones.load_backbone(tiny_preset)
    features = keras.layers.Dropout(0.1)(backbone.output["pooled_output"])
    features = keras.layers.Dense(4, activation="gelu")(features)
    model = keras.Model(backbone.input, keras.layers.SpatialDropout1D(0.1)(keras.layers.Reshape((-1, 1))(features)))
    plain = [layer for layer in model._flatten_layers() if type(layer) is keras.layers.Dropout]
    inputs = {"token_ids": tf.constant([[2, 5, 6, 3]]), "segment_ids": tf.zeros([1, 4], tf.int32),
              "padding_mask": tf.ones([1, 4], tf.int32)}
    before = model(inputs, training=False).numpy()
    assert len(plain) > 3  # Embeddings, attention and both residual branches of each block, and the head.
    blocks = backbone.num_layers
    # GELU: each block's feed-forward layer and the head's; layer norm: the embeddings' and two per block.
    # Projections: each block's query, key, value and output EinsumDense. Dense: each block's two
    # feed-forward layers, the pooler and the head.
    assert use_fast_kernels(model) == {"dropout": len(plain), "layer_norm": 2 * blocks + 1, "gelu": blocks + 1,
                                       "attention": blocks, "projection": 4 * blocks, "dense": 2 * blocks + 2}
    assert all(layer.call.__func__ is fast_dropout_call for layer in plain)
    attention = [layer for layer in model._flatten_layers() if isinstance(layer, keras.layers.MultiHeadAttention)]
    assert len(attention) == blocks and all(layer._compute_attention.__func__ is fast_attention for layer in attention)
    assert sum(isinstance(layer, keras.layers.SpatialDropout1D) for layer in model._flatten_layers()) == 1
    np.testing.assert_allclose(model(inputs, training=False).numpy(), before, rtol=1e-5, atol=1e-6)
    assert all(layer.call.__func__ is fast_projection_call
               for layer in model._flatten_layers() if isinstance(layer, keras.layers.EinsumDense))
    assert all(layer.call.__func__ is fast_dense_call
               for layer in model._flatten_layers() if isinstance(layer, keras.layers.Dense))
    assert use_fast_kernels(model) == {"dropout": 0, "layer_norm": 0, "gelu": 0, "attention": 0, "projection": 0,
                                       "dense": 0}
    # Classes are kept, so Keras weight files (presets) of a switched model load into a plain one.
    model.save_weights(str(tmp_path / "switched.weights.h5"))
    plain_backbone, _ = backbones.load_backbone(tiny_preset)
    plain_model = keras.Model(plain_backbone.input, keras.layers.SpatialDropout1D(0.1)(keras.layers.Reshape((-1, 1))(
        keras.layers.Dense(4, activation="gelu")(keras.layers.Dropout(0.1)(plain_backbone.output["pooled_output"])))))
    plain_model.load_weights(str(tmp_path / "switched.weights.h5"))
    np.testing.assert_allclose(plain_model(inputs, training=False).numpy(), before, rtol=1e-5, atol=1e-6)



@pytest.mark.parametrize("policy", ["float32", "mixed_bfloat16"])
@pytest.mark.parametrize("layer_class, causal", [(keras.layers.MultiHeadAttention, False),
                                                 (keras.layers.MultiHeadAttention, True),
                                                 (CachedMultiHeadAttention, False)])
def test_fast_attention_matches_keras_outputs_scores_and_gradients(layer_class, policy, causal):
    """Cross-attention (query length 7, key length 5) under a padding mask; causal masks go to Keras."""
    rng = np.random.default_rng(0)
    query, value = (tf.constant(rng.normal(size=(3, n, 16)), tf.float32) for n in (7, 5))
    mask = tf.constant(rng.random((3, 7, 5)) > 0.3)
    if layer_class is CachedMultiHeadAttention:
        mask = tf.cast(mask, tf.int32)  # KerasHub's decoders pass integer masks.
    layer = layer_class(num_heads=4, key_dim=8, dropout=0.1, dtype=policy)
    results = []
    for fast in (False, True):
        if fast:
            assert use_fast_kernels(layer)["attention"] == 1
        with tf.GradientTape() as tape:
            tape.watch(query)
            if causal:
                output, scores = layer(query, value, use_causal_mask=True, return_attention_scores=True)
            else:
                output, scores = layer(query, value, attention_mask=mask, return_attention_scores=True)
            loss = tf.reduce_sum(tf.square(tf.cast(output, tf.float32)))
        gradients = tape.gradient(loss, [query] + layer.trainable_weights)
        results.append([output, scores] + gradients)
    tolerance = 1e-5 if policy == "float32" else 2e-2
    names = ["output", "scores", "query"] + [w.path for w in layer.trainable_weights]
    for name, keras_value, fast_value in zip(names, *results):
        keras_value, fast_value = (tf.cast(v, tf.float32).numpy() for v in (keras_value, fast_value))
        if name.endswith("key/bias"):
            # Adding one number to a row of scores leaves its softmax unchanged: the gradient is zero, and
            # both are rounding noise (Keras's bfloat16 softmax: up to 0.05; the float32 one here: less).
            assert np.abs(fast_value).max() <= max(np.abs(keras_value).max(), 1e-5 if policy == "float32" else 0.05)
            continue
        scale = max(np.abs(keras_value).max(), 1.0)
        np.testing.assert_allclose(fast_value / scale, keras_value / scale, rtol=tolerance, atol=tolerance,
                                   err_msg=name)
    training = tf.reduce_sum(tf.cast(layer(query, value, attention_mask=mask, training=True), tf.float32))
    assert float(training) != pytest.approx(float(tf.reduce_sum(tf.cast(results[1][0], tf.float32))), rel=1e-3)


@pytest.mark.parametrize("policy", ["float32", "mixed_bfloat16"])
def test_fast_attention_fuses_softmax_and_dropout_in_training_with_the_same_mask_and_gradients(policy, monkeypatch):
    """Training without attention scores takes the fused pass; asking for the scores takes softmax, then dropout."""
    fused_calls = []
    fused = fast_kernels._masked_softmax_dropout
    monkeypatch.setattr(fast_kernels, "_masked_softmax_dropout", lambda *a: fused_calls.append(1) or fused(*a))
    rng = np.random.default_rng(1)
    query, value = (tf.constant(rng.normal(size=(3, n, 16)), tf.float32) for n in (7, 6))
    mask = tf.constant(rng.random((3, 7, 6)) > 0.3)
    layers = [keras.layers.MultiHeadAttention(num_heads=4, key_dim=8, dropout=0.3, seed=5, dtype=policy)
              for _ in range(2)]
    for layer in layers:
        layer(query, value, attention_mask=mask)  # Built: its dropout layer exists, and is switched too.
        assert use_fast_kernels(layer)["dropout"] == 1
    layers[1].set_weights(layers[0].get_weights())
    results = []
    for layer, fuse in zip(layers, (False, True)):
        with tf.GradientTape() as tape:
            tape.watch(query)
            output = layer(query, value, attention_mask=mask, training=True, return_attention_scores=not fuse)
            output = output if fuse else output[0]
            loss = tf.reduce_sum(tf.square(tf.cast(output, tf.float32)))
        results.append([output] + tape.gradient(loss, [query] + layer.trainable_weights))
        assert len(fused_calls) == fuse
    tolerance = 1e-5 if policy == "float32" else 2e-2
    for name, apart, together in zip(["output", "query"] + [w.path for w in layers[0].trainable_weights], *results):
        apart, together = (tf.cast(v, tf.float32).numpy() for v in (apart, together))
        if name.endswith("key/bias"):  # Zero up to rounding, as in the test above.
            assert np.abs(together).max() <= max(np.abs(apart).max(), 1e-5 if policy == "float32" else 0.05)
            continue
        scale = max(np.abs(apart).max(), 1.0)
        np.testing.assert_allclose(together / scale, apart / scale, rtol=tolerance, atol=tolerance, err_msg=name)
    # The dropout is on: without it the output differs.
    inference = tf.cast(layers[1](query, value, attention_mask=mask), tf.float32).numpy()
    assert np.abs(inference - tf.cast(results[1][0], tf.float32).numpy()).max() > 0.1


@pytest.mark.parametrize("policy", ["float32", "mixed_bfloat16"])
def test_fast_layer_norm_matches_keras_values_and_gradients(policy):
    rng = np.random.default_rng(0)
    x = tf.constant(rng.normal(2.0, 3.0, (4, 5, 16)), tf.float32)
    upstream = tf.constant(rng.normal(size=(4, 5, 16)), tf.float32)
    gamma, beta = rng.normal(1.0, 0.2, 16), rng.normal(0.0, 0.2, 16)
    results = []
    for fast in (False, True):
        layer = keras.layers.LayerNormalization(epsilon=1e-6, dtype=policy)
        if fast:
            use_fast_kernels(layer)
        layer.build(x.shape)
        layer.gamma.assign(gamma)
        layer.beta.assign(beta)
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layer(x)
            loss = tf.reduce_sum(tf.cast(y, tf.float32) * upstream)
        assert y.dtype == layer.compute_dtype
        gradients = tape.gradient(loss, [x, layer.gamma, layer.beta])
        results.append([y.numpy().astype("float32")] + [g.numpy() for g in gradients])
    tolerance = 1e-5 if policy == "float32" else 2e-2
    for keras_value, fast_value in zip(*results):
        np.testing.assert_allclose(fast_value, keras_value, rtol=tolerance, atol=tolerance)


@pytest.mark.filterwarnings("ignore:You passed `rms_scaling=True`")
def test_fast_layer_norm_leaves_other_axes_and_rms_scaling_to_keras():
    x = tf.random.normal([2, 3, 4])
    for kwargs in ({"axis": 1}, {"rms_scaling": True}, {"center": False}):
        fast_layer = switched(keras.layers.LayerNormalization(**kwargs))
        expected = keras.layers.LayerNormalization(**kwargs)(x).numpy()
        np.testing.assert_allclose(fast_layer(x).numpy(), expected, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("activation", ["gelu", gelu_approximate, None])  # KerasHub's feed-forward GELU.
def test_fast_dense_matches_keras_values_and_gradients(activation):
    x = tf.random.stateless_normal([3, 5, 16], seed=[1, 2])
    results = []
    for fast in (False, True):
        layer = keras.layers.Dense(24, activation=activation)
        layer.build(x.shape)
        layer.set_weights([np.linspace(-1, 1, 16 * 24).reshape(16, 24), np.linspace(-0.5, 0.5, 24)])
        if fast:
            assert use_fast_kernels(layer)["dense"] == 1
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layer(x)
        gradients = tape.gradient(y, [x, *layer.trainable_weights])
        results.append([y.numpy()] + [g.numpy() for g in gradients])
        assert layer(x[0]).shape == (5, 24)  # Any number of leading axes.
    for keras_value, fast_value in zip(*results):
        np.testing.assert_allclose(fast_value, keras_value, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("activation", ["gelu", gelu_approximate, None])
def test_fast_dense_in_bfloat16_adds_the_bias_after_a_plain_matmul_as_keras_does(activation):
    x = tf.random.stateless_normal([3, 5, 16], seed=[1, 2])
    results = []
    for fast in (False, True):
        layer = keras.layers.Dense(24, activation=activation, dtype="mixed_bfloat16")
        layer.build(x.shape)
        layer.set_weights([np.linspace(-1, 1, 16 * 24).reshape(16, 24), np.linspace(-0.5, 0.5, 24)])
        if fast:
            use_fast_kernels(layer)
            graph = tf.function(layer).get_concrete_function(tf.TensorSpec(x.shape)).graph
            ops = {op.type for op in graph.get_operations()}
            assert "MatMul" in ops and "BiasAdd" not in ops, ops  # oneDNN's fused bias op runs without AMX.
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = layer(x)
            weighted = tf.cast(y, tf.float32) * tf.range(24, dtype=tf.float32)  # Distinct gradients per unit.
        assert y.dtype == tf.bfloat16
        gradients = tape.gradient(weighted, [x, *layer.trainable_weights])
        results.append([y.numpy().astype("float32")] + [g.numpy() for g in gradients])
    for keras_value, fast_value in zip(*results):
        np.testing.assert_allclose(fast_value, keras_value, rtol=2e-2, atol=1e-2 * np.abs(keras_value).max())


def _session_op_types(export_dir, inputs):
    """The op types TF Serving's runtime (a TF1 Session, with its graph rewrites) runs for a SavedModel."""
    from tensorflow.core.protobuf import config_pb2

    with tf.Graph().as_default() as graph, tf.compat.v1.Session(graph=graph) as session:
        signature = tf.compat.v1.saved_model.loader.load(session, ["serve"], export_dir).signature_def[
            "serving_default"]
        metadata = config_pb2.RunMetadata()
        session.run({name: tensor.name for name, tensor in signature.outputs.items()},
                    {signature.inputs["x"].name: inputs},
                    options=config_pb2.RunOptions(trace_level=config_pb2.RunOptions.FULL_TRACE),
                    run_metadata=metadata)
    return {node.timeline_label.split(" = ")[1].split("(")[0]
            for device in metadata.step_stats.dev_stats for node in device.node_stats if " = " in node.timeline_label}


@pytest.mark.skipif(not _pywrap_util_port.IsMklEnabled(), reason="the fusion is oneDNN's")
@pytest.mark.parametrize("activation", [gelu_approximate, keras.activations.gelu])
def test_exported_feed_forward_layer_runs_as_one_fused_matmul(activation, tmp_path):
    layer = keras.layers.Dense(64, activation=activation)
    x = np.random.default_rng(0).normal(size=(2, 7, 32)).astype("float32")
    layer.build(x.shape)
    assert use_fast_kernels(layer) == {"dropout": 0, "layer_norm": 0, "gelu": 1, "attention": 0, "projection": 0,
                                       "dense": 1}
    module = tf.Module()
    module.variables_read = [variable.value for variable in layer.weights]  # As the ServingModule stores them.
    with portable_kernels():
        module.serve = tf.function(lambda x: {"y": layer(x)}, input_signature=[tf.TensorSpec([None, None, 32])])
        tf.saved_model.save(module, str(tmp_path), signatures=module.serve)
    ops = _session_op_types(str(tmp_path), x)
    assert any("FusedMatMul" in op for op in ops), ops
    assert not ops & {"MatMul", "_MklMatMul", "BiasAdd", "AddV2", "Tanh", "Sigmoid", "Erf"}, ops
