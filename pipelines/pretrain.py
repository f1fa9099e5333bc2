r"""Continued pretraining: adapt a backbone to a domain's raw text, save it as a preset.

Masked-LM for encoder backbones (BERT family), causal LM for decoder ones
(GPT-2 and other KerasHub CausalLM presets; `tiny_random_gpt2` offline).
With no data flags it trains the bundled MiniLM on the bundled demo text:

  tflm-pretrain                               # or: python -m pipelines.pretrain
  tflm-pretrain --train_data=../shared/data/samsum/train.jsonl.gz --eval_data=../shared/data/samsum/validation.jsonl \
      --text_field=dialogue --model_dir=runs/samsum_mlm
  tflm-classify --backbone=runs/samsum_mlm/preset ...   # fine-tune the adapted backbone

Validation perplexity is measured before training (eval_before_training.json)
and after (eval_results.json), over the masked / next non-padding tokens only.
"""

import os

from absl import flags
from absl import logging

from pipelines import common_flags
from pipelines.entry import run_pipeline
from tflm import run_files
from tflm import training
from tflm.data import demo
from tflm.data import text_corpus
from tflm.heads.keras_hub_language_model import OBJECTIVES
from tflm.metrics import perplexity
from tflm.tasks import LanguageModelConfig
from tflm.tasks import LanguageModelTask
from tflm.tasks.language_model_task import INITIAL_EVAL_FILE

FLAGS = flags.FLAGS

flags.DEFINE_string("train_data", None, "Training text: plain-text files (.txt, one document per line), "
                    "csv/tsv/jsonl files with --text_field, or tfds:NAME; several joined by commas; .gz ok. "
                    "Default: the bundled demo text.")
flags.DEFINE_string("eval_data", None, "Validation text, same forms. Default with tfds: the same data set's "
                    "--eval_split; with the demo: its dev file.")
flags.DEFINE_string("text_field", "text", "Text column / feature (csv, tsv, jsonl, tfds); .txt files are plain "
                    "text, one document per line.")
common_flags.define_data_flags(["text", *text_corpus.TABLE_FORMATS], "a missing column or empty text")
flags.DEFINE_enum("objective", "auto", ["auto", *OBJECTIVES], "Masked-LM or causal-LM; auto: what "
                  "the backbone family has (masked-LM for BERT-like encoders, causal LM for GPT-like decoders).")
flags.DEFINE_float("mask_rate", 0.15, "Fraction of tokens masked per text (--objective=mlm); of those, "
                   "80% become [MASK], 10% a random token, 10% stay.", lower_bound=0.01, upper_bound=0.9)
flags.DEFINE_integer("max_seq_length", 128, "Tokens per text (longer texts are truncated, and counted).",
                     lower_bound=8)
flags.DEFINE_string("preset_dir", None, "Where the adapted model is saved as a KerasHub preset (loadable with "
                    "--backbone=<dir> by every pipeline). Default: <model_dir>/preset.")
common_flags.define_mode_flag()
common_flags.define_backbone_flags()
common_flags.define_runtime_flags()
common_flags.define_training_flags("pretrain", best_metric="perplexity")
common_flags.define_layer_lr_decay_flag()
FLAGS.set_default("learning_rate", 5e-5)
# KerasHub writes presets with local file operations.
flags.register_multi_flags_validator(
    ["preset_dir", "model_dir"], lambda f: "://" not in (f["preset_dir"] or f["model_dir"]),
    message="--preset_dir: the preset is written to a local folder; with a gs:// (or other URL) --model_dir, "
            "set --preset_dir to a local one")
flags.register_validator("best_metric", lambda v: v in perplexity.LANGUAGE_MODEL_METRICS,
                         message=f"--best_metric: one of {', '.join(perplexity.LANGUAGE_MODEL_METRICS)}")

# Flags that define the model in --model_dir; changing them needs a new dir.
RUN_DEFINING_FLAGS = ("backbone", "objective", "max_seq_length", "freeze", "freeze_bottom")


def task_config():
    return LanguageModelConfig(
        backbone=FLAGS.backbone, objective=FLAGS.objective, freeze=common_flags.freeze_spec_text(),
        max_seq_length=FLAGS.max_seq_length, mask_rate=FLAGS.mask_rate, text_field=FLAGS.text_field,
        reading=common_flags.data_reading(),
    )


def main(argv):
    del argv
    strategy, precision, model_dir = common_flags.start_run(RUN_DEFINING_FLAGS)
    task = LanguageModelTask(task_config())
    train_source, eval_source = common_flags.data_sources(demo.PRETRAINING_TRAIN, demo.PRETRAINING_DEV)
    training_run = FLAGS.mode in ("train", "train_and_export")
    train_corpus = task.read_corpus(train_source, task.config.reading.train_split) if training_run else None
    eval_corpus = task.read_corpus(eval_source, task.config.reading.eval_split)
    logging.info("Eval texts: %d%s", len(eval_corpus), f"; train texts: {len(train_corpus)}" if train_corpus else "")

    with strategy.scope():
        model, preprocessor = task.build_model(precision)
    eval_inputs = task.build_inputs(eval_corpus, preprocessor, FLAGS.seed)

    def evaluate():
        return task.evaluate(model, eval_inputs, FLAGS.batch_size)

    final_evaluation = None
    if training_run:
        # The starting point, once per run: what continued pretraining gained.
        if not training.latest_checkpoint(model_dir):
            before, _ = evaluate()
            task.write_eval_results(model_dir, before, INITIAL_EVAL_FILE)
            print(f"Before training: {perplexity.format_language_model_report(before)}", flush=True)
        final_evaluation = common_flags.train_from_flags(
            model, task.loss, strategy, precision, model_dir, task.build_inputs(train_corpus, preprocessor, FLAGS.seed),
            evaluate, backbone=model.backbone)
    else:
        logging.info("Loaded weights from %s", training.restore_for_inference(model, model_dir))

    if FLAGS.mode != "export":
        report, _ = final_evaluation or evaluate()
        task.write_eval_results(model_dir, report)
        print(f"Validation ({task.objective}): {perplexity.format_language_model_report(report)}", flush=True)
        print(f"Wrote {os.path.join(model_dir, run_files.EVAL_RESULTS_FILE)}", flush=True)

    if FLAGS.mode in ("export", "train_and_export") and common_flags.exports_here(strategy):
        path = task.export_preset(model, preprocessor, FLAGS.preset_dir or os.path.join(model_dir, "preset"),
                                  eval_corpus.texts[:4])
        common_flags.announce_export(path)
        print(f"The adapted model is a KerasHub preset: use --backbone={path}", flush=True)


def run():
    run_pipeline(main)


if __name__ == "__main__":
    run()
