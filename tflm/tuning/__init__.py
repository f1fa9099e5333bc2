"""Hyperparameter search (keras-tuner over pipeline runs) and model selection."""

from tflm.tuning.pipeline_tuner import TUNERS
from tflm.tuning.pipeline_tuner import BudgetSpent
from tflm.tuning.pipeline_tuner import PipelineTuner
from tflm.tuning.pipeline_tuner import build_oracle
