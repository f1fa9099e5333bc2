"""Tuning and model selection on TREC-6: a 6-trial search and a 3-candidate selection.

  python benchmarks/tuning_trec.py --data_dir=../shared/data/trec

1. Bayesian search (6 trials, fixed step budget) over learning rate, batch
   size, warmup, weight decay, dropout and frozen bottom blocks of the bundled
   MiniLM-L6, ranked by accuracy on a dev split held out from TREC's train file
   (every 11th question; the test file is not used for choosing).
2. Model selection under one step budget among: the bundled MiniLM-L6
   (6 blocks), MiniLM with only its lowest 2 blocks kept, and a randomly
   initialised 2-block BERT (hidden 128) with MiniLM's vocabulary; a
   --max_params constraint, the ranked report and the metric-vs-latency chart.

Everything runs through `pipelines.tune` and `pipelines.select_model` as a user
would. Writes benchmarks/results/tuning_trec.json and copies the report and
chart to benchmarks/results/.
"""

import json
import os
import shutil
import subprocess
import sys

from absl import app
from absl import flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks.common import RESULTS_DIR, convert_trec  # noqa: E402

flags.DEFINE_string("data_dir", os.path.join("..", "shared", "data", "trec"), "Folder with train_5500.label.")
flags.DEFINE_string("work_dir", "/tmp/tflm_bench/tuning_trec", "Runs, trials, candidates.")
flags.DEFINE_integer("trial_steps", 300, "Training steps per trial and per candidate.")
flags.DEFINE_integer("max_trials", 6, "Search trials.")
flags.DEFINE_integer("max_params", 20_000_000, "Selection constraint.")
FLAGS = flags.FLAGS


def split_train(work_dir, data_dir):
    """train.tsv / dev.tsv from TREC's train file: every 11th question is dev."""
    everything = os.path.join(work_dir, "all.tsv")
    convert_trec(os.path.join(data_dir, "train_5500.label"), everything)
    with open(everything, encoding="latin-1") as f:
        header, *rows = f.readlines()
    paths = {name: os.path.join(work_dir, f"{name}.tsv") for name in ("train", "dev")}
    for name, keep in (("train", lambda i: i % 11), ("dev", lambda i: not i % 11)):
        with open(paths[name], "w", encoding="latin-1") as out:
            out.write(header)
            out.writelines(row for i, row in enumerate(rows) if keep(i))
    return paths["train"], paths["dev"]


def make_candidates(work_dir):
    """Local presets for the MiniLM with 2 blocks kept and the random tiny BERT."""
    import keras
    import keras_hub

    from tflm import backbones

    full, preset = backbones.load_backbone(backbones.BUNDLED_MINILM)
    preprocessor = backbones.load_preprocessor(preset, keras_hub.models.TextClassifierPreprocessor)
    config = full.get_config()
    kept = os.path.join(work_dir, "minilm_2_blocks")
    if not os.path.exists(kept):
        lower = keras_hub.models.BertBackbone(**dict(config, num_layers=2))
        source = {v.path: v for v in full.weights}
        for v in lower.weights:
            v.assign(source[v.path])
        lower.save_to_preset(kept)
        preprocessor.save_to_preset(kept)
    tiny = os.path.join(work_dir, "random_bert_2x128")
    if not os.path.exists(tiny):
        keras.utils.set_random_seed(0)
        random_bert = keras_hub.models.BertBackbone(
            vocabulary_size=config["vocabulary_size"], num_layers=2, num_heads=2, hidden_dim=128,
            intermediate_dim=512, max_sequence_length=config["max_sequence_length"])
        random_bert.save_to_preset(tiny)
        preprocessor.save_to_preset(tiny)
    return [backbones.BUNDLED_MINILM, kept, tiny]


def run_or_fail(pipeline_module, flags_, log_path):
    with open(log_path, "a") as log:
        code = subprocess.call([sys.executable, "-m", pipeline_module, *flags_], stdout=log, stderr=subprocess.STDOUT)
    if code:
        raise SystemExit(f"{pipeline_module} failed; see {log_path}")


def main(argv):
    del argv
    os.makedirs(FLAGS.work_dir, exist_ok=True)
    train, dev = split_train(FLAGS.work_dir, os.path.abspath(FLAGS.data_dir))
    data_flags = [f"--train_data={train}", f"--eval_data={dev}", "--text_fields=question", "--encoding=latin-1",
                  "--max_seq_length=32", f"--train_steps={FLAGS.trial_steps}", "--eval_every_steps=100000",
                  "--checkpoint_every_steps=100"]
    tune_dir = os.path.join(FLAGS.work_dir, "tune")
    run_or_fail("pipelines.tune", [
        "--pipeline=classify", "--tuner=bayesian", f"--max_trials={FLAGS.max_trials}", f"--tune_dir={tune_dir}",
        "--learning_rate_range=2e-5,5e-4", "--batch_size_choices=16,32", "--num_epochs_range=",
        "--warmup_fraction_range=0,0.2", "--weight_decay_range=0,0.1", "--dropout_range=0,0.3",
        "--freeze_bottom_range=0,4", "--", *data_flags, f"--export_dir={FLAGS.work_dir}/tuned_export",
    ], os.path.join(FLAGS.work_dir, "tune.log"))
    with open(os.path.join(tune_dir, "results.json")) as f:
        trials = json.load(f)

    select_dir = os.path.join(FLAGS.work_dir, "select")
    candidates = make_candidates(FLAGS.work_dir)
    run_or_fail("pipelines.select_model", [
        "--pipeline=classify", f"--candidates={','.join(candidates)}", f"--max_params={FLAGS.max_params}",
        f"--select_dir={select_dir}", "--", *data_flags, "--learning_rate=1e-4", "--batch_size=32",
        f"--export_dir={FLAGS.work_dir}/selected_export",
    ], os.path.join(FLAGS.work_dir, "select.log"))
    with open(os.path.join(select_dir, "report.json")) as f:
        selection = json.load(f)

    os.makedirs(RESULTS_DIR, exist_ok=True)
    shutil.copy(os.path.join(select_dir, "metric_vs_latency.png"),
                os.path.join(RESULTS_DIR, "tuning_trec_selection.png"))
    shutil.copy(os.path.join(select_dir, "report.md"), os.path.join(RESULTS_DIR, "tuning_trec_selection.md"))
    with open(os.path.join(RESULTS_DIR, "tuning_trec.json"), "w") as f:
        json.dump({"trial_steps": FLAGS.trial_steps, "objective": "dev accuracy (every 11th train question)",
                   "search": trials, "selection": selection}, f, indent=1)
    print("Search (objective: dev accuracy)")
    for row in trials:
        print(f"  trial {row['trial']} {row['status']:<9} accuracy={row['accuracy']} seconds={row['seconds']} "
              + " ".join(f"{k}={row[k]}" for k in ("learning_rate", "batch_size", "warmup_fraction",
                                                    "weight_decay", "dropout", "freeze_bottom")))
    print("Selection")
    with open(os.path.join(select_dir, "report.md")) as f:
        print(f.read())
    print(f"Wrote {os.path.join(RESULTS_DIR, 'tuning_trec.json')}")


if __name__ == "__main__":
    app.run(main)
