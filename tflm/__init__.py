"""tflm: transfer learning for language models on Keras 3 / TensorFlow."""

__version__ = "0.1.0"
