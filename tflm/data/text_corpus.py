"""Raw text for language-model pretraining, read from files or TFDS.

A corpus spec is one of:
  * a plain-text file, one document per line (`.txt`, `.txt.gz`, or any file
    with --data_format=text); blank lines separate nothing and are skipped;
  * a csv / tsv / jsonl file (`.gz` allowed) with the text in --text_field;
  * `tfds:NAME` with --text_field (e.g. `tfds:samsum` with `dialogue`).
Several specs may be joined with commas; their texts are concatenated.
"""

import dataclasses

from tflm.data import table_reader
from tflm.data import tfds_source
from tflm.data.row_fields import BadRow
from tflm.data.row_fields import BadRowPolicy
from tflm.data.row_fields import as_text
from tflm.data.row_fields import check_text_length
from tflm.data.row_fields import field_value
from tflm.errors import UserError

TABLE_FORMATS = table_reader.FORMATS


@dataclasses.dataclass
class TextCorpus:
    texts: list
    origin: str = ""  # Where they came from, for messages.

    def __len__(self):
        return len(self.texts)


def _is_plain_text(path, data_format):
    if data_format != "auto":
        return data_format == "text"
    return table_reader.extension(path) == "txt"


def _rows(spec, text_field, data_format, header, encoding, split):
    if tfds_source.is_tfds(spec):
        return tfds_source.read_rows(spec, split, (text_field,)), f"{spec} split {split}", text_field
    if _is_plain_text(spec, data_format):
        table_reader.check_data_file(spec)
        lines = table_reader.decoded_lines(spec, encoding)
        # Blank lines are paragraph breaks in plain text, not bad rows.
        rows = ((n, {"text": line.rstrip("\r\n")}) for n, line in enumerate(lines, start=1) if line.strip())
        return rows, spec, "text"
    return (table_reader.read_rows(spec, data_format, header, encoding, table_reader.FORMATS + ("text",)), spec,
            text_field)


def read_text_corpus(specs, text_field="text", data_format="auto", header=True, encoding="utf-8",
                     split="train", skip_bad_rows=False):
    """Reads the texts of one or more comma-separated corpus specs (see module docstring)."""
    texts = []
    for spec in (s.strip() for s in specs.split(",") if s.strip()):
        rows, where, field = _rows(spec, text_field, data_format, header, encoding, split)
        policy = BadRowPolicy(where, skip_bad_rows)
        for number, row in rows:
            try:
                text = as_text(field_value(row, field, where, number))
                if not text.strip():
                    raise BadRow("empty text", f"{where}:{number}: empty text in column {field!r}")
                check_text_length(text, f"{where}:{number}", f"the text in column {field!r}")
            except BadRow as bad:
                policy.reject(bad)
                continue
            texts.append(text)
        policy.report()
    if not texts:
        raise UserError(f"{specs}: empty corpus (no non-empty text)")
    return TextCorpus(texts, origin=specs)
