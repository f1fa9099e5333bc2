r"""Text classification: train -> evaluate -> export a raw-text SavedModel.

With no data flags it fine-tunes the bundled MiniLM on the bundled demo
sentiment set, so this runs offline:

  tflm-classify                       # or: python -m pipelines.classify
  tflm-classify --train_data=../shared/data/sst2/train.tsv.gz \
      --eval_data=../shared/data/sst2/dev.tsv --model_dir=runs/sst2
  tflm-classify --train_data=tfds:glue/sst2 --text_fields=sentence --label_field=label
"""

import os

from absl import flags
from absl import logging

import tflm
from pipelines import common_flags
from pipelines.entry import run_pipeline
from tflm import backbones
from tflm import metrics
from tflm import training
from tflm.data import demo
from tflm.data import tfds_source
from tflm.heads import POOLINGS
from tflm.tasks import TextClassificationConfig
from tflm.tasks import TextClassificationTask

FLAGS = flags.FLAGS

flags.DEFINE_string("train_data", None, "Training data: a csv/tsv/jsonl file (.gz ok) or tfds:NAME. "
                    "Default: the bundled demo sentiment set.")
flags.DEFINE_string("eval_data", None, "Validation data, same forms. Default with tfds: the same data "
                    "set's --eval_split; with the demo: its dev file.")
flags.DEFINE_enum("data_format", "auto", ["auto", "csv", "tsv", "jsonl"], "File format; auto: from the extension.")
flags.DEFINE_list("text_fields", ["sentence"], "Text column(s): one, or two for sentence pairs. "
                  "Names, or 0-based indices with --noheader.")
flags.DEFINE_string("label_field", "label", "Label column (name, or index with --noheader).")
flags.DEFINE_boolean("header", True, "csv/tsv files start with a header line.")
flags.DEFINE_string("encoding", "utf-8", "Text encoding of data files (e.g. latin-1).")
flags.DEFINE_boolean("skip_bad_rows", False, "Skip rows with a missing column, empty text or unknown "
                     "label (and report how many) instead of failing.")
flags.DEFINE_list("labels", [], "Label set in output order; default: sorted labels of the train data.")
flags.DEFINE_string("train_split", "train", "TFDS split for training.")
flags.DEFINE_string("eval_split", "validation", "TFDS split for evaluation.")
flags.DEFINE_integer("max_seq_length", 128, "Tokens per example (longer inputs are truncated).",
                     lower_bound=8)
flags.DEFINE_enum("pooling", "mean", list(POOLINGS), "Sentence vector: masked mean, first token, or "
                  "the backbone's pooler.")
flags.DEFINE_float("dropout", 0.1, "Dropout before the classification layer.", lower_bound=0.0, upper_bound=0.99)
common_flags.define_mode_flag()
common_flags.define_backbone_flags()
common_flags.define_runtime_flags()
common_flags.define_training_flags("classify", best_metric="accuracy")
common_flags.define_export_flags("text_classifier")

flags.register_validator("text_fields", lambda v: 1 <= len(v) <= 2,
                         message="--text_fields: give one field, or two for sentence pairs")
flags.register_multi_flags_validator(
    ["train_data", "eval_data"],
    lambda f: not f["train_data"] or f["eval_data"] or tfds_source.is_tfds(f["train_data"]),
    message="--eval_data is required with a --train_data file")

# Flags that define the model in --model_dir; changing them needs a new dir.
RUN_DEFINING_FLAGS = ("backbone", "max_seq_length", "pooling", "text_fields", "freeze", "freeze_bottom")


def task_config():
    return TextClassificationConfig(
        backbone=FLAGS.backbone, freeze=common_flags.freeze_spec_text(),
        max_seq_length=FLAGS.max_seq_length, pooling=FLAGS.pooling, dropout=FLAGS.dropout,
        text_fields=tuple(FLAGS.text_fields), label_field=FLAGS.label_field, labels=tuple(FLAGS.labels),
        data_format=FLAGS.data_format, header=FLAGS.header, encoding=FLAGS.encoding,
        skip_bad_rows=FLAGS.skip_bad_rows, train_split=FLAGS.train_split, eval_split=FLAGS.eval_split,
    )


def main(argv):
    del argv
    strategy, precision, model_dir = common_flags.start_run(RUN_DEFINING_FLAGS)
    task = TextClassificationTask(task_config())
    train_source, eval_source = common_flags.data_sources(demo.SENTIMENT_TRAIN, demo.SENTIMENT_DEV)

    training_run = FLAGS.mode in ("train", "train_and_export")
    train_examples = task.read_examples(train_source, FLAGS.train_split) if training_run else None
    labels = task.label_vocabulary(train_examples, model_dir)
    eval_examples = task.read_examples(eval_source, FLAGS.eval_split, labels)
    labels.save(model_dir)
    logging.info("Labels: %s; eval examples: %d%s", labels.names, len(eval_examples),
                 f"; train examples: {len(train_examples)}" if train_examples else "")

    with strategy.scope():
        backbone, preset = backbones.load_backbone(task.config.backbone, dtype=precision)
        preprocessor = task.build_preprocessor(preset)
        model = task.build_model(backbone, len(labels))
    eval_inputs = task.build_inputs(eval_examples, labels, preprocessor)

    def evaluate():
        return task.evaluate(model, eval_inputs, labels, FLAGS.batch_size)

    final_evaluation = None
    if training_run:
        final_evaluation = common_flags.train_from_flags(
            model, task.loss, strategy, precision, model_dir, task.build_inputs(train_examples, labels, preprocessor), evaluate)
    else:
        logging.info("Loaded weights from %s", training.restore_for_inference(model, model_dir))

    report = None
    if FLAGS.mode != "export":
        report, probabilities = final_evaluation or evaluate()
        task.write_eval_results(model_dir, report, eval_examples, probabilities, labels)
        print(metrics.format_classification_report(report), flush=True)
        print(f"Wrote {os.path.join(model_dir, 'eval_results.json')}", flush=True)

    if FLAGS.mode in ("export", "train_and_export") and common_flags.exports_here(strategy):
        metadata = {
            "tflm_version": tflm.__version__, "task": "text_classification", "backbone": FLAGS.backbone,
            "max_seq_length": FLAGS.max_seq_length, "precision": precision,
            "parameters": sum(backbones.parameter_counts(model)),
            "eval_metrics": {k: v for k, v in (report or {}).items() if isinstance(v, float)},
        }
        path = task.export(model, preprocessor, labels, FLAGS.export_dir, FLAGS.export_name,
                           eval_examples, metadata, FLAGS.export_version)
        print(f"Exported and verified {path}", flush=True)


def run():
    run_pipeline(main)


if __name__ == "__main__":
    run()
