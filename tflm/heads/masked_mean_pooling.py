"""Mean over the non-padding positions of a sequence."""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="tflm")
class MaskedMeanPooling(keras.layers.Layer):
    """Averages `sequence` [B, T, H] over positions where `padding_mask` [B, T] is set.

    Computed in float32 so a bfloat16 backbone does not lose precision in the
    sum. Rows whose mask is all zero give zeros instead of NaN.
    """

    def __init__(self, **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)

    def call(self, sequence, padding_mask):
        sequence = ops.cast(sequence, "float32")
        weights = ops.expand_dims(ops.cast(padding_mask, "float32"), -1)
        total = ops.sum(sequence * weights, axis=1)
        count = ops.maximum(ops.sum(weights, axis=1), 1.0)
        return total / count

    def compute_output_shape(self, sequence_shape, padding_mask_shape):
        return (sequence_shape[0], sequence_shape[-1])
