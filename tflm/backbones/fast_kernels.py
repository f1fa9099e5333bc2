"""Cheaper kernels for the dropout, GELU, layer-norm, attention and dense layers that KerasHub builds.

Every tflm task switches its model to them when it builds it
(`use_fast_kernels`), so training, evaluation and export all run them. They
compute the same functions; the measured gains are in benchmarks/README.md.

Dropout: Keras draws a float uniform per element (`stateless_dropout`) and
masks with `where` in both passes; on this CPU that random draw was the
largest non-matmul item of a training step. `fast_dropout_call` hashes a
counter into one 32-bit integer per two elements, compares each 16-bit half
against the rate and multiplies by the scaled mask, all in one XLA-compiled
pass; the backward pass reuses the mask. That mask took half the time of one
drawn with TensorFlow's Philox generator (batch-32 attention weights at
length 128). The drop probability is the rate
rounded to 1/65536 (0.1 becomes 0.100006); the scale keeps the layer
unbiased. Outside training it is the identity, as before.

GELU and layer norm: TensorFlow differentiates `tf.nn.gelu` and Keras's
layer norm op by op, many passes over the activations. The versions here
compute in float32 (as Keras's layer norm does; the GELU's tanh approximation
written as x * sigmoid(...)), give the derivative in closed form, and are
XLA-compiled, so each direction is one fused pass.

Attention: `fast_attention` multiplies heads-major tensors with `tf.matmul`
instead of Keras's `einsum`s (see its docstring), fuses the attention
weights' softmax and dropout in training, and `fast_projection_call` runs the
query, key, value and output projections as 2-D matmuls.

Dense layers (`fast_dense_call`): a 2-D matmul with `tf.nn.bias_add`, which
oneDNN fuses with the bias and, in exports, with the feed-forward GELU. In
bfloat16 training the matmul stays plain, so that oneDNN runs it with AMX,
and the bias is added in the compiled GELU pass (or one of its own).
"""

import contextlib
import functools
import math
import threading
import types

import keras
import numpy as np
import tensorflow as tf
from absl import logging
from keras_hub.src.utils.keras_utils import gelu_approximate

_LEVELS = 1 << 16
_SQRT_2_OVER_PI = math.sqrt(2 / math.pi)


_portability = threading.local()


@contextlib.contextmanager
def portable_kernels():
    """Inside, the kernels trace to plain TensorFlow ops instead of XLA-compiled functions.

    For SavedModels: TF Serving runs XLA on CPU only with
    --xla_cpu_compilation_enabled (off by default), and fails any request
    that reaches a must-compile function without it. Same functions, so the
    outputs agree to rounding.
    """
    previous = getattr(_portability, "on", False)
    _portability.on = True
    try:
        yield
    finally:
        _portability.on = previous


def _is_portable():
    return getattr(_portability, "on", False)


def _compiled(function):
    """`function` XLA-compiled, as tf.function(jit_compile=True)."""
    return tf.function(function, jit_compile=True, autograph=False)


def _compiled_unless_portable(function):
    """`function` `_compiled`, or plain when traced in portable_kernels()."""
    compiled = _compiled(function)

    @functools.wraps(function)
    def run(*args):
        return function(*args) if _is_portable() else compiled(*args)

    return run


def fast_dropout_call(layer, inputs, training=False):
    """`keras.layers.Dropout.call` with the mask drawn from 16-bit hashed integers, in one compiled pass."""
    if not training or layer.rate == 0:
        return inputs
    threshold = round(layer.rate * _LEVELS)
    if threshold >= _LEVELS:
        return tf.zeros_like(inputs)
    seed = _next_dropout_seed(layer)
    noise_shape = None if layer.noise_shape is None else tuple(layer.noise_shape)

    @tf.custom_gradient
    def dropout(x):
        outputs, scaled_mask = _dropout_outputs_and_mask(x, seed, noise_shape, threshold)
        return outputs, lambda upstream: upstream * scaled_mask

    return dropout(inputs)


def _mix32(x):
    """lowbias32 (C. Wellons): a bijective 32-bit hash whose output bits each flip with ~1/2 per input bit."""
    x = tf.bitwise.bitwise_xor(x, tf.bitwise.right_shift(x, 16)) * tf.constant(0x7FEB352D, tf.uint32)
    x = tf.bitwise.bitwise_xor(x, tf.bitwise.right_shift(x, 15)) * tf.constant(0x846CA68B, tf.uint32)
    return tf.bitwise.bitwise_xor(x, tf.bitwise.right_shift(x, 16))


def _next_dropout_seed(layer):
    """The dropout layer's next seed, as the int32 the mask hash keys on (the generator's state is int64)."""
    return tf.cast(tf.math.floormod(layer.seed_generator.next(), tf.int32.max), tf.int32)


def _scaled_dropout_mask(shape, seed, threshold, dtype):
    """1 / (1 - rate) where an element is kept, 0 where dropped.

    Word i of the random stream is mix(mix(i ^ k0) + k1), keys k = mix(seed):
    a counter-based generator like Philox, but cheap enough for XLA to fuse
    with the compare, select and multiply into one vectorised loop.
    """
    size = tf.reduce_prod(shape)
    keys = _mix32(tf.bitcast(seed, tf.uint32))
    counters = tf.bitcast(tf.range((size + 1) // 2, dtype=tf.int32), tf.uint32)
    words = _mix32(_mix32(tf.bitwise.bitwise_xor(counters, keys[0])) + keys[1])
    halves = tf.reshape(tf.bitcast(words, tf.uint16), [-1])[:size]
    scale = tf.constant(_LEVELS / (_LEVELS - threshold), dtype)
    return tf.where(tf.reshape(halves >= threshold, shape), scale, tf.constant(0, dtype))


@_compiled_unless_portable
def _dropout_outputs_and_mask(inputs, seed, noise_shape, threshold):
    """(inputs x scaled mask, scaled mask); the mask has the noise shape."""
    shape = tf.shape(inputs)
    if noise_shape is not None:
        shape = tf.stack([shape[i] if size is None else size for i, size in enumerate(noise_shape)])
    scaled_mask = _scaled_dropout_mask(shape, seed, threshold, inputs.dtype)
    return inputs * scaled_mask, scaled_mask


# The element-wise kernels below are XLA-compiled, forward and backward apart:
# XLA fuses each into one pass over memory where TensorFlow runs every op as
# its own pass, while the matmuls around them stay with oneDNN (which beat
# XLA's on this CPU, so the step as a whole is not compiled). Exports trace
# them as plain ops instead (`portable_kernels`); the GELUs as `tf.nn.gelu`,
# so their compiled passes below serve training and evaluation only.
_A = 2 * _SQRT_2_OVER_PI
_B = 2 * _SQRT_2_OVER_PI * 0.044715


def _gelu_approximate_value(x32):
    return x32 * tf.sigmoid(x32 * (_A + _B * tf.square(x32)))


def _gelu_approximate_slope(x32):
    square = tf.square(x32)
    gate = tf.sigmoid(x32 * (_A + _B * square))
    return gate + x32 * gate * (1 - gate) * (_A + 3 * _B * square)


def _gelu_value(x32):
    return x32 * (0.5 * (1 + tf.math.erf(x32 * math.sqrt(0.5))))


def _gelu_slope(x32):
    cdf = 0.5 * (1 + tf.math.erf(x32 * math.sqrt(0.5)))
    pdf = tf.exp(-0.5 * tf.square(x32)) / math.sqrt(2 * math.pi)
    return cdf + x32 * pdf


def _summed_over_rows(gradient):
    """A bias's gradient: `gradient` summed over every axis but the last."""
    return tf.reduce_sum(tf.reshape(gradient, [-1, gradient.shape[-1]]), 0)


def _differentiable_activation(value, slope):
    """The activation `value` (float32 math; `slope` its derivative) as one compiled pass each way.

    Returns (activation(x), activation_of_sum(x, bias)); the second adds
    `bias` over the last axis inside the same passes and sums its gradient
    there too.
    """
    @_compiled
    def forward(x, *bias):
        x32 = tf.cast(x, tf.float32) + (tf.cast(bias[0], tf.float32) if bias else 0.0)
        return tf.cast(value(x32), x.dtype)

    @_compiled
    def backward(x, upstream, *bias):
        x32 = tf.cast(x, tf.float32) + (tf.cast(bias[0], tf.float32) if bias else 0.0)
        gradient = tf.cast(upstream, tf.float32) * slope(x32)
        if not bias:
            return tf.cast(gradient, x.dtype)
        return tf.cast(gradient, x.dtype), tf.cast(_summed_over_rows(gradient), bias[0].dtype)

    @tf.custom_gradient
    def activation(x):
        return forward(x), lambda upstream: backward(x, upstream)

    @tf.custom_gradient
    def activation_of_sum(x, bias):
        return forward(x, bias), lambda upstream: backward(x, upstream, bias)

    return activation, activation_of_sum


_differentiable_gelu_approximate, _biased_gelu_approximate = _differentiable_activation(
    _gelu_approximate_value, _gelu_approximate_slope)
_differentiable_gelu, _biased_gelu = _differentiable_activation(_gelu_value, _gelu_slope)


@keras.saving.register_keras_serializable(package="tflm")
def fast_gelu_approximate(x):
    """0.5 x (1 + tanh(u)) = x * sigmoid(2u), u = sqrt(2/pi) (x + 0.044715 x^3).

    In exports, `tf.nn.gelu` itself: oneDNN fuses it, with the bias add,
    into the matmul before it (see `fast_dense_call`).
    """
    return tf.nn.gelu(x, approximate=True) if _is_portable() else _differentiable_gelu_approximate(x)


@keras.saving.register_keras_serializable(package="tflm")
def fast_gelu(x):
    """Exact GELU, x * Phi(x); in exports `tf.nn.gelu`, as `fast_gelu_approximate`."""
    return tf.nn.gelu(x, approximate=False) if _is_portable() else _differentiable_gelu(x)


@_compiled_unless_portable
def _layer_norm_forward(x, gamma, beta, epsilon, output_dtype):
    """(output, mean, 1 / standard deviation) over the last axis, in float32."""
    x32 = tf.cast(x, tf.float32)
    mean, variance = tf.nn.moments(x32, [-1], keepdims=True)
    inverse = tf.math.rsqrt(variance + epsilon)
    return tf.cast((x32 - mean) * inverse * gamma + beta, output_dtype), mean, inverse


@_compiled_unless_portable
def _layer_norm_backward(x, mean, inverse, gamma, upstream):
    normalized = (tf.cast(x, tf.float32) - mean) * inverse
    upstream = tf.cast(upstream, tf.float32)
    rows = tf.reshape(upstream, [-1, upstream.shape[-1]])
    d_gamma = tf.reduce_sum(rows * tf.reshape(normalized, tf.shape(rows)), 0)
    d_beta = tf.reduce_sum(rows, 0)
    scaled = upstream * gamma
    d_x = inverse * (scaled - tf.reduce_mean(scaled, -1, keepdims=True)
                     - normalized * tf.reduce_mean(scaled * normalized, -1, keepdims=True))
    return tf.cast(d_x, x.dtype), d_gamma, d_beta


def fast_layer_norm_call(layer, inputs):
    """`keras.layers.LayerNormalization.call` over the last axis, with a closed-form gradient."""
    last = len(inputs.shape) - 1
    if layer.rms_scaling or layer.gamma is None or layer.beta is None or inputs.dtype == tf.float64 or \
            [axis % (last + 1) for axis in layer.axis] != [last]:
        return keras.layers.LayerNormalization.call(layer, inputs)

    @tf.custom_gradient
    def normalize(x, gamma, beta):
        output, mean, inverse = _layer_norm_forward(x, gamma, beta, layer.epsilon, tf.as_dtype(layer.compute_dtype))
        return output, lambda upstream: _layer_norm_backward(x, mean, inverse, gamma, upstream)

    return normalize(inputs, tf.convert_to_tensor(layer.gamma), tf.convert_to_tensor(layer.beta))


# The GELUs KerasHub's backbones give their feed-forward layers, and the same
# functions with hand-written gradients.
_FAST_ACTIVATIONS = {gelu_approximate: fast_gelu_approximate, keras.activations.gelu: fast_gelu}
# The same, after a bias add in the same passes (`_flat_matmul`).
_BIASED_ACTIVATIONS = {fast_gelu_approximate: _biased_gelu_approximate, fast_gelu: _biased_gelu}


# Plain Keras layer classes: (what use_fast_kernels counts them as, the `call` each gets).
_FAST_CALLS = {keras.layers.Dropout: ("dropout", fast_dropout_call),
               keras.layers.LayerNormalization: ("layer_norm", fast_layer_norm_call)}


def _masked_softmax_probabilities(scores, mask):
    """Keras's masked softmax (masked scores -> -1e9, masked outputs -> 0), computed in float32."""
    scores32 = tf.cast(scores, tf.float32)
    if mask is not None:
        keep = mask if mask.dtype == tf.bool else mask > tf.cast(0.5, mask.dtype)  # Keras's test (ints: > 0).
        scores32 = tf.where(keep, scores32, -1e9)
    exps = tf.exp(scores32 - tf.reduce_max(scores32, -1, keepdims=True))
    probabilities = exps / tf.reduce_sum(exps, -1, keepdims=True)
    if mask is not None:
        probabilities = tf.where(keep, probabilities, 0.0)
    return tf.cast(probabilities, scores.dtype)


_masked_softmax_forward = _compiled_unless_portable(_masked_softmax_probabilities)


@_compiled_unless_portable
def _masked_softmax_backward(probabilities, upstream):
    # Masked positions have probability 0, so their gradient is 0, as through Keras's `where`s.
    p, upstream = tf.cast(probabilities, tf.float32), tf.cast(upstream, tf.float32)
    return tf.cast(p * (upstream - tf.reduce_sum(upstream * p, -1, keepdims=True)), probabilities.dtype)


def _masked_softmax(scores, mask):
    """Softmax over the last axis of `scores` where `mask` (broadcast to it) is true or > 0.5."""

    @tf.custom_gradient
    def softmax(x):
        probabilities = _masked_softmax_forward(x, mask)
        return probabilities, lambda upstream: _masked_softmax_backward(probabilities, upstream)

    return softmax(scores)


@_compiled
def _masked_softmax_dropout_forward(scores, mask, seed, threshold):
    probabilities = _masked_softmax_probabilities(scores, mask)
    return probabilities * _scaled_dropout_mask(tf.shape(probabilities), seed, threshold, probabilities.dtype), \
        probabilities


@_compiled
def _masked_softmax_dropout_backward(probabilities, dropped, upstream):
    # With dropped = p * m: d/dp = upstream * m, and the softmax's p * (g - sum(g * p)) becomes
    # upstream * dropped - p * sum(upstream * dropped): no mask needs keeping.
    p, dropped, upstream = (tf.cast(t, tf.float32) for t in (probabilities, dropped, upstream))
    kept = upstream * dropped
    return tf.cast(kept - p * tf.reduce_sum(kept, -1, keepdims=True), probabilities.dtype)


def _masked_softmax_dropout(scores, mask, dropout):
    """(dropout(masked softmax(scores)), the softmax) in one compiled pass each way; training only.

    Apart, the softmax writes the probabilities and the dropout reads them
    back and writes its output and a float mask: for attention weights
    (batch x heads x length^2) the largest tensors of a step. Fused, the mask
    is never stored: the backward pass needs only the probabilities and the
    dropped weights, which the value matmul keeps anyway. For a dropout layer
    switched to `fast_dropout_call`: the same mask from its next seed.
    """
    seed, threshold = _next_dropout_seed(dropout), round(dropout.rate * _LEVELS)
    softmax = {}

    @tf.custom_gradient
    def softmax_dropout(x):
        dropped, softmax["probabilities"] = _masked_softmax_dropout_forward(x, mask, seed, threshold)
        return dropped, lambda upstream: _masked_softmax_dropout_backward(softmax["probabilities"], dropped, upstream)

    return softmax_dropout(scores), softmax["probabilities"]


_SAME_WIDTH_INTEGERS = {tf.float16: tf.int16, tf.bfloat16: tf.int16, tf.float32: tf.int32, tf.float64: tf.int64}


def _transpose_bits(x, perm):
    integers = _SAME_WIDTH_INTEGERS[x.dtype]
    return tf.bitcast(tf.transpose(tf.bitcast(x, integers), perm), x.dtype)


def transpose(x, perm):
    """`tf.transpose` of a float tensor, moved as same-width integers (differentiable).

    TensorFlow's oneDNN pass turns float transposes into oneDNN reorders,
    which for attention-sized tensors cost several times Eigen's integer
    transpose of the same bits (76 against 9 microseconds per call in a
    one-sentence serving trace). Bitcasts copy nothing.
    """
    inverse = [perm.index(axis) for axis in range(len(perm))]

    @tf.custom_gradient
    def moved(x):
        return _transpose_bits(x, perm), lambda upstream: _transpose_bits(upstream, inverse)

    return moved(x)


# The two EinsumDense equations of keras.layers.MultiHeadAttention's
# projections: [batch, length, width] -> [batch, length, heads, dim] (query,
# key, value) and back (output).
_PROJECTIONS = ("abc,cde->abde", "abcd,cde->abe")


def _split_kernel_axes(layer):
    """(contracted, output) axis sizes of a `_PROJECTIONS` kernel: the first one or two axes, and the rest."""
    contracted = 1 if layer.equation == _PROJECTIONS[0] else 2
    return tuple(layer.kernel.shape[:contracted]), tuple(layer.kernel.shape[contracted:])


def _projects_as_matmul(layer):
    """Whether `layer` is a plain float EinsumDense with one of `_PROJECTIONS` and a bias over all its output axes."""
    if type(layer) is not keras.layers.EinsumDense or layer.equation not in _PROJECTIONS or \
            layer.quantization_mode is not None or not layer.built:
        return False
    return layer.bias is None or tuple(layer.bias.shape) == _split_kernel_axes(layer)[1]


def _flat_matmul(inputs, contracted_rank, kernel, bias, output_axes, activation):
    """Contracts the last `contracted_rank` axes of `inputs` with a 2-D `kernel` as one matmul over all tokens.

    The bias add is `tf.nn.bias_add` and the activation follows it directly,
    the pattern TensorFlow's oneDNN remapper fuses into one matmul op (with
    `tf.nn.gelu`, as exports run it); in bfloat16 training, a plain matmul
    and the bias added in a compiled pass (`_adds_bias_apart`).
    """
    leading = tf.shape(inputs)[:len(inputs.shape) - contracted_rank]
    outputs = tf.matmul(tf.reshape(inputs, [-1, kernel.shape[0]]), kernel)
    if bias is not None:
        bias = tf.reshape(bias, [-1])
        if not _adds_bias_apart(outputs):
            outputs = tf.nn.bias_add(outputs, bias)
        elif activation in _BIASED_ACTIVATIONS:
            outputs, activation = _BIASED_ACTIVATIONS[activation](outputs, bias), None
        else:
            outputs = _bias_add(outputs, bias)
    if activation is not None:
        outputs = activation(outputs)
    return tf.reshape(outputs, tf.concat([leading, output_axes], 0))


def _adds_bias_apart(outputs):
    """Whether a matmul's bias is added after it, in a compiled pass, instead of fused into the oneDNN op.

    On AMX CPUs oneDNN runs a bfloat16 matmul with a fused bias as an inner
    product without AMX (`x64:gemm:jit`), and a plain one with AMX
    (`brg_matmul`): at 2,048 x 384 x 1,536, 8.4 against 1.6 ms
    (benchmarks/README.md). Exports keep the fused op: TF Serving runs no
    XLA, and one-sentence requests are too small for AMX to pay. GPUs keep
    it too: cuBLAS adds the bias in the matmul's epilogue.
    """
    return outputs.dtype == tf.bfloat16 and not _is_portable() and not _has_gpu()


@functools.cache
def _has_gpu():
    return bool(tf.config.list_physical_devices("GPU"))


@_compiled
def _bias_add_forward(x, bias):
    return tf.cast(tf.cast(x, tf.float32) + tf.cast(bias, tf.float32), x.dtype)


@_compiled
def _bias_gradient(upstream, bias):
    return tf.cast(_summed_over_rows(tf.cast(upstream, tf.float32)), bias.dtype)


@tf.custom_gradient
def _bias_add(x, bias):
    return _bias_add_forward(x, bias), lambda upstream: (upstream, _bias_gradient(upstream, bias))


def fast_projection_call(layer, inputs, training=None):
    """`EinsumDense.call` for `_PROJECTIONS` as one 2-D matmul and bias add.

    TensorFlow runs these einsums as 3-D products with reshapes around them;
    flattening the tokens into one matrix computes the same sums (identical
    float32 outputs) with one oneDNN matmul that fuses the bias. Measured with
    `transpose` above: a float32 training step 6-8% faster (seq 64 / 128), a
    one-sentence serving call 11% (benchmarks/README.md).
    """
    del training
    contracted, output_axes = _split_kernel_axes(layer)
    kernel = tf.reshape(layer.kernel, [math.prod(contracted), math.prod(output_axes)])
    return _flat_matmul(inputs, len(contracted), kernel, layer.bias, output_axes, layer.activation)


def _is_plain_dense(layer):
    return type(layer) is keras.layers.Dense and layer.built and layer.quantization_mode is None and \
        not layer.lora_enabled


def fast_dense_call(layer, inputs, training=None):
    """`Dense.call` as one 2-D matmul, `tf.nn.bias_add` and the activation.

    Keras adds the bias with a broadcast add after a matmul of the 3-D
    tokens, which keeps oneDNN from fusing it; here the feed-forward layer's
    matmul, bias and GELU become one oneDNN op in exports (`_flat_matmul`).
    """
    del training
    return _flat_matmul(inputs, 1, layer.kernel, layer.bias, [layer.units], layer.activation)


def fast_attention(layer, query, key, value, attention_mask=None, training=None,
                   return_attention_scores=False, use_causal_mask=False):
    """`keras.layers.MultiHeadAttention._compute_attention` as transposes and batched `tf.matmul`s.

    Keras contracts [batch, length, heads, dim] tensors with `einsum`, which
    oneDNN runs on this CPU as slow small batched products plus transposes; a
    heads-major `tf.matmul` of the same numbers was 1.8x faster forward and
    backward (benchmarks/README.md). The masked softmax is Keras's function,
    XLA-compiled (in float32; a subclassed softmax layer keeps Keras's); in
    training it runs with the layer's dropout as one pass each way
    (`_masked_softmax_dropout`). Other attention layouts, causal masks and
    flash attention go to Keras.
    """
    if layer._attention_axes != (1,) or len(query.shape) != 4 or use_causal_mask or layer._flash_attention:
        return keras.layers.MultiHeadAttention._compute_attention(
            layer, query, key, value, attention_mask=attention_mask, training=training,
            return_attention_scores=return_attention_scores, use_causal_mask=use_causal_mask)
    query = query * tf.cast(layer._inverse_sqrt_key_dim, query.dtype)
    heads_major = [0, 2, 1, 3]  # [batch, length, heads, dim] <-> [batch, heads, length, dim]
    scores = tf.matmul(transpose(query, heads_major), transpose(key, heads_major), transpose_b=True)
    # [batch, heads, query length, key length]
    dropout, weights = layer._dropout_layer, None
    if type(layer._softmax) is keras.layers.Softmax and tuple(np.atleast_1d(layer._softmax.axis)) in ((3,), (-1,)):
        while attention_mask is not None and len(attention_mask.shape) < 4:  # As Keras: [batch, 1, query, key].
            attention_mask = tf.expand_dims(attention_mask, -3)
        if training is True and not return_attention_scores and vars(dropout).get("call") is not None and \
                dropout.call.__func__ is fast_dropout_call and dropout.noise_shape is None and \
                0 < round(dropout.rate * _LEVELS) < _LEVELS:
            weights, scores = _masked_softmax_dropout(scores, attention_mask, dropout)
        else:
            scores = _masked_softmax(scores, attention_mask)
    else:
        scores = layer._masked_softmax(scores, attention_mask)
    if weights is None:
        weights = dropout(scores, training=training) if layer._dropout > 0 else scores
    output = transpose(tf.matmul(weights, transpose(value, heads_major)), heads_major)
    return output, scores


def use_fast_kernels(model):
    """Switches `model`'s plain dropout, layer-norm, GELU, attention, projection and dense layers to the kernels above.

    Returns {"dropout": n, "layer_norm": n, "gelu": n, "attention": n,
    "projection": n, "dense": n}, the layers switched now. A layer keeps its class,
    weights, settings and seed generator: only its `call` (activation
    function; attention: `_compute_attention`) is replaced, on the instance. The class stays
    because Keras's weight files name a layer's weights after it (presets
    exported after training load into plain KerasHub models). Dropout
    subclasses (spatial dropout, ...) and attention subclasses with their own
    `_compute_attention` are left alone.
    """
    counts = {"dropout": 0, "layer_norm": 0, "gelu": 0, "attention": 0, "projection": 0, "dense": 0}
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
        if _projects_as_matmul(layer) and "call" not in vars(layer):
            layer.call = types.MethodType(fast_projection_call, layer)
            counts["projection"] += 1
        if _is_plain_dense(layer) and "call" not in vars(layer):
            layer.call = types.MethodType(fast_dense_call, layer)
            counts["dense"] += 1
    logging.info("Fast kernels: %d dropout, %d layer-norm, %d GELU, %d attention, %d projection and %d dense layers",
                 *counts.values())
    return counts
