"""Evaluation metrics."""

from tflm.metrics.classification_metrics import CLASSIFICATION_METRICS
from tflm.metrics.classification_metrics import classification_report
from tflm.metrics.classification_metrics import format_classification_report
from tflm.metrics.generation_metrics import GENERATION_METRICS
from tflm.metrics.generation_metrics import format_generation_report
from tflm.metrics.generation_metrics import generation_report
from tflm.metrics.metric_direction import metric_direction
