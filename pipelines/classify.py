r"""Text classification: train -> evaluate -> export a raw-text SavedModel.

With no data flags it fine-tunes the bundled MiniLM on the bundled demo
sentiment set, so this runs offline:

  tflm-classify                       # or: python -m pipelines.classify
  tflm-classify --train_data=../shared/data/sst2/train.tsv.gz \
      --eval_data=../shared/data/sst2/dev.tsv --model_dir=runs/sst2
  tflm-classify --train_data=tfds:glue/sst2 --text_fields=sentence --label_field=label
  tflm-classify --select=diversity --select_budget=100 --augment=delete,swap --augment_copies=2

Sample selection and augmentation change only what the model trains on: the
training examples are selected first, then augmented copies of the selected
ones are added; the validation data is never selected or augmented.
"""

import os

from absl import flags
from absl import logging
import tensorflow as tf

from pipelines import common_flags
from pipelines.entry import run_pipeline
from tflm import backbones
from tflm import metrics
from tflm import run_files
from tflm import training
from tflm.data import ClassificationExamples
from tflm.data import augment
from tflm.data import back_translation
from tflm.data import demo
from tflm.data import sample_selection_inputs
from tflm.heads import POOLINGS
from tflm.tasks import TextClassificationConfig
from tflm.tasks import TextClassificationTask

FLAGS = flags.FLAGS

flags.DEFINE_string("train_data", None, "Training data: a csv/tsv/jsonl file (.gz ok) or tfds:NAME. "
                    "Default: the bundled demo sentiment set.")
flags.DEFINE_string("eval_data", None, "Validation data, same forms. Default with tfds: the same data "
                    "set's --eval_split; with the demo: its dev file.")
flags.DEFINE_list("text_fields", ["sentence"], "Text column(s): one, or two for sentence pairs. "
                  "Names, or 0-based indices with --noheader.")
flags.DEFINE_string("label_field", "label", "Label column (name, or index with --noheader).")
flags.DEFINE_list("labels", [], "Label set in output order; default: sorted labels of the train data.")
flags.DEFINE_integer("max_seq_length", 128, "Tokens per example (longer inputs are truncated).",
                     lower_bound=8)
flags.DEFINE_enum("pooling", "mean", list(POOLINGS), "Sentence vector: masked mean, first token, or "
                  "the backbone's pooler.")
flags.DEFINE_enum("padding", "dynamic", ["dynamic", "max_length"], "Training batches: dynamic: grouped by "
                  "length and cut to their longest row (fast on CPU/GPU); max_length: every batch padded to "
                  "--max_seq_length (static shapes, e.g. for TPUs).")
flags.DEFINE_float("dropout", 0.1, "Dropout before the classification layer.", lower_bound=0.0, upper_bound=0.99)
common_flags.define_data_flags(["csv", "tsv", "jsonl"], "a missing column, empty text or unknown label")
common_flags.define_mode_flag()
common_flags.define_backbone_flags()
common_flags.define_runtime_flags()
common_flags.define_training_flags("classify", best_metric="accuracy")
common_flags.define_layer_lr_decay_flag()
flags.register_validator("best_metric", lambda v: v in metrics.CLASSIFICATION_METRICS,
                         message=f"--best_metric: one of {', '.join(metrics.CLASSIFICATION_METRICS)}")
common_flags.define_export_flags("text_classifier")
flags.DEFINE_integer("serving_float32_max_batch", 0,
                     "When the model computes in bfloat16: 0 stores the weights it reads in bfloat16 in bfloat16 "
                     "(half the size; on the CPU where bfloat16 trained fastest, also the fastest export at every "
                     "request size); N > 0 keeps them as float32 variables (not graph constants) and answers "
                     "requests of at most N texts in float32.",
                     lower_bound=0)

flags.DEFINE_enum("select", "none", ["none", *sample_selection_inputs.METHODS],
                  "Train on a subset of the training data: random (stratified by class), diversity (cover the "
                  "backbone's embedding space), difficulty (the hardest examples) or gradient (the largest "
                  "gradients). Needs --select_budget or --select_per_class. The choice is written to --model_dir "
                  "(selected_ids.json, and selected_train.jsonl for --train_data --data_format=jsonl); a resumed "
                  "run reuses it.")
flags.DEFINE_integer("select_budget", 0, "Examples --select keeps in all (0: unset).", lower_bound=0)
flags.DEFINE_integer("select_per_class", 0, "Examples --select keeps per class, all of a smaller class "
                     "(e.g. k demonstrations per class), instead of --select_budget (0: unset).", lower_bound=0)
flags.DEFINE_string("select_method", "", "diversity: k_center (greedy k-center core-set) or kmeans_pp (k-means++ "
                    "seeding) over backbone embeddings; difficulty: loss, margin or entropy; gradient: el2n or "
                    "grad_norm (of the head). Empty: the first named.")
flags.DEFINE_integer("select_scoring_epochs", 3, "Epochs of the scoring model of --select=difficulty/gradient: "
                     "the classification head trained on frozen backbone features (cheap; no full fine-tune).",
                     lower_bound=1)
flags.DEFINE_list("augment", [], "Token-level augmentation of the training data: operations to pick from at "
                  "random for each copy, of delete, swap, insert (a word of the same sentence). Empty: off.")
flags.DEFINE_float("augment_rate", 0.1, "Fraction of the words an --augment operation touches (at least one).")
flags.DEFINE_integer("augment_copies", 1, "Augmented copies made of each training example.", lower_bound=1)
flags.DEFINE_float("augment_probability", 1.0, "Chance that each augmented copy is made.")
flags.DEFINE_string("back_translate", "", "FORWARD_EXPORT_DIR,BACKWARD_EXPORT_DIR: two translation exports "
                    "(source->pivot, pivot->source, e.g. from tflm-translate) whose round trip adds a paraphrase "
                    "of each training example. Empty: off.")

flags.register_validator("text_fields", lambda v: 1 <= len(v) <= 2,
                         message="--text_fields: give one field, or two for sentence pairs")

flags.register_multi_flags_validator(["select", "select_budget", "select_per_class"],
                                     lambda f: _check_select_size(**f))
flags.register_multi_flags_validator(["select", "select_method"], lambda f: _check_select_method(**f))
flags.register_multi_flags_validator(
    ["select", "strategy"], lambda f: f["select"] == "none" or f["strategy"] != "multi_worker_mirrored",
    message="--select with --strategy=multi_worker_mirrored: run the selection in a single-worker run first "
            "and train on its selected_train.jsonl")
flags.register_validator("augment", lambda v: set(v) <= set(augment.OPERATIONS),
                         message=f"--augment: use {', '.join(augment.OPERATIONS)}")
flags.register_validator("augment_rate", lambda v: 0 < v <= 1, message="--augment_rate: must be in (0, 1]")
flags.register_validator("augment_probability", lambda v: 0 < v <= 1,
                         message="--augment_probability: must be in (0, 1]")
flags.register_validator("back_translate", lambda v: not v or [bool(p.strip()) for p in v.split(",")] == [True] * 2,
                         message="--back_translate: give two comma-separated paths, "
                                 "FORWARD_EXPORT_DIR,BACKWARD_EXPORT_DIR")


def _check_select_size(select, select_budget, select_per_class):
    if select == "none" and (select_budget or select_per_class):
        raise flags.ValidationError("--select_budget and --select_per_class need --select")
    if select != "none" and bool(select_budget) == bool(select_per_class):
        raise flags.ValidationError(f"--select={select} needs exactly one of --select_budget or --select_per_class")
    return True


def _check_select_method(select, select_method):
    methods = sample_selection_inputs.METHODS.get(select, ())
    if select_method and not methods:
        raise flags.ValidationError(f"--select_method={select_method}: --select={select} takes no method")
    if select_method and select_method not in methods:
        raise flags.ValidationError(f"--select_method={select_method}: for --select={select} use "
                                    f"{', '.join(methods)}")
    return True


# Flags that define the model in --model_dir; changing them needs a new dir.
RUN_DEFINING_FLAGS = ("backbone", "max_seq_length", "pooling", "text_fields", "freeze", "freeze_bottom")


def task_config():
    return TextClassificationConfig(
        backbone=FLAGS.backbone, freeze=common_flags.freeze_spec_text(),
        max_seq_length=FLAGS.max_seq_length, pooling=FLAGS.pooling, dropout=FLAGS.dropout,
        text_fields=tuple(FLAGS.text_fields), label_field=FLAGS.label_field, labels=tuple(FLAGS.labels),
        reading=common_flags.data_reading(),
    )


def training_examples(task, model, examples, labels, preprocessor, model_dir):
    """The examples to train on: the --select choice (or all), then augmented copies of those."""
    config = sample_selection_inputs.SelectionConfig(FLAGS.select, FLAGS.select_budget, FLAGS.select_per_class,
                                                     FLAGS.select_method, FLAGS.select_scoring_epochs, FLAGS.seed)
    selected = sample_selection_inputs.select_training_examples(
        examples, [labels.id(label) for label in examples.labels], len(labels), config, model_dir,
        task.config.columns,
        lambda: task.sentence_embeddings(model, task.build_inputs(examples, labels, preprocessor), FLAGS.batch_size),
        resuming=tf.io.gfile.exists(os.path.join(model_dir, common_flags.FLAGFILE)))
    # Each augmentation works from the selected originals: no paraphrases of token-level noise.
    augmented = []
    if FLAGS.augment:
        augment_config = augment.AugmentConfig(tuple(FLAGS.augment), FLAGS.augment_rate, FLAGS.augment_copies,
                                               FLAGS.augment_probability, FLAGS.seed)
        augmented.append(augment.augment_classification_examples(selected, augment_config))
    if FLAGS.back_translate:
        forward, backward = (path.strip() for path in FLAGS.back_translate.split(","))
        augmented.append(back_translation.back_translate_classification_examples(
            selected, forward, backward, FLAGS.batch_size))
    n = len(selected)
    result = ClassificationExamples(
        [column + [text for a in augmented for text in a.texts[k][n:]] for k, column in enumerate(selected.texts)],
        selected.labels + [label for a in augmented for label in a.labels[n:]], origin=selected.origin)
    logging.info("Training on %d examples: %d of the %d read, %d augmented", len(result), n, len(examples),
                 len(result) - n)
    return result


def main(argv):
    del argv
    strategy, precision, model_dir = common_flags.start_run(RUN_DEFINING_FLAGS)
    task = TextClassificationTask(task_config())
    train_source, eval_source = common_flags.data_sources(demo.SENTIMENT_TRAIN, demo.SENTIMENT_DEV)

    training_run = FLAGS.mode in ("train", "train_and_export")
    train_examples = task.read_examples(train_source, task.config.reading.train_split) if training_run else None
    labels = task.label_vocabulary(train_examples, model_dir)
    eval_examples = task.read_examples(eval_source, task.config.reading.eval_split, labels)
    labels.save(model_dir)
    logging.info("Labels: %s; eval examples: %d%s", labels.names, len(eval_examples),
                 f"; train examples: {len(train_examples)}" if train_examples else "")

    with strategy.scope():
        backbone, preset = backbones.load_backbone(task.config.backbone, dtype=precision)
        preprocessor = task.build_preprocessor(preset)
        model = task.build_model(backbone, len(labels))
    eval_inputs = task.build_inputs(eval_examples, labels, preprocessor)
    if training_run:
        train_examples = training_examples(task, model, train_examples, labels, preprocessor, model_dir)

    def evaluate():
        return task.evaluate(model, eval_inputs, labels, FLAGS.batch_size)

    final_evaluation = None
    if training_run:
        final_evaluation = common_flags.train_from_flags(
            model, task.loss, strategy, precision, model_dir, task.build_inputs(train_examples, labels, preprocessor),
            evaluate, pad_to_length=FLAGS.max_seq_length if FLAGS.padding == "max_length" else 0, backbone=backbone)
    else:
        logging.info("Loaded weights from %s", training.restore_for_inference(model, model_dir))

    report = None
    if FLAGS.mode != "export":
        report, probabilities = final_evaluation or evaluate()
        task.write_eval_results(model_dir, report, eval_examples, probabilities, labels)
        print(metrics.format_classification_report(report), flush=True)
        print(f"Wrote {os.path.join(model_dir, run_files.EVAL_RESULTS_FILE)}", flush=True)

    if FLAGS.mode in ("export", "train_and_export") and common_flags.exports_here(strategy):
        eval_metrics = {k: v for k, v in (report or {}).items() if isinstance(v, float)}
        metadata = common_flags.export_metadata("text_classification", FLAGS.backbone, model, precision,
                                                eval_metrics)
        path = task.export(model, preprocessor, labels, common_flags.export_target(), eval_examples, metadata,
                           FLAGS.serving_float32_max_batch)
        common_flags.announce_export(path)


def run():
    run_pipeline(main)


if __name__ == "__main__":
    run()
