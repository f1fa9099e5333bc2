"""AdamW with linear warmup and linear decay, as in BERT fine-tuning."""

import contextlib

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


@tf.function(jit_compile=True, autograph=False)
def _adamw_update(variable, m, v, gradient, gradient_scale, learning_rate, weight_decay, beta_1, beta_2, epsilon,
                  beta_1_power, beta_2_power, average=None, average_decay=None):
    """One AdamW step of one variable, compiled by XLA into a single pass over its memory.

    Keras's arithmetic: the decoupled decay `w -= w * weight_decay * lr`,
    then the Adam step on the gradient times `gradient_scale` (the global-norm
    clipping factor). With `average`, also the variable's moving average:
    `average = decay * average + (1 - decay) * new variable`.
    """
    gradient = gradient * gradient_scale
    new_m = m + (gradient - m) * (1 - beta_1)
    new_v = v + (tf.square(gradient) - v) * (1 - beta_2)
    alpha = learning_rate * tf.sqrt(1 - beta_2_power) / (1 - beta_1_power)
    decayed = variable - variable * (weight_decay * learning_rate)
    new_variable = decayed - alpha * new_m / (tf.sqrt(new_v) + epsilon)
    m.assign(new_m)
    v.assign(new_v)
    variable.assign(new_variable)
    if average is not None:
        average.assign(new_variable + (average - new_variable) * average_decay)


@keras.saving.register_keras_serializable(package="tflm")
class FusedAdamW(keras.optimizers.AdamW):
    """Keras AdamW whose clipping, weight decay and Adam step are one XLA-compiled pass per variable.

    Same update, same slot variables (checkpoints are interchangeable with
    keras.optimizers.AdamW). Keras multiplies every gradient by the clipping
    factor, decays every variable, then writes the Adam step as about ten
    element-wise ops, each a full pass over memory. On MiniLM, where the
    dense update of the 11.7 M-entry word embedding dominates, Keras's AdamW
    took 113 ms a step and this one 48 ms (benchmarks/README.md). Under a
    multi-replica strategy the gradients are clipped as Keras does (per
    replica, before they are summed).

    `lr_multipliers` ({variable path: factor}, see layer_lr_decay.py) scales
    both the Adam step and the decoupled weight decay of those variables, as
    a PyTorch parameter group with its own learning rate would.

    `use_ema=True` keeps a moving average of each trained variable (Keras's
    "average" slots), updated in the same compiled pass. As in
    `tf.train.ExponentialMovingAverage(num_updates=t)`, it starts at the
    weights and its decay at step t is `min(ema_momentum, (1 + t) / (10 + t))`:
    Keras's constant decay would leave the first steps' weights (and a random
    head) in the average for thousands of steps. `averaged_weights` swaps the
    averages in.
    """

    def __init__(self, *args, lr_multipliers=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.lr_multipliers = dict(lr_multipliers or {})
        self._lr_factors = []
        self._gradient_scale = None

    def build(self, var_list):
        if self.built:
            return
        super().build(var_list)
        # Python floats, indexed like the slots: constants in the traced step.
        self._lr_factors = [self.lr_multipliers.get(v.path, 1.0) for v in var_list]
        if self.use_ema:
            # Averages start at the weights, not Keras's zeros, so a variable
            # that never gets a gradient (an unused pooler) averages to itself.
            for variable, average in zip(var_list, self._model_variables_moving_average):
                average.assign(variable)

    def _clip_gradients(self, grads):
        self._gradient_scale = None
        if self.global_clipnorm and tf.distribute.get_strategy().num_replicas_in_sync == 1:
            # The factor is applied inside each variable's update, not by an
            # extra pass over every gradient. Keras's global norm: the rows of
            # an IndexedSlices gradient count as given (repeated ids unsummed);
            # a non-finite norm makes the factor NaN.
            norm = tf.sqrt(tf.add_n([tf.reduce_sum(tf.square(g.values if isinstance(g, tf.IndexedSlices) else g))
                                     for g in grads if g is not None]))
            self._gradient_scale = self.global_clipnorm * tf.minimum(1.0 / norm, 1.0 / self.global_clipnorm) + (
                norm - norm)
        else:
            grads = super()._clip_gradients(grads)
        # Embedding gradients arrive as IndexedSlices; AdamW's update is dense.
        return [tf.convert_to_tensor(g) if isinstance(g, tf.IndexedSlices) else g for g in grads]

    def _apply_weight_decay(self, variables):
        pass  # Part of update_step.

    def _update_model_variables_moving_average(self, trainable_variables):
        pass  # Part of update_step.

    def update_step(self, gradient, variable, learning_rate):
        index = self._get_variable_index(variable)
        dtype = variable.dtype
        decays = self.weight_decay is not None and self._use_weight_decay(variable)
        step = tf.cast(self.iterations + 1, dtype)
        beta_1, beta_2 = tf.cast(self.beta_1, dtype), tf.cast(self.beta_2, dtype)
        average = average_decay = None
        if self.use_ema:
            updates = tf.cast(self.iterations, dtype)
            average = self._model_variables_moving_average[index].value
            average_decay = tf.minimum(tf.cast(self.ema_momentum, dtype), (1 + updates) / (10 + updates))
        _adamw_update(
            # Under a tf.distribute update these are the copies on the device
            # of the `variable` replica being updated.
            variable, self._momentums[index].value, self._velocities[index].value,
            tf.cast(gradient, dtype),
            tf.constant(1, dtype) if self._gradient_scale is None else tf.cast(self._gradient_scale, dtype),
            tf.cast(learning_rate, dtype) * self._lr_factors[index],
            tf.cast(self.weight_decay if decays else 0, dtype),
            beta_1, beta_2, tf.cast(self.epsilon, dtype), tf.pow(beta_1, step), tf.pow(beta_2, step),
            average, average_decay)


@contextlib.contextmanager
def averaged_weights(optimizer):
    """Inside the block the trained variables hold the optimizer's moving averages, if it keeps any.

    Evaluating, saving the best weights and exporting inside it all use the
    averages; on leaving, the trained values come back (a checkpoint taken
    afterwards resumes training, not the average).
    """
    optimizer = getattr(optimizer, "inner_optimizer", optimizer)  # A LossScaleOptimizer's.
    if not optimizer.use_ema:
        yield
        return
    pairs = list(zip(optimizer._trainable_variables, optimizer._model_variables_moving_average))

    def swap():
        for variable, average in pairs:
            trained = tf.identity(variable.value)
            variable.assign(average.value)
            average.assign(trained)

    swap()
    try:
        yield
    finally:
        swap()


def create_optimizer(learning_rate, total_steps, warmup_fraction=0.1, weight_decay=0.01,
                     clip_norm=1.0, loss_scale=False, lr_multipliers=None, ema_momentum=0.0):
    """FusedAdamW over the schedule above; weight decay skips bias and LayerNorm.

    Args:
      loss_scale: wrap in a LossScaleOptimizer (needed for mixed_float16).
      lr_multipliers: {variable path: learning-rate factor}; others get 1.
      ema_momentum: keep a moving average of the weights with this decay
        (see FusedAdamW); 0: none.
    """
    schedule = WarmupLinearDecay(learning_rate, total_steps, int(total_steps * warmup_fraction))
    optimizer = FusedAdamW(
        learning_rate=schedule,
        weight_decay=weight_decay,
        global_clipnorm=clip_norm or None,
        epsilon=1e-6,
        lr_multipliers=lr_multipliers,
        use_ema=ema_momentum > 0,
        ema_momentum=ema_momentum or 0.99,
    )
    optimizer.exclude_from_weight_decay(var_names=NO_DECAY_NAMES)
    if loss_scale:
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    return optimizer
