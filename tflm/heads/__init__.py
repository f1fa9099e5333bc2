"""Task heads attached to a backbone."""

from tflm.heads.masked_mean_pooling import MaskedMeanPooling
from tflm.heads.text_classifier import POOLINGS
from tflm.heads.text_classifier import build_text_classifier
