"""Full fine-tune of the bundled MiniLM-L6-H384 on SST-2; dev accuracy.

  python benchmarks/sst2.py --data_dir=../shared/data/sst2

Target: dev accuracy >= 91.5 (published MiniLM-L6 figure). Prints a table and
writes benchmarks/results/sst2.json.
"""

import csv
import os
import sys

from absl import app
from absl import flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks import classification_run  # noqa: E402

flags.DEFINE_string("data_dir", os.path.join("..", "shared", "data", "sst2"), "Folder with train.tsv.gz and dev.tsv.")
flags.DEFINE_string("work_dir", "/tmp/tflm_bench/sst2", "Model dir and export root for this run.")
flags.DEFINE_integer("num_epochs", 3, "Epochs.")
flags.DEFINE_float("learning_rate", 1e-4, "Peak learning rate.")
flags.DEFINE_float("layer_lr_decay", 1.0, "Layer-wise learning-rate decay (see pipelines/classify.py).")
flags.DEFINE_float("ema_momentum", 0.0, "Weight averaging (see pipelines/classify.py); 0: off.")
flags.DEFINE_float("warmup_fraction", 0.1, "Fraction of steps for linear warmup.")
flags.DEFINE_float("weight_decay", 0.01, "AdamW weight decay.")
flags.DEFINE_float("dropout", 0.1, "Dropout before the classification layer.")
flags.DEFINE_string("freeze", "", "Weights kept frozen (see pipelines/classify.py --freeze), e.g. embeddings.")
flags.DEFINE_integer("seed", 42, "Seed for initialisation, dropout and data order.")
flags.DEFINE_integer("batch_size", 32, "Global batch size.")
flags.DEFINE_integer("max_seq_length", 64, "Tokens per sentence.")
flags.DEFINE_string("pooling", "mean", "Sentence vector (see pipelines/classify.py --pooling).")
flags.DEFINE_integer("eval_every_steps", 500, "Dev evaluation (and checkpoint) interval; the best one is kept.")
FLAGS = flags.FLAGS


def main(argv):
    del argv
    data_dir = os.path.abspath(FLAGS.data_dir)
    model_dir = os.path.join(FLAGS.work_dir, "model")
    export_root = os.path.join(FLAGS.work_dir, "savedmodels")
    settings = [
        f"--train_data={data_dir}/train.tsv.gz", f"--eval_data={data_dir}/dev.tsv",
        f"--num_epochs={FLAGS.num_epochs}", f"--learning_rate={FLAGS.learning_rate}",
        f"--batch_size={FLAGS.batch_size}", f"--max_seq_length={FLAGS.max_seq_length}",
        f"--pooling={FLAGS.pooling}", f"--layer_lr_decay={FLAGS.layer_lr_decay}",
        f"--warmup_fraction={FLAGS.warmup_fraction}", f"--weight_decay={FLAGS.weight_decay}",
        f"--dropout={FLAGS.dropout}", f"--ema_momentum={FLAGS.ema_momentum}", f"--freeze={FLAGS.freeze}",
        f"--seed={FLAGS.seed}",
        f"--eval_every_steps={FLAGS.eval_every_steps}", f"--checkpoint_every_steps={FLAGS.eval_every_steps}",
    ]
    wall = classification_run.run_classify(
        settings + [f"--model_dir={model_dir}", f"--export_dir={export_root}", "--export_name=sst2"],
        os.path.join(FLAGS.work_dir + ".log"),
    )
    with open(os.path.join(data_dir, "dev.tsv"), encoding="utf-8") as f:
        sentences = [row["sentence"] for row in csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE)]
    classification_run.summarize(
        "sst2", model_dir, classification_run.latest_export(export_root, "sst2"), wall,
        FLAGS.batch_size, settings, sentences,
    )


if __name__ == "__main__":
    app.run(main)
