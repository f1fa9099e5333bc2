"""Training: runtime (strategy, precision), optimizer, the training loop."""

from tflm.training.layer_lr_decay import layer_lr_multipliers
from tflm.training.optimization import create_optimizer
from tflm.training.runtime import RuntimeConfig
from tflm.training.runtime import set_up_runtime
from tflm.training.trainer import NAN_POLICIES
from tflm.training.trainer import Trainer
from tflm.training.trainer import TrainerConfig
from tflm.training.trainer import restore_for_inference
from tflm.training.trainer import latest_checkpoint
