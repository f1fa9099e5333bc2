"""AdamW with linear warmup and linear decay, as in BERT fine-tuning."""

import keras

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


def create_optimizer(learning_rate, total_steps, warmup_fraction=0.1, weight_decay=0.01,
                     clip_norm=1.0, loss_scale=False):
    """AdamW over the schedule above; weight decay skips bias and LayerNorm.

    Args:
      loss_scale: wrap in a LossScaleOptimizer (needed for mixed_float16).
    """
    schedule = WarmupLinearDecay(learning_rate, total_steps, int(total_steps * warmup_fraction))
    optimizer = keras.optimizers.AdamW(
        learning_rate=schedule,
        weight_decay=weight_decay,
        global_clipnorm=clip_norm or None,
        epsilon=1e-6,
    )
    optimizer.exclude_from_weight_decay(var_names=NO_DECAY_NAMES)
    if loss_scale:
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    return optimizer
