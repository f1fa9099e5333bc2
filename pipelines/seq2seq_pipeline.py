"""What translate.py, summarize.py and generate_text.py share: flags and the train -> eval -> export run.

Each pipeline calls `define_flags` with its own defaults (demo data, fields,
lengths, target vocabulary, best metric, export name) and then runs `main`.
"""

import dataclasses
import os

from absl import flags
from absl import logging

from pipelines import common_flags
from pipelines.entry import run_pipeline
from tflm import backbones
from tflm import generation
from tflm import metrics
from tflm import run_files
from tflm import training
from tflm.tasks import Seq2SeqConfig
from tflm.tasks import Seq2SeqTask
from tflm.heads.warm_started_seq2seq_lm import CROSS_ATTENTION_INITS
from tflm.tasks.seq2seq_task import TARGET_VOCABULARIES
from tflm.tasks.seq2seq_task import is_decoder_only

FLAGS = flags.FLAGS


@dataclasses.dataclass(frozen=True)
class PipelineDefaults:
    name: str  # "translate" / "summarize": default model dir runs/<name>.
    task: str  # "translation" / "summarization", written into the export metadata.
    demo_train: str
    demo_eval: str
    source_field: str
    target_field: str
    max_source_length: int
    max_target_length: int
    target_vocabulary: str
    best_metric: str
    export_name: str
    learning_rate: float
    num_epochs: int
    backbone: str = backbones.BUNDLED_MINILM
    no_repeat_ngram_size: int = 0


# Flags that define the model in --model_dir; changing them needs a new dir.
RUN_DEFINING_FLAGS = ("backbone", "freeze", "freeze_bottom", "freeze_decoder", "decoder_layers",
                      "target_vocabulary", "target_vocabulary_size", "max_source_length", "max_target_length")


def define_flags(defaults):
    flags.DEFINE_string("train_data", None, "Training pairs: SOURCE_FILE,TARGET_FILE (parallel plain text, "
                        ".gz ok), a csv/tsv/jsonl file, or tfds:NAME. Default: the bundled demo set.")
    flags.DEFINE_string("eval_data", None, "Validation pairs, same forms. Default with tfds: the same data "
                        "set's --eval_split; with the demo: its dev set.")
    flags.DEFINE_string("source_field", defaults.source_field, "Source column / feature (csv, tsv, jsonl, tfds).")
    flags.DEFINE_string("target_field", defaults.target_field, "Target column / feature (csv, tsv, jsonl, tfds).")
    common_flags.define_data_flags(["csv", "tsv", "jsonl"], "a missing column or an empty source/target")
    flags.DEFINE_integer("max_source_length", defaults.max_source_length, "Source tokens, special tokens "
                         "included; longer sources are truncated (and counted).", lower_bound=4)
    flags.DEFINE_integer("max_target_length", defaults.max_target_length, "Target tokens for training and "
                         "the generation limit; longer targets are truncated (and counted).", lower_bound=2)
    flags.DEFINE_enum("target_vocabulary", defaults.target_vocabulary, TARGET_VOCABULARIES,
                      "Decoder vocabulary: the source one (embeddings shared and tied), or a SentencePiece "
                      "vocabulary learned from the training targets (for targets the source vocabulary "
                      "covers badly, e.g. German with an uncased English WordPiece). auto: the learned one for "
                      "an encoder backbone, the model's own for a KerasHub seq2seq or causal model.")
    flags.DEFINE_integer("target_vocabulary_size", 8000, "Size of a learned target vocabulary.", lower_bound=16)
    flags.DEFINE_integer("decoder_layers", 0, "Decoder blocks (warm-started from the lowest encoder blocks); "
                         "0: as many as the encoder.", lower_bound=0)
    flags.DEFINE_enum("cross_attention_init", "auto", CROSS_ATTENTION_INITS,
                      "Start of the warm-started decoder's cross-attention: random (Rothe et al. 2020), or a "
                      "copy of the same block's pretrained self-attention. auto: the copy when the decoder shares "
                      "the source vocabulary, else random.")
    flags.DEFINE_string("freeze_decoder", "", "What to freeze in the decoder, same grammar as --freeze "
                        "(which applies to the encoder).")
    flags.DEFINE_float("dropout", 0.1, "Dropout in the new decoder.", lower_bound=0.0, upper_bound=0.99)
    flags.DEFINE_float("label_smoothing", 0.1, "Label smoothing of the token cross-entropy.",
                       lower_bound=0.0, upper_bound=0.99)
    flags.DEFINE_enum("decoding", "beam", generation.DECODING_METHODS, "Search for evaluation and export.")
    flags.DEFINE_integer("beam_size", 4, "Beams for --decoding=beam.", lower_bound=1)
    flags.DEFINE_float("length_penalty", 1.0, "Beam score = log-prob / length**length_penalty; >1 favours "
                       "longer outputs, 0 ranks by raw log-prob.", lower_bound=0.0)
    flags.DEFINE_integer("no_repeat_ngram_size", defaults.no_repeat_ngram_size, "Never generate an n-gram of this "
                         "size twice (greedy and beam; encoder-decoder models, so a decoder-only --backbone "
                         "decodes without it unless it is given); 0: off.", lower_bound=0)
    flags.DEFINE_integer("eval_batch_size", 32, "Batch size for decoding the eval set.", lower_bound=1)
    common_flags.define_mode_flag()
    common_flags.define_backbone_flags()
    common_flags.define_runtime_flags()
    common_flags.define_training_flags(defaults.name, best_metric=defaults.best_metric)
    common_flags.define_export_flags(defaults.export_name)
    FLAGS.set_default("learning_rate", defaults.learning_rate)
    FLAGS.set_default("num_epochs", defaults.num_epochs)
    FLAGS.set_default("backbone", defaults.backbone)
    flags.register_validator("best_metric", lambda v: v in metrics.GENERATION_METRICS,
                             message=f"--best_metric: one of {', '.join(metrics.GENERATION_METRICS)}")
    flags.register_validator("freeze_decoder", common_flags.valid_freeze_spec("--freeze_decoder"),
                             message="--freeze_decoder: bad spec")
    return defaults


def task_config():
    return Seq2SeqConfig(
        backbone=FLAGS.backbone, freeze=common_flags.freeze_spec_text(), freeze_decoder=FLAGS.freeze_decoder,
        decoder_layers=FLAGS.decoder_layers, cross_attention_init=FLAGS.cross_attention_init,
        target_vocabulary=FLAGS.target_vocabulary,
        target_vocabulary_size=FLAGS.target_vocabulary_size, max_source_length=FLAGS.max_source_length,
        max_target_length=FLAGS.max_target_length, dropout=FLAGS.dropout, label_smoothing=FLAGS.label_smoothing,
        source_field=FLAGS.source_field, target_field=FLAGS.target_field, reading=common_flags.data_reading(),
        decoding=generation.DecodingConfig(FLAGS.decoding, FLAGS.beam_size, FLAGS.length_penalty,
                                           FLAGS.max_target_length, FLAGS.no_repeat_ngram_size),
    )


def drop_inapplicable_no_repeat_default():
    """Sets --no_repeat_ngram_size to 0 where its default cannot apply.

    The default (3 for summarize) is for tflm's own search; a decoder-only
    backbone decodes with KerasHub's samplers, which have no such option.
    Set on the flag, the 0 is what flags.txt records, so `--flagfile` reruns
    agree. Given explicitly with such a backbone, it reaches the task, which
    refuses it.
    """
    if not FLAGS["no_repeat_ngram_size"].present and is_decoder_only(FLAGS.backbone):
        FLAGS.no_repeat_ngram_size = 0


def main(defaults):
    strategy, precision, model_dir = common_flags.start_run(RUN_DEFINING_FLAGS)
    drop_inapplicable_no_repeat_default()
    task = Seq2SeqTask(task_config())
    train_source, eval_source = common_flags.data_sources(defaults.demo_train, defaults.demo_eval)
    training_run = FLAGS.mode in ("train", "train_and_export")
    train_examples = task.read_examples(train_source, task.config.reading.train_split) if training_run else None
    eval_examples = task.read_examples(eval_source, task.config.reading.eval_split)
    logging.info("Eval examples: %d%s", len(eval_examples),
                 f"; train examples: {len(train_examples)}" if train_examples else "")

    with strategy.scope():
        model, preprocessor = task.build_model(
            precision, model_dir, train_examples.targets if train_examples else None)

    def evaluate():
        return task.evaluate(model, preprocessor, eval_examples.sources, eval_examples.targets,
                             FLAGS.eval_batch_size)

    final_evaluation = None
    if training_run:
        final_evaluation = common_flags.train_from_flags(
            model, task.loss, strategy, precision, model_dir, task.build_inputs(train_examples, preprocessor), evaluate)
    else:
        logging.info("Loaded weights from %s", training.restore_for_inference(model, model_dir))

    report = None
    if FLAGS.mode != "export":
        report, predictions = final_evaluation or evaluate()
        task.write_eval_results(model_dir, report, eval_examples, predictions)
        print(metrics.format_generation_report(report), flush=True)
        for source, prediction in list(zip(eval_examples.sources, predictions))[:3]:
            print(f"  {source[:80]!r}\n  -> {prediction!r}", flush=True)
        print(f"Wrote {os.path.join(model_dir, run_files.EVAL_RESULTS_FILE)}", flush=True)

    if FLAGS.mode in ("export", "train_and_export") and common_flags.exports_here(strategy):
        eval_metrics = {k: v for k, v in (report or {}).items() if k in metrics.GENERATION_METRICS}
        metadata = common_flags.export_metadata(defaults.task, FLAGS.backbone, model, precision, eval_metrics)
        path = task.export(model, preprocessor, common_flags.export_target(), eval_examples.sources, metadata)
        common_flags.announce_export(path)


def run(defaults):
    """Parses the flags and runs `main(defaults)`: the body of each pipeline's entry point."""
    def main_with_defaults(argv):
        del argv
        main(defaults)

    run_pipeline(main_with_defaults)
