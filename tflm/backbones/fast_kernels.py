"""Cheaper kernels for the dropout, GELU, layer-norm and attention layers that KerasHub builds.

Every tflm task switches its model to them when it builds it
(`use_fast_kernels`), so training, evaluation and export all run them. They
compute the same functions; the measured gains are in benchmarks/README.md.

Dropout: Keras draws a float uniform per element (`stateless_dropout`) and
masks with `where` in both passes; on this CPU that random draw was the
largest non-matmul item of a training step. `fast_dropout_call` draws one 32-bit
integer per two elements, compares each 16-bit half against the rate, and
multiplies by the scaled mask, which the backward pass reuses. The drop
probability is the rate rounded to 1/65536 (0.1 becomes 0.100006); the scale
keeps the layer unbiased. Outside training it is the identity, as before.

GELU and layer norm: TensorFlow differentiates `tf.nn.gelu` and Keras's
layer norm op by op, many passes over the activations. The versions here
compute in float32 (as Keras's layer norm does; the GELU's tanh approximation
written as x * sigmoid(...)) and give the derivative in closed form.

Attention: `fast_attention` multiplies heads-major tensors with `tf.matmul`
instead of Keras's `einsum`s (see its docstring).
"""

import math
import types

import keras
import tensorflow as tf
from absl import logging
from keras_hub.src.utils.keras_utils import gelu_approximate

_LEVELS = 1 << 16
_SQRT_2_OVER_PI = math.sqrt(2 / math.pi)


def fast_dropout_call(layer, inputs, training=False):
    """`keras.layers.Dropout.call` with the mask drawn from 16-bit random integers."""
    if not training or layer.rate == 0:
        return inputs
    threshold = round(layer.rate * _LEVELS)
    if threshold >= _LEVELS:
        return tf.zeros_like(inputs)
    seed = layer.seed_generator.next()
    # Stateless ops take an int32 seed under XLA; the generator's state is int64.
    seed = tf.cast(tf.math.floormod(seed, tf.int32.max), tf.int32)
    shape = tf.shape(inputs)
    if layer.noise_shape is not None:
        shape = tf.stack([shape[i] if size is None else size for i, size in enumerate(layer.noise_shape)])
    size = tf.reduce_prod(shape)
    words = tf.random.stateless_uniform([(size + 1) // 2], seed=seed, minval=None, maxval=None, dtype=tf.uint32)
    halves = tf.reshape(tf.bitcast(words, tf.uint16), [-1])[:size]
    keep = tf.cast(tf.reshape(halves >= threshold, shape), inputs.dtype)
    return inputs * (keep * tf.constant(_LEVELS / (_LEVELS - threshold), inputs.dtype))


@keras.saving.register_keras_serializable(package="tflm")
@tf.custom_gradient
def fast_gelu_approximate(x):
    """0.5 x (1 + tanh(u)) = x * sigmoid(2u), u = sqrt(2/pi) (x + 0.044715 x^3)."""
    x32 = tf.cast(x, tf.float32)
    square = tf.square(x32)
    a, b = 2 * _SQRT_2_OVER_PI, 2 * _SQRT_2_OVER_PI * 0.044715
    gate = tf.sigmoid(x32 * (a + b * square))

    def gradient(upstream):
        slope = gate + x32 * gate * (1 - gate) * (a + 3 * b * square)
        return tf.cast(tf.cast(upstream, tf.float32) * slope, x.dtype)

    return tf.cast(x32 * gate, x.dtype), gradient


@keras.saving.register_keras_serializable(package="tflm")
@tf.custom_gradient
def fast_gelu(x):
    """Exact GELU, x * Phi(x)."""
    x32 = tf.cast(x, tf.float32)
    cdf = 0.5 * (1 + tf.math.erf(x32 * math.sqrt(0.5)))

    def gradient(upstream):
        pdf = tf.exp(-0.5 * tf.square(x32)) / math.sqrt(2 * math.pi)
        return tf.cast(tf.cast(upstream, tf.float32) * (cdf + x32 * pdf), x.dtype)

    return tf.cast(x32 * cdf, x.dtype), gradient


def fast_layer_norm_call(layer, inputs):
    """`keras.layers.LayerNormalization.call` over the last axis, with a closed-form gradient."""
    last = len(inputs.shape) - 1
    if layer.rms_scaling or layer.gamma is None or layer.beta is None or inputs.dtype == tf.float64 or \
            [axis % (last + 1) for axis in layer.axis] != [last]:
        return keras.layers.LayerNormalization.call(layer, inputs)
    epsilon = layer.epsilon

    @tf.custom_gradient
    def normalize(x, gamma, beta):
        x32 = tf.cast(x, tf.float32)
        mean, variance = tf.nn.moments(x32, [-1], keepdims=True)
        inverse = tf.math.rsqrt(variance + epsilon)
        normalized = (x32 - mean) * inverse

        def gradient(upstream):
            upstream = tf.cast(upstream, tf.float32)
            rows = tf.reshape(upstream, [-1, upstream.shape[-1]])
            d_gamma = tf.reduce_sum(rows * tf.reshape(normalized, tf.shape(rows)), 0)
            d_beta = tf.reduce_sum(rows, 0)
            scaled = upstream * gamma
            d_x = inverse * (scaled - tf.reduce_mean(scaled, -1, keepdims=True)
                             - normalized * tf.reduce_mean(scaled * normalized, -1, keepdims=True))
            return tf.cast(d_x, x.dtype), d_gamma, d_beta

        return tf.cast(normalized * gamma + beta, layer.compute_dtype), gradient

    return normalize(inputs, tf.convert_to_tensor(layer.gamma), tf.convert_to_tensor(layer.beta))


# The GELUs KerasHub's backbones give their feed-forward layers, and the same
# functions with hand-written gradients.
_FAST_ACTIVATIONS = {gelu_approximate: fast_gelu_approximate, keras.activations.gelu: fast_gelu}


# Plain Keras layer classes: (what use_fast_kernels counts them as, the `call` each gets).
_FAST_CALLS = {keras.layers.Dropout: ("dropout", fast_dropout_call),
               keras.layers.LayerNormalization: ("layer_norm", fast_layer_norm_call)}


def fast_attention(layer, query, key, value, attention_mask=None, training=None,
                   return_attention_scores=False, use_causal_mask=False):
    """`keras.layers.MultiHeadAttention._compute_attention` as transposes and batched `tf.matmul`s.

    Keras contracts [batch, length, heads, dim] tensors with `einsum`, which
    oneDNN runs on this CPU as slow small batched products plus transposes; a
    heads-major `tf.matmul` of the same numbers was 1.8x faster forward and
    backward (benchmarks/README.md). Scores, mask, softmax and dropout are
    Keras's own. Other attention layouts, causal masks and flash attention go
    to Keras.
    """
    if layer._attention_axes != (1,) or len(query.shape) != 4 or use_causal_mask or layer._flash_attention:
        return keras.layers.MultiHeadAttention._compute_attention(
            layer, query, key, value, attention_mask=attention_mask, training=training,
            return_attention_scores=return_attention_scores, use_causal_mask=use_causal_mask)
    query = query * tf.cast(layer._inverse_sqrt_key_dim, query.dtype)
    heads_major = [0, 2, 1, 3]  # [batch, length, heads, dim] <-> [batch, heads, length, dim]
    scores = tf.matmul(tf.transpose(query, heads_major), tf.transpose(key, heads_major), transpose_b=True)
    scores = layer._masked_softmax(scores, attention_mask)  # [batch, heads, query length, key length]
    weights = layer._dropout_layer(scores, training=training) if layer._dropout > 0 else scores
    output = tf.transpose(tf.matmul(weights, tf.transpose(value, heads_major)), heads_major)
    return output, scores


def use_fast_kernels(model):
    """Switches `model`'s plain dropout, layer-norm, GELU and attention layers to the kernels above.

    Returns {"dropout": n, "layer_norm": n, "gelu": n, "attention": n}, the
    layers switched now. A layer keeps its class, weights, settings and seed
    generator: only its `call` (activation function; attention:
    `_compute_attention`) is replaced, on the instance. The class stays
    because Keras's weight files name a layer's weights after it (presets
    exported after training load into plain KerasHub models). Dropout
    subclasses (spatial dropout, ...) and attention subclasses with their own
    `_compute_attention` are left alone.
    """
    counts = {"dropout": 0, "layer_norm": 0, "gelu": 0, "attention": 0}
    for layer in model._flatten_layers(include_self=True):
        kind, call = _FAST_CALLS.get(type(layer), (None, None))
        if call is not None and "call" not in vars(layer):
            layer.call = types.MethodType(call, layer)
            counts[kind] += 1
        if isinstance(layer, (keras.layers.Dense, keras.layers.EinsumDense)) and layer.activation in _FAST_ACTIVATIONS:
            layer.activation = _FAST_ACTIVATIONS[layer.activation]
            counts["gelu"] += 1
        if isinstance(layer, keras.layers.MultiHeadAttention) and "_compute_attention" not in vars(layer) and \
                type(layer)._compute_attention is keras.layers.MultiHeadAttention._compute_attention:
            layer._compute_attention = types.MethodType(fast_attention, layer)
            counts["attention"] += 1
    logging.info("Fast kernels: %d dropout, %d layer-norm, %d GELU and %d attention layers", *counts.values())
    return counts
