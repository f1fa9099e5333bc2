"""(source, target) text pairs for translation and summarization.

A data spec is one of:
  * `SOURCE_FILE,TARGET_FILE`: parallel plain-text files, one example per line
    (e.g. `train.en.gz,train.de.gz`; `.gz` allowed). Both must have the same
    number of lines.
  * a csv / tsv / jsonl file (`.gz` allowed) with --source_field / --target_field.
  * `tfds:NAME` (e.g. `tfds:wmt14_translate/de-en`, `tfds:samsum`) with the
    same field flags.
"""

import dataclasses
import itertools

from tflm.data import table_reader
from tflm.data import tfds_source
from tflm.data.row_fields import BadRow
from tflm.data.row_fields import BadRowPolicy
from tflm.data.row_fields import as_text
from tflm.data.row_fields import check_text_length
from tflm.data.row_fields import field_value
from tflm.errors import UserError


@dataclasses.dataclass
class Seq2SeqExamples:
    sources: list
    targets: list
    origin: str = ""  # Where they came from, for messages.

    def __len__(self):
        return len(self.sources)


def parallel_files(spec):
    """(source path, target path) if `spec` names two parallel text files, else None."""
    if tfds_source.is_tfds(spec) or spec.count(",") != 1:
        return None
    return tuple(part.strip() for part in spec.split(","))


def _parallel_rows(source_path, target_path, encoding):
    source_lines = table_reader.decoded_lines(source_path, encoding)
    target_lines = table_reader.decoded_lines(target_path, encoding)
    for number, (source, target) in enumerate(itertools.zip_longest(source_lines, target_lines), start=1):
        if source is None or target is None:
            longer, shorter = (source_path, target_path) if target is None else (target_path, source_path)
            raise UserError(
                f"{longer}: has more lines than {shorter} ({shorter} ends at line {number - 1}); "
                "parallel files need one example per line in both"
            )
        yield number, {"source": source.rstrip("\r\n"), "target": target.rstrip("\r\n")}


def read_seq2seq_examples(spec, source_field="source", target_field="target", data_format="auto",
                          header=True, encoding="utf-8", split="train", skip_bad_rows=False):
    """Reads (source, target) pairs; bad rows fail with file:line or are skipped and counted."""
    files = parallel_files(spec)
    if files:
        rows = _parallel_rows(files[0], files[1], encoding)
        fields = ("source", "target")
        where = {"source": files[0], "target": files[1]}
    elif tfds_source.is_tfds(spec):
        rows = tfds_source.read_rows(spec, split, (source_field, target_field))
        fields = (source_field, target_field)
        where = dict.fromkeys(("source", "target"), f"{spec} split {split}")
    else:
        rows = table_reader.read_rows(spec, data_format, header, encoding)
        fields = (source_field, target_field)
        where = dict.fromkeys(("source", "target"), spec)
    sources, targets = [], []
    policy = BadRowPolicy(spec, skip_bad_rows)
    for number, row in rows:
        try:
            values = []
            for side, field in zip(("source", "target"), fields):
                value = as_text(field_value(row, field, where[side], number))
                column = "" if files else f" (column {field!r})"
                if not value.strip():
                    raise BadRow(f"empty {side}", f"{where[side]}:{number}: empty {side}{column}")
                check_text_length(value, f"{where[side]}:{number}", f"the {side}{column}")
                values.append(value)
        except BadRow as bad:
            policy.reject(bad)
            continue
        sources.append(values[0])
        targets.append(values[1])
    policy.report()
    if not sources:
        raise UserError(f"{spec}: no usable examples")
    return Seq2SeqExamples(sources, targets, origin=spec)

