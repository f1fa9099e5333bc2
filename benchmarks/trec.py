"""Fine-tune the bundled MiniLM on TREC-6 (coarse question classes); test accuracy.

  python benchmarks/trec.py --data_dir=../shared/data/trec

The original files are `COARSE:fine question ...` lines in latin-1; they are
rewritten as latin-1 TSV in --work_dir (not in the repo) and read with
--encoding=latin-1. Target: test accuracy >= 96. The test set is scored once, on the final
model (no checkpoint selection on it). Writes
benchmarks/results/trec.json.
"""

import os
import sys

from absl import app
from absl import flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks import classification_run  # noqa: E402
from benchmarks.common import convert_trec  # noqa: E402

flags.DEFINE_string("data_dir", os.path.join("..", "shared", "data", "trec"), "Folder with train_5500.label and TREC_10.label.")
flags.DEFINE_string("work_dir", "/tmp/tflm_bench/trec", "Converted data, model dir and export root.")
flags.DEFINE_integer("num_epochs", 5, "Epochs.")
flags.DEFINE_float("learning_rate", 1e-4, "Peak learning rate.")
flags.DEFINE_integer("batch_size", 32, "Global batch size.")
FLAGS = flags.FLAGS


def main(argv):
    del argv
    os.makedirs(FLAGS.work_dir, exist_ok=True)
    train = os.path.join(FLAGS.work_dir, "train.tsv")
    test = os.path.join(FLAGS.work_dir, "test.tsv")
    convert_trec(os.path.join(FLAGS.data_dir, "train_5500.label"), train)
    questions = convert_trec(os.path.join(FLAGS.data_dir, "TREC_10.label"), test)
    model_dir = os.path.join(FLAGS.work_dir, "model")
    export_root = os.path.join(FLAGS.work_dir, "savedmodels")
    settings = [
        f"--train_data={train}", f"--eval_data={test}", "--text_fields=question", "--encoding=latin-1",
        f"--num_epochs={FLAGS.num_epochs}", f"--learning_rate={FLAGS.learning_rate}",
        f"--batch_size={FLAGS.batch_size}", "--max_seq_length=64",
        # TREC has no dev split: evaluate only the final model, so the test
        # set never picks a checkpoint.
        "--eval_every_steps=1000000",
    ]
    wall = classification_run.run_classify(
        settings + [f"--model_dir={model_dir}", f"--export_dir={export_root}", "--export_name=trec"],
        FLAGS.work_dir + ".log",
    )
    classification_run.summarize("trec", model_dir, classification_run.latest_export(export_root, "trec"),
                                 wall, FLAGS.batch_size, settings, questions)


if __name__ == "__main__":
    app.run(main)
