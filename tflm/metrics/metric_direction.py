"""Which way a validation metric improves: one answer for the trainer, a search and a model selection."""

# Metrics that improve downwards (also e.g. "eval_loss"); every other metric tflm reports improves upwards.
MINIMISED = ("loss", "perplexity")


def metric_direction(metric):
    """"min" for loss-like metrics, else "max"."""
    return "min" if any(word in metric for word in MINIMISED) else "max"
