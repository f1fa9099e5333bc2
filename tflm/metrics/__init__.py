"""Evaluation metrics."""

from tflm.metrics.classification_metrics import classification_report
from tflm.metrics.classification_metrics import format_classification_report
