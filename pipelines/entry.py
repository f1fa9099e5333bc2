"""How every pipeline starts and reports user errors."""

import sys

from absl import app
from absl import logging

from tflm.errors import UserError


def run_pipeline(main):
    """`app.run(main)`, printing a UserError as one line and exiting 1."""

    def guarded(argv):
        if len(argv) > 1:
            raise app.UsageError(f"unexpected arguments {argv[1:]}; all options are --flags")
        try:
            main(argv)
        except UserError as e:
            logging.flush()
            print(f"error: {e}", file=sys.stderr, flush=True)
            sys.exit(1)

    app.run(guarded)
