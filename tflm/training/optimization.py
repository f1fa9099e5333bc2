"""AdamW with linear warmup and linear decay, as in BERT fine-tuning."""

import keras
import tensorflow as tf

# Variable names (matched with re.search) that get no weight decay: biases
# and LayerNorm scales/offsets.
NO_DECAY_NAMES = ["bias", "gamma", "beta"]


@keras.saving.register_keras_serializable(package="tflm")
class WarmupLinearDecay(keras.optimizers.schedules.LearningRateSchedule):
    """Rises linearly from 0 to `peak` over `warmup_steps`, then falls to 0."""

    def __init__(self, peak, total_steps, warmup_steps):
        self.peak = peak
        self.total_steps = total_steps
        self.warmup_steps = warmup_steps

    def __call__(self, step):
        step = keras.ops.cast(step, "float32")
        warmup = keras.ops.cast(max(self.warmup_steps, 1), "float32")
        decay = keras.ops.cast(max(self.total_steps - self.warmup_steps, 1), "float32")
        rising = self.peak * step / warmup
        falling = self.peak * keras.ops.maximum(
            0.0, (self.total_steps - step) / decay
        )
        return keras.ops.where(step < self.warmup_steps, rising, falling)

    def get_config(self):
        return {"peak": self.peak, "total_steps": self.total_steps, "warmup_steps": self.warmup_steps}


@keras.saving.register_keras_serializable(package="tflm")
class FusedAdamW(keras.optimizers.AdamW):
    """Keras AdamW whose Adam step is TensorFlow's fused `ResourceApplyAdam` kernel.

    Same update, same slot variables (checkpoints are interchangeable with
    keras.optimizers.AdamW). Keras writes the step as about ten element-wise
    ops per variable, each a full pass over memory; the fused kernel makes one
    pass. On MiniLM, where the dense update of the 11.7 M-entry word embedding
    dominates, the optimizer's op time per step fell by 30% (benchmarks/
    README.md, profile). Decoupled weight decay stays Keras's own step.
    """

    def update_step(self, gradient, variable, learning_rate):
        index = self._get_variable_index(variable)
        dtype = variable.dtype
        step = tf.cast(self.iterations + 1, dtype)
        beta_1 = tf.cast(self.beta_1, dtype)
        beta_2 = tf.cast(self.beta_2, dtype)
        tf.raw_ops.ResourceApplyAdam(
            var=variable.handle,
            # Under a tf.distribute update these handles are the copies on the
            # device of the `variable` replica being updated.
            m=self._momentums[index].value.handle,
            v=self._velocities[index].value.handle,
            beta1_power=tf.pow(beta_1, step), beta2_power=tf.pow(beta_2, step),
            lr=tf.cast(learning_rate, dtype), beta1=beta_1, beta2=beta_2,
            epsilon=tf.cast(self.epsilon, dtype),
            # Embedding gradients arrive as IndexedSlices; AdamW's update is dense.
            grad=tf.cast(tf.convert_to_tensor(gradient), dtype))


def create_optimizer(learning_rate, total_steps, warmup_fraction=0.1, weight_decay=0.01,
                     clip_norm=1.0, loss_scale=False):
    """FusedAdamW over the schedule above; weight decay skips bias and LayerNorm.

    Args:
      loss_scale: wrap in a LossScaleOptimizer (needed for mixed_float16).
    """
    schedule = WarmupLinearDecay(learning_rate, total_steps, int(total_steps * warmup_fraction))
    optimizer = FusedAdamW(
        learning_rate=schedule,
        weight_decay=weight_decay,
        global_clipnorm=clip_norm or None,
        epsilon=1e-6,
    )
    optimizer.exclude_from_weight_decay(var_names=NO_DECAY_NAMES)
    if loss_scale:
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    return optimizer
