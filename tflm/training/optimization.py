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
    README.md, profile).

    `lr_multipliers` ({variable path: factor}, see layer_lr_decay.py) scales
    both the Adam step and the decoupled weight decay of those variables, as
    a PyTorch parameter group with its own learning rate would. With them the
    decay is applied per variable, just before its Adam step, instead of in
    Keras's separate pass over all variables (same arithmetic). Without them
    Keras's pass stays: the step is then exactly the one whose speed
    benchmarks/README.md reports.
    """

    def __init__(self, *args, lr_multipliers=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.lr_multipliers = dict(lr_multipliers or {})
        self._lr_factors = []

    def build(self, var_list):
        if self.built:
            return
        super().build(var_list)
        # Python floats, indexed like the slots: constants in the traced step.
        self._lr_factors = [self.lr_multipliers.get(v.path, 1.0) for v in var_list]

    def _apply_weight_decay(self, variables):
        if not self.lr_multipliers:
            super()._apply_weight_decay(variables)

    def update_step(self, gradient, variable, learning_rate):
        index = self._get_variable_index(variable)
        dtype = variable.dtype
        learning_rate = tf.cast(learning_rate, dtype)
        if self.lr_multipliers:
            learning_rate = learning_rate * self._lr_factors[index]
            if self.weight_decay is not None and self._use_weight_decay(variable):
                variable.assign_sub(variable * tf.cast(self.weight_decay, dtype) * learning_rate)
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
            lr=learning_rate, beta1=beta_1, beta2=beta_2,
            epsilon=tf.cast(self.epsilon, dtype),
            # Embedding gradients arrive as IndexedSlices; AdamW's update is dense.
            grad=tf.cast(tf.convert_to_tensor(gradient), dtype))


def create_optimizer(learning_rate, total_steps, warmup_fraction=0.1, weight_decay=0.01,
                     clip_norm=1.0, loss_scale=False, lr_multipliers=None):
    """FusedAdamW over the schedule above; weight decay skips bias and LayerNorm.

    Args:
      loss_scale: wrap in a LossScaleOptimizer (needed for mixed_float16).
      lr_multipliers: {variable path: learning-rate factor}; others get 1.
    """
    schedule = WarmupLinearDecay(learning_rate, total_steps, int(total_steps * warmup_fraction))
    optimizer = FusedAdamW(
        learning_rate=schedule,
        weight_decay=weight_decay,
        global_clipnorm=clip_norm or None,
        epsilon=1e-6,
        lr_multipliers=lr_multipliers,
    )
    optimizer.exclude_from_weight_decay(var_names=NO_DECAY_NAMES)
    if loss_scale:
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    return optimizer
