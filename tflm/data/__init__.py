"""Data: reading examples, label sets, tokenized tf.data pipelines."""

from tflm.data.classification_examples import ClassificationExamples
from tflm.data.classification_examples import ColumnSpec
from tflm.data.classification_examples import read_classification_examples
from tflm.data.label_vocabulary import LabelVocabulary
from tflm.data.tokenized_dataset import TokenizedDataset
from tflm.data.tokenized_dataset import tokenize
