"""The error type for problems with what the user gave us."""


class UserError(Exception):
    """A bad flag, file, row or path.

    Pipelines print these as one line (no traceback) and exit non-zero; the
    message must name the offending thing (flag, file:line, column, path).
    """
