"""The error type for problems with what the user gave us."""


class UserError(Exception):
    """A bad flag, file, row or path.

    Pipelines print these as one line (no traceback) and exit non-zero; the
    message must name the offending thing (flag, file:line, column, path).
    """


class TrainingDiverged(UserError):
    """The training loss became NaN or Inf; the message says what to change."""


class Preempted(Exception):
    """Training stopped on request (SIGTERM) after saving a checkpoint.

    Pipelines exit with status 143 (128 + SIGTERM), as a killed process
    would, so schedulers treat the run as interrupted, not finished.
    """

    exit_code = 143
