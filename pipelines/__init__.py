"""absl entry points; each pipeline is also a console script."""

import os

# TensorFlow's C++ start-up chatter (CUDA probing, oneDNN notes) would bury
# the pipeline's own messages; warnings and errors still show.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")
