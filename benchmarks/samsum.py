"""Dialogue summarization on SAMSum: warm-started MiniLM2MiniLM, ROUGE on the test split.

  python benchmarks/samsum.py --data_dir=../shared/data/samsum

Target: ROUGE-1/2/L >= 48 / 23 / 40 (the bart-base figure). Trains with the
summarize pipeline (validation on validation.jsonl), then decodes test.jsonl
with the exported SavedModel. Run again on a finished --work_dir with other
decoding flags, it trains nothing: it re-evaluates validation, exports a new
version and decodes test with it. Prints a table and writes
benchmarks/results/samsum.json. The one train row with an empty dialogue
(id 13828807, present in the original corpus) is skipped and reported by
--skip_bad_rows.
"""

import json
import os
import sys

from absl import app
from absl import flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks import seq2seq_run  # noqa: E402
from benchmarks.common import latest_export  # noqa: E402
from benchmarks.common import run_pipeline  # noqa: E402

flags.DEFINE_string("data_dir", os.path.join("..", "shared", "data", "samsum"), "SAMSum folder.")
flags.DEFINE_string("work_dir", "/tmp/tflm_bench/samsum", "Model dir and export root for this run.")
flags.DEFINE_integer("num_epochs", 3, "Epochs.")
flags.DEFINE_integer("train_steps", 0, "Total steps (overrides --num_epochs when > 0).")
flags.DEFINE_float("learning_rate", 2e-4, "Peak learning rate.")
flags.DEFINE_integer("batch_size", 32, "Global batch size.")
flags.DEFINE_integer("max_source_length", 256, "Dialogue tokens.")
flags.DEFINE_integer("beam_size", 4, "Beams for evaluation and export.")
flags.DEFINE_float("length_penalty", 1.2, "See pipelines/summarize.py --length_penalty (1.2: chosen on validation).")
flags.DEFINE_integer("no_repeat_ngram_size", 3, "See pipelines/summarize.py --no_repeat_ngram_size.")
flags.DEFINE_string("cross_attention_init", "auto", "See pipelines/summarize.py --cross_attention_init.")
flags.DEFINE_integer("test_examples", 0, "Score only the first N test dialogues (0: all 819).")
FLAGS = flags.FLAGS


def main(argv):
    del argv
    d = os.path.abspath(FLAGS.data_dir)
    model_dir = os.path.join(FLAGS.work_dir, "model")
    export_root = os.path.join(FLAGS.work_dir, "savedmodels")
    settings = [
        f"--train_data={d}/train.jsonl.gz", f"--eval_data={d}/validation.jsonl", "--skip_bad_rows",
        "--source_field=dialogue", "--target_field=summary",
        f"--num_epochs={FLAGS.num_epochs}", f"--train_steps={FLAGS.train_steps}",
        f"--learning_rate={FLAGS.learning_rate}", f"--batch_size={FLAGS.batch_size}",
        f"--max_source_length={FLAGS.max_source_length}", "--max_target_length=64",
        f"--beam_size={FLAGS.beam_size}", f"--length_penalty={FLAGS.length_penalty}",
        f"--no_repeat_ngram_size={FLAGS.no_repeat_ngram_size}", f"--cross_attention_init={FLAGS.cross_attention_init}",
        "--checkpoint_every_steps=500", "--eval_every_steps=100000",
    ]
    wall = run_pipeline("summarize", settings + [
        f"--model_dir={model_dir}", f"--export_dir={export_root}", "--export_name=samsum"],
        FLAGS.work_dir + ".log")
    with open(f"{d}/test.jsonl", encoding="utf-8") as f:
        rows = [json.loads(line) for line in f if line.strip()]
    rows = rows[:FLAGS.test_examples or None]
    seq2seq_run.summarize("samsum", model_dir, latest_export(export_root, "samsum"), wall, FLAGS.batch_size,
                          settings, [r["dialogue"] for r in rows], [r["summary"] for r in rows], examples_out=5)


if __name__ == "__main__":
    app.run(main)
