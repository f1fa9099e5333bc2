"""Sample selection on SST-2 and TREC-6: accuracy vs budget per strategy, and MLM continued pretraining.

  python benchmarks/selection.py --sst2_dir=../shared/data/sst2 --trec_dir=../shared/data/trec

Part 1 runs `tflm-classify --select=STRATEGY --select_budget=N --seed=S` for
every strategy, budget and seed (the real pipeline, as a user would) and
reports the accuracy of the final model: SST-2 on dev, TREC-6 on its test
set. The candidate pool is a fixed random subset of each train file
(--pool_size; TREC's train file is small enough to use whole). Every run
trains the full MiniLM for max(--min_steps, --epochs passes over the
budget) steps, so budgets differ only in the data.

Part 2 continues pretraining the bundled MiniLM with masked-LM on the SST-2
training sentences (`tflm-pretrain`), reports validation perplexity before
and after, and fine-tunes the adapted backbone at one budget to see whether
downstream accuracy moves.

Runs are recorded one by one in benchmarks/results/selection.json, so an
interrupted benchmark continues where it stopped. Prints tables and writes a
PNG curve (benchmarks/results/selection.png).
"""

import csv
import gzip
import json
import math
import os
import statistics
import sys

from absl import app
from absl import flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks.common import RESULTS_DIR  # noqa: E402
from benchmarks.common import convert_trec  # noqa: E402
from benchmarks.common import run_pipeline  # noqa: E402
from tflm import run_files  # noqa: E402

flags.DEFINE_string("sst2_dir", os.path.join("..", "shared", "data", "sst2"), "Folder with train.tsv.gz, dev.tsv.")
flags.DEFINE_string("trec_dir", os.path.join("..", "shared", "data", "trec"), "Folder with TREC label files.")
flags.DEFINE_string("work_dir", "/tmp/tflm_bench/selection", "Model dirs and prepared data.")
flags.DEFINE_list("datasets", ["trec", "sst2"], "Data sets to run.")
flags.DEFINE_list("strategies", ["random", "diversity", "difficulty", "gradient"], "--select strategies.")
flags.DEFINE_list("budgets", ["64", "256", "1024"], "--select_budget values.")
flags.DEFINE_list("seeds", ["1", "2", "3"], "--seed values.")
flags.DEFINE_integer("pool_size", 4000, "SST-2 candidate pool: this many train sentences (fixed random subset).")
flags.DEFINE_integer("epochs", 4, "Passes over the selected examples.")
flags.DEFINE_integer("min_steps", 60, "At least this many steps per run.")
flags.DEFINE_integer("batch_size", 16, "Global batch size.")
flags.DEFINE_float("learning_rate", 1e-4, "Peak learning rate.")
flags.DEFINE_integer("pretrain_steps", 1000, "MLM steps of part 2 (0: skip part 2).")
flags.DEFINE_integer("pretrain_budget", 256, "Budget of the part-2 downstream comparison (random selection).")
FLAGS = flags.FLAGS
RESULTS_FILE = os.path.join(RESULTS_DIR, "selection.json")


def prepare(dataset):
    """(train pool file, eval file, extra classify flags) for `dataset`, written once into the work dir."""
    folder = os.path.join(FLAGS.work_dir, dataset)
    os.makedirs(folder, exist_ok=True)
    train, evaluation = os.path.join(folder, "pool.tsv"), os.path.join(folder, "eval.tsv")
    if dataset == "trec":
        if not os.path.exists(evaluation):
            convert_trec(os.path.join(FLAGS.trec_dir, "train_5500.label"), train)
            convert_trec(os.path.join(FLAGS.trec_dir, "TREC_10.label"), evaluation)
        return train, evaluation, ["--text_fields=question", "--encoding=latin-1", "--max_seq_length=32"]
    if not os.path.exists(train):
        import random

        with gzip.open(os.path.join(FLAGS.sst2_dir, "train.tsv.gz"), "rt", encoding="utf-8") as f:
            rows = list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
        header, rows = rows[0], rows[1:]
        random.Random(0).shuffle(rows)
        with open(train + ".tmp", "w", encoding="utf-8", newline="") as f:
            writer = csv.writer(f, delimiter="\t", quoting=csv.QUOTE_NONE, escapechar="\\", lineterminator="\n")
            writer.writerows([header] + rows[:FLAGS.pool_size])
        os.replace(train + ".tmp", train)
    return train, os.path.abspath(os.path.join(FLAGS.sst2_dir, "dev.tsv")), ["--max_seq_length=64"]


def load_results():
    if os.path.exists(RESULTS_FILE):
        with open(RESULTS_FILE, encoding="utf-8") as f:
            return json.load(f)
    return {"runs": [], "pretraining": None}


def save_results(results):
    os.makedirs(RESULTS_DIR, exist_ok=True)
    run_files.write_json(RESULTS_FILE, results)


def classify(name, train, evaluation, extra, budget, seed, more_flags=()):
    """One classify run (train + final evaluation); returns (accuracy, wall seconds)."""
    model_dir = os.path.join(FLAGS.work_dir, "runs", name)
    os.makedirs(os.path.dirname(model_dir), exist_ok=True)
    steps = max(FLAGS.min_steps, math.ceil(FLAGS.epochs * budget / FLAGS.batch_size))
    settings = [f"--train_data={train}", f"--eval_data={evaluation}", *extra, f"--model_dir={model_dir}",
                "--mode=train", f"--train_steps={steps}", f"--eval_every_steps={steps}",
                f"--batch_size={FLAGS.batch_size}", f"--learning_rate={FLAGS.learning_rate}", f"--seed={seed}",
                *more_flags]
    seconds = run_pipeline("classify", settings, os.path.join(FLAGS.work_dir, "runs", name + ".log"))
    with open(os.path.join(model_dir, "eval_results.json"), encoding="utf-8") as f:
        return json.load(f)["accuracy"], seconds, steps


def selection_grid(results):
    done = {(r["dataset"], r["strategy"], r["budget"], r["seed"]) for r in results["runs"]}
    for dataset in FLAGS.datasets:
        train, evaluation, extra = prepare(dataset)
        for budget in map(int, FLAGS.budgets):
            for strategy in FLAGS.strategies:
                for seed in map(int, FLAGS.seeds):
                    if (dataset, strategy, budget, seed) in done:
                        continue
                    name = f"{dataset}-{strategy}-{budget}-{seed}"
                    accuracy, seconds, steps = classify(
                        name, train, evaluation, extra, budget, seed,
                        [f"--select={strategy}", f"--select_budget={budget}"])
                    results["runs"].append({"dataset": dataset, "strategy": strategy, "budget": budget, "seed": seed,
                                            "accuracy": accuracy, "steps": steps, "seconds": seconds})
                    save_results(results)
                    print(f"{name}: accuracy {100 * accuracy:.2f} ({seconds:.0f} s)", flush=True)


def pretraining(results):
    """MLM on SST-2 train sentences, perplexity before/after, downstream accuracy with the adapted backbone."""
    if results["pretraining"] or not FLAGS.pretrain_steps:
        return
    train, evaluation, extra = prepare("sst2")
    model_dir = os.path.join(FLAGS.work_dir, "runs", "sst2-mlm")
    os.makedirs(os.path.dirname(model_dir), exist_ok=True)
    seconds = run_pipeline("pretrain", [
        f"--train_data={os.path.abspath(os.path.join(FLAGS.sst2_dir, 'train.tsv.gz'))}", f"--eval_data={evaluation}",
        "--text_field=sentence", f"--model_dir={model_dir}", f"--train_steps={FLAGS.pretrain_steps}",
        "--batch_size=32", "--max_seq_length=64", "--learning_rate=1e-4", "--eval_every_steps=500",
    ], os.path.join(FLAGS.work_dir, "runs", "sst2-mlm.log"))
    with open(os.path.join(model_dir, "eval_before_training.json"), encoding="utf-8") as f:
        before = json.load(f)
    with open(os.path.join(model_dir, "eval_results.json"), encoding="utf-8") as f:
        after = json.load(f)
    downstream = []
    for seed in map(int, FLAGS.seeds):
        accuracy, _, _ = classify(f"sst2-mlm-random-{FLAGS.pretrain_budget}-{seed}", train, evaluation, extra,
                                  FLAGS.pretrain_budget, seed,
                                  ["--select=random", f"--select_budget={FLAGS.pretrain_budget}",
                                   f"--backbone={os.path.join(model_dir, 'preset')}"])
        downstream.append(accuracy)
    results["pretraining"] = {"steps": FLAGS.pretrain_steps, "seconds": seconds, "perplexity_before": before,
                              "perplexity_after": after, "budget": FLAGS.pretrain_budget,
                              "adapted_accuracy_by_seed": downstream}
    save_results(results)


def report(results):
    by_cell = {}
    for r in results["runs"]:
        by_cell.setdefault((r["dataset"], r["strategy"], r["budget"]), []).append(100 * r["accuracy"])
    budgets = sorted({r["budget"] for r in results["runs"]})
    lines = []
    for dataset in sorted({r["dataset"] for r in results["runs"]}):
        lines.append(f"\n{dataset}: accuracy (%), mean ± std over seeds (n)")
        lines.append(f"  {'strategy':<12}" + "".join(f"{b:>18}" for b in budgets))
        for strategy in FLAGS.strategies:
            cells = []
            for budget in budgets:
                values = by_cell.get((dataset, strategy, budget), [])
                std = statistics.stdev(values) if len(values) > 1 else 0.0
                cells.append(f"{statistics.mean(values):.2f} ± {std:.2f} ({len(values)})" if values else "—")
            lines.append(f"  {strategy:<12}" + "".join(f"{c:>18}" for c in cells))
    pre = results.get("pretraining")
    if pre:
        base = by_cell.get(("sst2", "random", pre["budget"]), [])
        adapted = [100 * a for a in pre["adapted_accuracy_by_seed"]]
        lines.append(f"\nMLM on SST-2 train text, {pre['steps']} steps ({pre['seconds'] / 60:.1f} min): dev perplexity "
                     f"{pre['perplexity_before']['perplexity']:.1f} -> {pre['perplexity_after']['perplexity']:.2f}")
        lines.append(f"  SST-2 dev accuracy at budget {pre['budget']} (random): bundled MiniLM "
                     f"{statistics.mean(base) if base else float('nan'):.2f}, adapted {statistics.mean(adapted):.2f} "
                     f"(seeds: {', '.join(f'{a:.2f}' for a in adapted)})")
    print("\n".join(lines))
    plot(by_cell, budgets)


def plot(by_cell, budgets):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    datasets = sorted({d for d, _, _ in by_cell})
    figure, axes = plt.subplots(1, len(datasets), figsize=(5 * len(datasets), 4), squeeze=False)
    for axis, dataset in zip(axes[0], datasets):
        for strategy in FLAGS.strategies:
            points = [(b, by_cell[(dataset, strategy, b)]) for b in budgets if (dataset, strategy, b) in by_cell]
            if points:
                axis.errorbar([b for b, _ in points], [statistics.mean(v) for _, v in points],
                              yerr=[statistics.stdev(v) if len(v) > 1 else 0 for _, v in points],
                              marker="o", capsize=3, label=strategy)
        axis.set_xscale("log", base=2)
        axis.set_xlabel("training examples selected")
        axis.set_ylabel("accuracy (%)")
        axis.set_title(dataset)
        axis.legend()
    figure.tight_layout()
    figure.savefig(os.path.join(RESULTS_DIR, "selection.png"), dpi=100)


def main(argv):
    del argv
    FLAGS.sst2_dir, FLAGS.trec_dir = os.path.abspath(FLAGS.sst2_dir), os.path.abspath(FLAGS.trec_dir)
    results = load_results()
    selection_grid(results)
    pretraining(results)
    report(results)
    print(f"wrote {RESULTS_FILE}")


if __name__ == "__main__":
    app.run(main)
