"""English->German on Multi30k: warm-started MiniLM2MiniLM, BLEU on test_2016_flickr.

  python benchmarks/multi30k.py --data_dir=../shared/data/multi30k

Target: BLEU >= 38. Trains with the translate pipeline (validation on val),
then decodes test_2016_flickr with the exported SavedModel. Prints a table and
writes benchmarks/results/multi30k.json.
"""

import os
import sys

from absl import app
from absl import flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks import seq2seq_run  # noqa: E402
from benchmarks.common import latest_export  # noqa: E402
from benchmarks.common import run_pipeline  # noqa: E402

flags.DEFINE_string("data_dir", os.path.join("..", "shared", "data", "multi30k"), "Multi30k task 1 folder.")
flags.DEFINE_string("work_dir", "/tmp/tflm_bench/multi30k", "Model dir and export root for this run.")
flags.DEFINE_integer("num_epochs", 10, "Epochs (10 gave test BLEU 38.15, see benchmarks/README.md).")
flags.DEFINE_integer("train_steps", 0, "Total steps (overrides --num_epochs when > 0).")
flags.DEFINE_float("learning_rate", 2e-4, "Peak learning rate.")
flags.DEFINE_integer("batch_size", 32, "Global batch size.")
flags.DEFINE_integer("beam_size", 4, "Beams for evaluation and export.")
FLAGS = flags.FLAGS


def main(argv):
    del argv
    d = os.path.abspath(FLAGS.data_dir)
    model_dir = os.path.join(FLAGS.work_dir, "model")
    export_root = os.path.join(FLAGS.work_dir, "savedmodels")
    settings = [
        f"--train_data={d}/train.en.gz,{d}/train.de.gz", f"--eval_data={d}/val.en,{d}/val.de",
        f"--num_epochs={FLAGS.num_epochs}", f"--train_steps={FLAGS.train_steps}",
        f"--learning_rate={FLAGS.learning_rate}", f"--batch_size={FLAGS.batch_size}",
        "--target_vocabulary=sentencepiece", "--target_vocabulary_size=8000",
        "--max_source_length=64", "--max_target_length=64", f"--beam_size={FLAGS.beam_size}",
        "--checkpoint_every_steps=500", "--eval_every_steps=100000",
    ]
    wall = run_pipeline("translate", settings + [
        f"--model_dir={model_dir}", f"--export_dir={export_root}", "--export_name=multi30k"],
        FLAGS.work_dir + ".log")
    with open(f"{d}/test_2016_flickr.en", encoding="utf-8") as f:
        sources = [line.rstrip("\n") for line in f]
    with open(f"{d}/test_2016_flickr.de", encoding="utf-8") as f:
        references = [line.rstrip("\n") for line in f]
    seq2seq_run.summarize("multi30k", model_dir, latest_export(export_root, "multi30k"), wall,
                          FLAGS.batch_size, settings, sources, references, examples_out=10)


if __name__ == "__main__":
    app.run(main)
