"""The ordered set of class labels a classifier predicts."""

import json
import os

import tensorflow as tf

from tflm import run_files
from tflm.errors import UserError


class LabelVocabulary:
    """Maps string labels to ids and back; saved as JSON beside checkpoints."""

    FILENAME = "labels.json"

    def __init__(self, names):
        names = [str(n) for n in names]
        if len(names) < 2:
            raise UserError(f"need at least 2 labels, got {names}")
        if len(set(names)) != len(names):
            raise UserError(f"duplicate labels in {names}")
        self.names = names
        self._ids = {name: i for i, name in enumerate(names)}

    @classmethod
    def from_labels(cls, labels):
        """Sorted distinct labels; numerically when all are integers."""
        distinct = set(labels)
        if all(_is_int(label) for label in distinct):
            return cls(sorted(distinct, key=int))
        return cls(sorted(distinct))

    def __len__(self):
        return len(self.names)

    def __contains__(self, label):
        return label in self._ids

    def __eq__(self, other):
        return isinstance(other, LabelVocabulary) and self.names == other.names

    def id(self, label):
        return self._ids[label]

    def save(self, directory):
        tf.io.gfile.makedirs(directory)
        run_files.write_json(os.path.join(directory, self.FILENAME), {"labels": self.names})

    @classmethod
    def load(cls, directory):
        path = os.path.join(directory, cls.FILENAME)
        if not tf.io.gfile.exists(path):
            return None
        with tf.io.gfile.GFile(path) as f:
            return cls(json.load(f)["labels"])


def _is_int(text):
    return text.lstrip("-").isdigit()
