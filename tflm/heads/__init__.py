"""Task heads attached to a backbone."""

from tflm.heads.masked_mean_pooling import MaskedMeanPooling
from tflm.heads.seq2seq_preprocessor import Seq2SeqPreprocessor
from tflm.heads.text_classifier import POOLINGS
from tflm.heads.text_classifier import build_text_classifier
from tflm.heads.warm_started_seq2seq_lm import WarmStartedSeq2SeqLM
from tflm.heads.warm_started_seq2seq_lm import build_warm_started_seq2seq
