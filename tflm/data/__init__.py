"""Data: reading examples, label sets, tokenized tf.data pipelines."""

from tflm.data.classification_examples import ClassificationExamples
from tflm.data.classification_examples import ColumnSpec
from tflm.data.classification_examples import read_classification_examples
from tflm.data.label_vocabulary import LabelVocabulary
from tflm.data.seq2seq_examples import Seq2SeqExamples
from tflm.data.seq2seq_examples import read_seq2seq_examples
from tflm.data.tokenized_dataset import SequenceGroup
from tflm.data.tokenized_dataset import TokenizedDataset
from tflm.data.tokenized_dataset import run_in_batches
from tflm.data.tokenized_dataset import tokenize
from tflm.data.tokenized_dataset import trim_to_longest
