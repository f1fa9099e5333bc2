"""Labelled text examples for classification, read from files or TFDS."""

import dataclasses

from tflm.data import table_reader
from tflm.data.row_fields import BadRow
from tflm.data.row_fields import BadRowPolicy
from tflm.data.row_fields import as_text
from tflm.data.row_fields import check_text_length
from tflm.data.row_fields import field_value
from tflm.data import tfds_source
from tflm.errors import UserError


@dataclasses.dataclass
class ClassificationExamples:
    """Parallel columns: `texts[k][i]` is text field k of example i."""

    texts: list  # One list of str per text field (1, or 2 for pairs).
    labels: list  # str labels.
    origin: str = ""  # Where they came from, for messages.

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
    policy = BadRowPolicy(path, skip_bad_rows)
    for number, row in rows:
        try:
            values = [as_text(field_value(row, f, path, number)) for f in columns.text_fields]
            label = as_text(field_value(row, columns.label_field, path, number)).strip()
            for field, value in zip(columns.text_fields, values):
                if not value.strip():
                    raise BadRow("empty text", f"{path}:{number}: empty text in column {field!r}")
                check_text_length(value, f"{path}:{number}", f"the text in column {field!r}")
            if not label:
                raise BadRow("empty label", f"{path}:{number}: empty label in column {columns.label_field!r}")
            if label_vocabulary is not None and label not in label_vocabulary:
                raise BadRow(
                    "unknown label",
                    f"{path}:{number}: label {label!r} is not in the label set {label_vocabulary.names}",
                )
        except BadRow as bad:
            policy.reject(bad)
            continue
        for column, value in zip(texts, values):
            column.append(value)
        labels.append(label)
    policy.report()
    if not labels:
        raise UserError(f"{path}: no usable examples")
    return ClassificationExamples(texts, labels, origin=path)
