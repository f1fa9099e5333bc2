"""Tasks: what to build, feed, optimise and measure for one kind of problem."""

from tflm.tasks.text_classification_task import TextClassificationConfig
from tflm.tasks.text_classification_task import TextClassificationTask
from tflm.tasks.seq2seq_task import Seq2SeqConfig
from tflm.tasks.seq2seq_task import Seq2SeqTask
