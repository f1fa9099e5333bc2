"""Tasks: what to build, feed, optimise and measure for one kind of problem."""

from tflm.tasks.text_classification_task import TextClassificationConfig
from tflm.tasks.text_classification_task import TextClassificationTask
from tflm.tasks.seq2seq_task import Seq2SeqConfig
from tflm.tasks.seq2seq_task import Seq2SeqTask
from tflm.tasks.language_model_task import LanguageModelConfig
from tflm.tasks.language_model_task import LanguageModelTask
