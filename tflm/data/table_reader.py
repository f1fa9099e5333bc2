"""Reads csv / tsv / jsonl files (optionally .gz) as numbered rows.

Every problem is reported as `file:line: what`, so a user can open the file at
the right place. Rows come back as dicts (header or jsonl) or lists (no header).
"""

import csv
import gzip
import json
import os
import sys
import zlib

from tflm.errors import UserError

FORMATS = ("csv", "tsv", "jsonl")

# The csv module's default field limit (128 KiB) rejects long documents.
csv.field_size_limit(min(sys.maxsize, 2**31 - 1))


def extension(path):
    """The file's extension, lower case, without the dot and past a `.gz`: "tsv" for "dev.TSV.gz"."""
    name = path[:-3] if path.endswith(".gz") else path
    return os.path.splitext(name)[1].lower().lstrip(".")


def infer_format(path, data_format="auto", accepted=FORMATS):
    """The table format of `path`; `accepted`: the --data_format values the caller takes, for the message."""
    if data_format != "auto":
        if data_format not in FORMATS:
            raise UserError(f"--data_format={data_format}: expected auto or one of {FORMATS}")
        return data_format
    found = "jsonl" if extension(path) == "json" else extension(path)
    if found not in FORMATS:
        raise UserError(
            f"{path}: cannot tell the format from the extension; "
            f"set --data_format to one of {', '.join(accepted)}"
        )
    return found


def check_data_file(path):
    if not os.path.exists(path):
        raise UserError(f"{path}: no such file")
    if os.path.isdir(path):
        raise UserError(f"{path}: is a directory, expected a data file")


def _open_binary(path):
    check_data_file(path)
    try:
        return gzip.open(path, "rb") if path.endswith(".gz") else open(path, "rb")
    except OSError as e:
        raise UserError(f"{path}: cannot open ({e.strerror or e})")


def decoded_lines(path, encoding):
    """Yields text lines; a decode error names the file and line."""
    try:
        "".encode(encoding)
    except LookupError:
        raise UserError(f"--encoding={encoding}: unknown encoding") from None
    with _open_binary(path) as f:
        try:
            for number, raw in enumerate(f, start=1):
                try:
                    yield raw.decode(encoding)
                except UnicodeDecodeError as e:
                    raise UserError(
                        f"{path}:{number}: not valid {encoding} "
                        f"(byte {raw[e.start]:#04x} at column {e.start + 1}); "
                        "set --encoding (e.g. latin-1)"
                    ) from None
        except (OSError, EOFError, zlib.error) as e:
            raise UserError(f"{path}: read failed ({e})") from None


def read_rows(path, data_format="auto", header=True, encoding="utf-8", accepted=FORMATS):
    """Yields (line_number, row) for each data row of `path`.

    Args:
      path: local file path; `.gz` is decompressed.
      data_format: auto (from the extension), csv, tsv or jsonl.
      header: for csv/tsv, whether the first line names the columns.
      encoding: text encoding of the file.
      accepted: the --data_format values the caller takes, named when the extension is unknown.
    """
    check_data_file(path)
    data_format = infer_format(path, data_format, accepted)
    lines = decoded_lines(path, encoding)
    if data_format == "jsonl":
        yield from _jsonl_rows(path, lines)
    else:
        yield from _delimited_rows(path, lines, data_format, header)


def _jsonl_rows(path, lines):
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError as e:
            raise UserError(f"{path}:{number}: invalid JSON ({e.msg})") from None
        if not isinstance(row, dict):
            raise UserError(f"{path}:{number}: expected a JSON object per line")
        yield number, row


def _delimited_rows(path, lines, data_format, header):
    if data_format == "tsv":
        # GLUE-style TSV: quotes are ordinary characters.
        reader = csv.reader(lines, delimiter="\t", quoting=csv.QUOTE_NONE)
    else:
        reader = csv.reader(lines)
    names = None
    try:
        for row in reader:
            number = reader.line_num
            if not row or (len(row) == 1 and not row[0].strip()):
                continue
            if header and names is None:
                names = [name.strip() for name in row]
                continue
            yield number, dict(zip(names, row)) if header else row
    except csv.Error as e:
        raise UserError(f"{path}:{reader.line_num}: malformed {data_format} ({e})") from None
    if header and names is None:
        raise UserError(f"{path}: empty file (no header line)")

