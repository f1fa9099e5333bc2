"""`tflm <command> [--flags]`: one entry point for every pipeline.

  tflm predict --model=savedmodels/sst2 "a great film"
  tflm classify --flagfile=sst2.flags

Each command is also its own console script (`tflm-classify`, ...).
"""

import importlib
import sys

COMMANDS = {
    "classify": "pipelines.classify",
    "translate": "pipelines.translate",
    "summarize": "pipelines.summarize",
    "generate-text": "pipelines.generate_text",
    "pretrain": "pipelines.pretrain",
    "tune": "pipelines.tune",
    "select-model": "pipelines.select_model",
    "predict": "pipelines.predict",
}


def run():
    if len(sys.argv) < 2 or sys.argv[1] not in COMMANDS:
        asked_for_help = len(sys.argv) > 1 and sys.argv[1] in ("-h", "--help", "help")
        problem = "" if len(sys.argv) < 2 or asked_for_help else f"unknown command {sys.argv[1]!r}; "
        print(f"{problem}usage: tflm {{{','.join(COMMANDS)}}} [--flags]  (tflm <command> --help for its flags)",
              file=sys.stdout if asked_for_help else sys.stderr)
        sys.exit(0 if asked_for_help else 2)
    command = sys.argv.pop(1)
    sys.argv[0] = f"tflm {command}"
    # Only the chosen pipeline is imported: `tflm predict` never loads Keras.
    importlib.import_module(COMMANDS[command]).run()


if __name__ == "__main__":
    run()
