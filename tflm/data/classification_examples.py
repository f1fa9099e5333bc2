"""Labelled text examples for classification, read from files or TFDS."""

import collections
import dataclasses

from absl import logging

from tflm.data import table_reader
from tflm.data import tfds_source
from tflm.errors import UserError


@dataclasses.dataclass
class ClassificationExamples:
    """Parallel columns: `texts[k][i]` is text field k of example i."""

    texts: list  # One list of str per text field (1, or 2 for pairs).
    labels: list  # str labels.
    source: str = ""

    def __len__(self):
        return len(self.labels)


@dataclasses.dataclass(frozen=True)
class ColumnSpec:
    """Which columns hold the text(s) and the label; names or 0-based indices."""

    text_fields: tuple
    label_field: str

    @classmethod
    def from_flags(cls, text_fields, label_field):
        fields = tuple(f.strip() for f in text_fields if f.strip())
        if not 1 <= len(fields) <= 2:
            raise UserError(
                f"--text_fields={','.join(text_fields)}: give one field, or two for sentence pairs"
            )
        if not label_field:
            raise UserError("--label_field is empty")
        return cls(fields, label_field.strip())


def _field_value(row, field, path, number):
    if isinstance(row, dict):
        if field in row:
            return row[field]
        if field.isdigit() and int(field) < len(row):
            return list(row.values())[int(field)]
        raise _BadRow("missing column", f"{path}:{number}: missing column {field!r} (row has {sorted(row)})")
    if not field.isdigit():
        raise UserError(
            f"{path}: column {field!r} given by name but the file is read without a "
            "header (--noheader); use 0-based column indices"
        )
    index = int(field)
    if index >= len(row):
        raise _BadRow("missing column", f"{path}:{number}: missing column {index} (row has {len(row)} columns)")
    return row[index]


class _BadRow(Exception):
    def __init__(self, reason, message):
        super().__init__(message)
        self.reason = reason


def _as_text(value):
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def read_classification_examples(
    source,
    columns,
    label_vocabulary=None,
    data_format="auto",
    header=True,
    encoding="utf-8",
    split="train",
    skip_bad_rows=False,
):
    """Reads labelled examples from a file or a `tfds:NAME` source.

    Args:
      source: a csv/tsv/jsonl path (maybe .gz) or `tfds:NAME`.
      columns: ColumnSpec.
      label_vocabulary: when given, labels outside it are bad rows.
      data_format, header, encoding: see `table_reader.read_rows`.
      split: TFDS split (ignored for files).
      skip_bad_rows: skip bad rows and report the count instead of failing.
    """
    if tfds_source.is_tfds(source):
        rows = tfds_source.read_rows(source, split, columns.text_fields + (columns.label_field,))
        path = f"{source} split {split}"
    else:
        rows = table_reader.read_rows(source, data_format, header, encoding)
        path = source
    texts = [[] for _ in columns.text_fields]
    labels = []
    skipped = collections.Counter()
    for number, row in rows:
        try:
            values = [_as_text(_field_value(row, f, path, number)) for f in columns.text_fields]
            label = _as_text(_field_value(row, columns.label_field, path, number)).strip()
            for field, value in zip(columns.text_fields, values):
                if not value.strip():
                    raise _BadRow("empty text", f"{path}:{number}: empty text in column {field!r}")
            if not label:
                raise _BadRow("empty label", f"{path}:{number}: empty label in column {columns.label_field!r}")
            if label_vocabulary is not None and label not in label_vocabulary:
                raise _BadRow(
                    "unknown label",
                    f"{path}:{number}: label {label!r} is not in the label set {label_vocabulary.names}",
                )
        except _BadRow as bad:
            if not skip_bad_rows:
                raise UserError(f"{bad} (or pass --skip_bad_rows)") from None
            skipped[bad.reason] += 1
            continue
        for column, value in zip(texts, values):
            column.append(value)
        labels.append(label)
    if skipped:
        details = ", ".join(f"{n} {reason}" for reason, n in sorted(skipped.items()))
        logging.warning("%s: skipped %d bad rows (%s)", path, sum(skipped.values()), details)
    if not labels:
        raise UserError(f"{path}: no usable examples")
    return ClassificationExamples(texts, labels, source=path)
