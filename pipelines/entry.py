"""How every pipeline starts and reports user errors."""

import sys

from absl import app
from absl import logging

from tflm.errors import Preempted
from tflm.errors import UserError


def run_pipeline(main, takes_arguments=False):
    """`app.run(main)`: a UserError is one line and exit 1; a preemption stop exits 143.

    Positional arguments are refused unless `takes_arguments` (the tuner
    passes what follows `--` on to its trials).
    """

    def guarded(argv):
        if len(argv) > 1 and not takes_arguments:
            raise app.UsageError(f"unexpected arguments {argv[1:]}; all options are --flags")
        try:
            main(argv)
        except UserError as e:
            logging.flush()
            print(f"error: {e}", file=sys.stderr, flush=True)
            sys.exit(1)
        except Preempted as e:
            logging.flush()
            print(f"stopped: {e}", file=sys.stderr, flush=True)
            sys.exit(e.exit_code)

    app.run(guarded)
