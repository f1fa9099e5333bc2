"""Hyperparameter search over any task pipeline with keras-tuner.

  tflm-tune --pipeline=classify --tuner=bayesian --max_trials=6 --objective=macro_f1 \
      --learning_rate_range=1e-5,3e-4 --freeze_bottom_range=0,4 -- \
      --train_data=train.tsv --eval_data=dev.tsv --max_seq_length=64

Flags after `--` go to every trial's pipeline run (data, backbone, strategy,
precision, --train_steps, export settings). Each trial is a pipeline run with
its own --model_dir under --tune_dir; rerunning the same command resumes the
search (an interrupted trial continues from its last checkpoint). At the end
the results table is printed and written as results.csv / results.json, and
the best trial is exported with the pipeline's --mode=export.
"""

import csv
import json
import os
import time

from absl import flags

from pipelines.entry import run_pipeline
from tflm import tuning
from tflm.errors import UserError
from tflm.metrics.metric_direction import metric_direction
from tflm.tuning import pipeline_runs
from tflm.tuning import search_space

FLAGS = flags.FLAGS

flags.DEFINE_enum("pipeline", "classify", sorted(pipeline_runs.PIPELINES), "Task pipeline whose runs are the trials.")
flags.DEFINE_enum("tuner", "random", tuning.TUNERS, "Search algorithm: keras-tuner RandomSearch, "
                  "BayesianOptimization or Hyperband (Hyperband picks the epochs itself, up to the "
                  "high end of --num_epochs_range).")
flags.DEFINE_string("objective", None, "Validation metric to optimise; default: the pipeline's ("
                    + ", ".join(f"{p}: {m}" for p, m in pipeline_runs.DEFAULT_METRIC.items()) + ").")
flags.DEFINE_enum("direction", "auto", ["auto", "max", "min"], "Whether larger --objective is better; "
                  "auto: min for loss/perplexity, else max.")
flags.DEFINE_integer("max_trials", 10, "Trials to run (including failed ones).", lower_bound=1)
flags.DEFINE_integer("executions_per_trial", 1, "Runs per trial (seeds --seed, --seed+1, ...); the "
                     "objective is their mean.", lower_bound=1)
flags.DEFINE_float("max_minutes", 0, "Time budget for this invocation; 0: none. A trial still running "
                   "at the deadline saves a checkpoint and is resumed by the next invocation.", lower_bound=0)
flags.DEFINE_string("tune_dir", os.path.join("runs", "tune"), "Search state, trials and results.")
flags.DEFINE_integer("seed", 42, "Seed of the search and of the trials' runs.")
# Default search ranges; freezing is not searched unless asked (it depends on the backbone's depth).
DEFAULT_RANGES = {"learning_rate": "1e-5,3e-4", "batch_size": "16,32", "num_epochs": "1,3",
                  "warmup_fraction": "0,0.2", "weight_decay": "0,0.1", "dropout": "0,0.3", "freeze_bottom": "",
                  "layer_lr_decay": ""}


def range_flag_name(parameter):
    return f"{parameter}_{'choices' if search_space.PARAMETERS[parameter][1] == 'choice' else 'range'}"


def define_search_flags():
    for parameter, (flag, kind) in search_space.PARAMETERS.items():
        shape = "these comma-separated values" if kind == "choice" else f"LOW,HIGH ({'log' if kind == 'log' else kind})"
        flags.DEFINE_string(range_flag_name(parameter), DEFAULT_RANGES[parameter],
                            f"Search {flag} over {shape}; empty: keep the pipeline's value.")


define_search_flags()

# Flags each trial sets itself.
OWNED_FLAGS = ("model_dir", "mode", "seed")


def search_space_from_flags(given):
    """The search space of the range flags; `given`: the trials' own flags ({name: value})."""
    dimensions = []
    for parameter, (flag, _) in search_space.PARAMETERS.items():
        name = range_flag_name(parameter)
        searched_explicitly = FLAGS[name].present and FLAGS[name].value
        if FLAGS.pipeline not in search_space.PIPELINES_WITH.get(parameter, (FLAGS.pipeline,)):
            if searched_explicitly:
                raise UserError(f"--{name}: --pipeline={FLAGS.pipeline} has no {flag} flag")
            continue  # A default range for a flag this pipeline lacks.
        if parameter == "num_epochs" and given.get("train_steps", "0") not in ("", "0"):
            if searched_explicitly:
                raise UserError(f"--{name}: the trials' --train_steps={given['train_steps']} overrides "
                                "--num_epochs; drop one of the two")
            continue  # A default range for a flag the trials ignore.
        dimensions.append(search_space.parse_dimension(parameter, FLAGS[name].value, name))
    return search_space.SearchSpace(dimensions, hyperband=FLAGS.tuner == "hyperband")


def check_pipeline_flags(given, space):
    for d in space.dimensions:
        if d.flag[2:] in given:
            raise UserError(f"{d.flag} after '--' is also searched; empty its range flag to fix it instead")


def check_same_search(settings):
    """A resumed search must be the same search."""
    path = os.path.join(FLAGS.tune_dir, "search.json")
    if os.path.exists(path):
        with open(path) as f:
            previous = json.load(f)
        changed = sorted(k for k in settings if previous.get(k) != settings[k])
        if changed:
            raise UserError(f"--tune_dir={FLAGS.tune_dir} holds a search with other settings ({', '.join(changed)}); "
                            "rerun it with the same flags to resume, or use a new --tune_dir")
    os.makedirs(FLAGS.tune_dir, exist_ok=True)
    with open(path, "w") as f:
        json.dump(settings, f, indent=1)


def results_rows(tuner, space, objective):
    rows = []
    for trial in sorted(tuner.oracle.trials.values(), key=lambda t: t.trial_id):
        record = tuner.trial_record(trial)
        values = trial.hyperparameters.values
        row = {"trial": trial.trial_id, "status": trial.status}
        for d in space.dimensions:
            row[d.name] = values.get("tuner/epochs" if space.hyperband and d.name == "num_epochs" else d.name)
        row[objective] = trial.score
        row["seconds"] = None if record["seconds"] is None else round(record["seconds"], 1)
        row["peak_memory_mb"] = None if record["peak_memory_mb"] is None else round(record["peak_memory_mb"])
        message = record["message"]
        if not message and trial.status != "COMPLETED" and trial.message:
            message = trial.message.strip().splitlines()[-1]  # keras-tuner keeps a traceback.
        row["message"] = message
        rows.append(row)
    return rows


def write_results(rows):
    with open(os.path.join(FLAGS.tune_dir, "results.json"), "w") as f:
        json.dump(rows, f, indent=1)
    with open(os.path.join(FLAGS.tune_dir, "results.csv"), "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def format_table(rows):
    columns = list(rows[0])

    def cell(value):
        if isinstance(value, float):
            return f"{value:.4g}"
        return "" if value is None else str(value)[:60]

    widths = [max(len(c), *(len(cell(r[c])) for r in rows)) for c in columns]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths))]
    lines += ["  ".join(cell(r[c]).ljust(w) for c, w in zip(columns, widths)) for r in rows]
    return "\n".join(lines)


def main(argv):
    pipeline_flags = argv[1:]
    pipeline = FLAGS.pipeline
    objective = pipeline_runs.objective_metric(pipeline, FLAGS.objective)
    direction = FLAGS.direction
    if direction == "auto":
        direction = metric_direction(objective)
    given = pipeline_runs.passed_flags(pipeline_flags, "the tuner", OWNED_FLAGS, " (use --tune_dir / --seed)")
    space = search_space_from_flags(given)
    if FLAGS.tuner == "hyperband" and (space.max_epochs is None or len(space.dimensions) < 2):
        raise UserError("--tuner=hyperband needs --num_epochs_range (its high end is Hyperband's max epochs) "
                        "and at least one other range to search")
    check_pipeline_flags(given, space)
    check_same_search({"pipeline": pipeline, "tuner": FLAGS.tuner, "objective": objective, "direction": direction,
                       "space": [[d.name, d.kind, list(d.values)] for d in space.dimensions],
                       "pipeline_flags": pipeline_flags, "executions_per_trial": FLAGS.executions_per_trial,
                       "seed": FLAGS.seed})

    import keras_tuner

    oracle = tuning.build_oracle(FLAGS.tuner, space, keras_tuner.Objective(objective, direction),
                                 FLAGS.max_trials, FLAGS.seed)
    deadline = time.time() + FLAGS.max_minutes * 60 if FLAGS.max_minutes else float("inf")
    tuner = tuning.PipelineTuner(oracle, pipeline, pipeline_flags, FLAGS.tune_dir, FLAGS.max_trials, deadline,
                                 FLAGS.executions_per_trial, FLAGS.seed)
    stop_reason = "search complete"
    try:
        tuner.search()
    except tuning.BudgetSpent as e:
        stop_reason = str(e)
    except RuntimeError as e:  # keras-tuner: too many consecutive failed trials.
        stop_reason = str(e).splitlines()[0]
    rows = results_rows(tuner, space, objective)
    if not rows:
        raise UserError(f"no trial ran ({stop_reason}); raise --max_minutes")
    write_results(rows)
    print(format_table(rows), flush=True)
    print(f"Stopped: {stop_reason}. Results: {os.path.join(FLAGS.tune_dir, 'results.csv')}, "
          f"TensorBoard HParams: {tuner.hparams_dir}", flush=True)
    completed = [t for t in tuner.oracle.trials.values() if t.status == "COMPLETED" and t.score is not None]
    if not completed:
        raise UserError(f"no trial completed ({stop_reason}); see {os.path.join(FLAGS.tune_dir, 'results.csv')}")
    best = (max if direction == "max" else min)(completed, key=lambda t: t.score)
    print(f"Best trial {best.trial_id}: {objective}={best.score:.4f} "
          f"{search_space.SearchSpace.trial_flags(best.hyperparameters.values)}", flush=True)
    # The best trial's weights are in its model dir: export them as the pipeline would.
    model_dir = os.path.join(tuner.get_trial_dir(best.trial_id), "run0")
    path = pipeline_runs.export_run(
        pipeline, pipeline_flags + search_space.SearchSpace.trial_flags(best.hyperparameters.values), model_dir,
        os.path.join(FLAGS.tune_dir, "export.log"))
    print(f"Exported the best trial: {path}", flush=True)


def run():
    run_pipeline(main, takes_arguments=True)


if __name__ == "__main__":
    run()
