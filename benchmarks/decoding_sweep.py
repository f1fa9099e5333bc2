"""Decoding settings of a trained seq2seq run, compared on its validation data.

  python benchmarks/decoding_sweep.py --pipeline=summarize --flagfile=RUN/model/flags.txt \
      --examples=300 --length_penalties=1,2 --no_repeat_ngram_sizes=0,3 --label=samsum_decoding

The run's own flagfile gives the model, the data and every other setting; the
best (else latest) checkpoint in its --model_dir is decoded once per
combination of --length_penalties x --no_repeat_ngram_sizes, on the first
--examples rows of --eval_data. Nothing in the run folder is written. Prints a
table and writes benchmarks/results/<label>.json. Pick settings here, on
validation data, then report the test set with the benchmark's own script.
"""

import dataclasses
import importlib
import json
import os
import sys
import time

from absl import app
from absl import flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks.common import RESULTS_DIR  # noqa: E402

# The pipeline module defines its flags on import, so it is chosen before flag parsing.
_PIPELINES = ("summarize", "translate")
_PIPELINE = next((a.split("=", 1)[1] for a in sys.argv if a.startswith("--pipeline=")), "summarize")
if _PIPELINE not in _PIPELINES:
    raise SystemExit(f"--pipeline={_PIPELINE}: expected one of {_PIPELINES}")
pipeline = importlib.import_module(f"pipelines.{_PIPELINE}")
from pipelines import common_flags  # noqa: E402
from pipelines import seq2seq_pipeline  # noqa: E402

flags.DEFINE_enum("pipeline", "summarize", list(_PIPELINES), "The pipeline that trained the run.")
flags.DEFINE_integer("examples", 0, "Decode the first N validation rows (0: all).", lower_bound=0)
flags.DEFINE_list("length_penalties", ["1.0"], "Beam length penalties to try.")
flags.DEFINE_list("no_repeat_ngram_sizes", ["0"], "--no_repeat_ngram_size values to try.")
flags.DEFINE_string("label", "decoding_sweep", "Name of the results JSON.")
FLAGS = flags.FLAGS


def main(argv):
    del argv
    if FLAGS.pipeline != _PIPELINE:  # "--pipeline NAME" (with a space) escapes the pre-scan.
        raise app.UsageError("write --pipeline=NAME")
    from tflm import training
    from tflm.tasks import Seq2SeqTask

    _, precision = training.set_up_runtime(common_flags.runtime_config())
    config = seq2seq_pipeline.task_config()
    task = Seq2SeqTask(config)
    _, eval_source = common_flags.data_sources(pipeline.DEFAULTS.demo_train, pipeline.DEFAULTS.demo_eval)
    examples = task.read_examples(eval_source, config.reading.eval_split)
    sources = examples.sources[:FLAGS.examples or None]
    references = examples.targets[:FLAGS.examples or None]
    model, preprocessor = task.build_model(precision, FLAGS.model_dir)
    checkpoint = training.restore_for_inference(model, FLAGS.model_dir)

    rows = []
    for length_penalty in (float(v) for v in FLAGS.length_penalties):
        for no_repeat in (int(v) for v in FLAGS.no_repeat_ngram_sizes):
            decoding = dataclasses.replace(config.decoding, length_penalty=length_penalty,
                                           no_repeat_ngram_size=no_repeat)
            start = time.time()
            report, predictions = Seq2SeqTask(dataclasses.replace(config, decoding=decoding)).evaluate(
                model, preprocessor, sources, references, FLAGS.eval_batch_size)
            rows.append({"decoding": dataclasses.asdict(decoding), "metrics": report,
                         "mean_words": sum(len(p.split()) for p in predictions) / len(predictions),
                         "examples_per_second": len(sources) / (time.time() - start)})
    reference_words = sum(len(r.split()) for r in references) / len(references)
    result = {"pipeline": _PIPELINE, "checkpoint": checkpoint, "eval_data": FLAGS.eval_data,
              "examples": len(sources), "reference_mean_words": reference_words, "settings": rows}
    os.makedirs(RESULTS_DIR, exist_ok=True)
    path = os.path.join(RESULTS_DIR, f"{FLAGS.label}.json")
    with open(path, "w") as f:
        json.dump(result, f, indent=1)

    print(f"\n{checkpoint}: {len(sources)} validation examples, beam {config.decoding.beam_size}, "
          f"references {reference_words:.1f} words")
    print(f"{'length_penalty':>15}{'no_repeat':>10}{'ROUGE-1':>9}{'ROUGE-2':>9}{'ROUGE-L':>9}{'BLEU':>7}"
          f"{'words':>7}{'ex/s':>7}")
    for row in rows:
        m = row["metrics"]
        print(f"{row['decoding']['length_penalty']:>15.2f}{row['decoding']['no_repeat_ngram_size']:>10}"
              f"{m['rouge1']:>9.2f}{m['rouge2']:>9.2f}{m['rougeL']:>9.2f}{m['bleu']:>7.2f}"
              f"{row['mean_words']:>7.1f}{row['examples_per_second']:>7.2f}")
    print(f"wrote {path}")


if __name__ == "__main__":
    app.run(main)
