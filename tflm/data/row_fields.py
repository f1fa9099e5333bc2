"""Pulling named or numbered fields out of rows, and the bad-row policy.

Shared by every example reader: a bad row is an error naming `file:line`,
unless the user asked to skip bad rows, in which case the skips are counted
by reason and reported once.
"""

import collections

from absl import logging

from tflm.errors import UserError


class BadRow(Exception):
    def __init__(self, reason, message):
        super().__init__(message)
        self.reason = reason


def field_value(row, field, path, number):
    """The value of `field` (a name, or a 0-based index) in a dict or list row."""
    if isinstance(row, dict):
        if field in row:
            return row[field]
        if field.isdigit() and int(field) < len(row):
            return list(row.values())[int(field)]
        raise BadRow("missing column", f"{path}:{number}: missing column {field!r} (row has {sorted(row)})")
    if not field.isdigit():
        raise UserError(
            f"{path}: column {field!r} given by name but the file is read without a "
            "header (--noheader); use 0-based column indices"
        )
    index = int(field)
    if index >= len(row):
        raise BadRow("missing column", f"{path}:{number}: missing column {index} (row has {len(row)} columns)")
    return row[index]


# A longer text is almost always a broken file (an unclosed quote that
# swallowed many lines); real texts this long would be truncated to the
# model's sequence length anyway.
MAX_TEXT_CHARS = 200_000


def check_text_length(text, location, what):
    """Raises BadRow if `text` (at `location`, "file:line") is over MAX_TEXT_CHARS."""
    if len(text) > MAX_TEXT_CHARS:
        raise BadRow("oversized text", f"{location}: {what} is {len(text):,} characters, over the "
                     f"{MAX_TEXT_CHARS:,} limit (an unclosed quote in the file?)")


def as_text(value):
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


class BadRowPolicy:
    """Raises on a bad row, or counts it when `skip` is set."""

    def __init__(self, path, skip):
        self.path = path
        self.skip = skip
        self.skipped = collections.Counter()

    def reject(self, bad):
        if not self.skip:
            raise UserError(f"{bad} (or pass --skip_bad_rows)") from None
        self.skipped[bad.reason] += 1

    def report(self):
        if self.skipped:
            details = ", ".join(f"{n} {reason}" for reason, n in sorted(self.skipped.items()))
            logging.warning("%s: skipped %d bad rows (%s)", self.path, sum(self.skipped.values()), details)
