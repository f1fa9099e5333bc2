"""Model selection: fine-tune candidate backbones under one budget, rank by quality within cost limits.

  tflm-select-model --candidates=bert_tiny_en_uncased,/models/minilm_l6,/models/minilm_l4 \
      --max_latency_ms=30 --max_params=30000000 --max_train_minutes=20 -- \
      --train_data=train.tsv --eval_data=dev.tsv --train_steps=500

Flags after `--` go to every candidate's pipeline run (data, steps, batch,
strategy) and to the winner's final export (--export_dir, --export_name).
Each candidate is measured on its exported SavedModel: parameters, training
examples/s, single-request p50/p95 latency, SavedModel size and peak memory.
Writes report.md, report.json and metric_vs_latency.png to --select_dir.
"""

import os

from absl import flags

from pipelines.entry import run_pipeline
from tflm.errors import UserError
from tflm.metrics.metric_direction import metric_direction
from tflm.tuning import model_selection
from tflm.tuning import pipeline_runs

FLAGS = flags.FLAGS

flags.DEFINE_enum("pipeline", "classify", sorted(pipeline_runs.SERVING_PIPELINES), "Task pipeline the candidates "
                  "run (one that exports a SavedModel: candidates are ranked with its serving cost).")
flags.DEFINE_list("candidates", None, "Backbones to compare: KerasHub preset names or handles, local "
                  "preset dirs or Hugging Face checkpoint dirs.")
flags.DEFINE_string("objective", None, "Validation metric to rank by; default: the pipeline's.")
flags.DEFINE_integer("max_params", 0, "Drop candidates with more parameters; 0: no limit.", lower_bound=0)
flags.DEFINE_float("max_latency_ms", 0, "Drop candidates whose export's p95 single-request latency is "
                   "higher; 0: no limit.", lower_bound=0)
flags.DEFINE_float("max_train_minutes", 0, "Training time budget per candidate (the run is stopped, its "
                   "best checkpoint evaluated and exported); 0: none.", lower_bound=0)
flags.DEFINE_string("select_dir", os.path.join("runs", "select"), "Candidates' runs and the report.")
flags.mark_flag_as_required("candidates")
flags.register_validator("candidates", lambda v: bool(v) and len(set(v)) == len(v),
                         message="--candidates: give one or more distinct backbones")

# Representative single requests for the latency measurement.
LATENCY_TEXTS = ("a gripping, beautifully acted film", "what time does the museum open on sundays ?",
                 "Two dogs are playing in the snow.", "Anna: are we still on for lunch? Tom: yes, 12:30 works.")


def main(argv):
    pipeline_flags = argv[1:]
    objective = pipeline_runs.objective_metric(FLAGS.pipeline, FLAGS.objective)
    given = pipeline_runs.passed_flags(pipeline_flags, "model selection", ("backbone", "model_dir", "mode"))
    batch_size = given.get("batch_size", "32")
    if not batch_size.isdigit():
        raise UserError(f"--batch_size={batch_size} after '--': expected a positive integer")
    batch_size = int(batch_size)
    os.makedirs(FLAGS.select_dir, exist_ok=True)
    results = []
    for index, backbone in enumerate(FLAGS.candidates):
        print(f"[{index + 1}/{len(FLAGS.candidates)}] {backbone}", flush=True)
        result = model_selection.evaluate_candidate(
            FLAGS.pipeline, backbone, pipeline_flags, os.path.join(FLAGS.select_dir, f"candidate_{index}"),
            objective, batch_size, list(LATENCY_TEXTS), FLAGS.max_train_minutes)
        measured = f"{objective}={result.metric:.4f}, p95 {result.p95_ms:.1f} ms " if result.metric is not None else ""
        print(f"    {result.status}: {measured}{result.message}".rstrip(), flush=True)
        results.append(result)
    ranked = model_selection.rank(results, model_selection.Constraints(FLAGS.max_params, FLAGS.max_latency_ms),
                                  metric_direction(objective))
    winner = ranked[0] if ranked[0].status == "ok" else None
    print(model_selection.write_report(ranked, objective, FLAGS.select_dir, winner and winner.backbone), flush=True)
    model_selection.plot(ranked, objective, os.path.join(FLAGS.select_dir, "metric_vs_latency.png"))
    print(f"Report: {os.path.join(FLAGS.select_dir, 'report.md')}, chart: "
          f"{os.path.join(FLAGS.select_dir, 'metric_vs_latency.png')}", flush=True)
    if winner is None:
        raise UserError("no candidate passed: every one failed or broke a constraint (see the report)")
    path = pipeline_runs.export_run(FLAGS.pipeline, pipeline_flags + [f"--backbone={winner.backbone}"],
                                    winner.model_dir, os.path.join(FLAGS.select_dir, "export.log"))
    print(f"Exported the winner: {path}", flush=True)


def run():
    run_pipeline(main, takes_arguments=True)


if __name__ == "__main__":
    run()
