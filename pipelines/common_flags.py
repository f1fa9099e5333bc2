"""Flags every pipeline shares: backbone, runtime, training, export, mode.

Task-specific flags live in the pipeline that owns them. Validators reject
bad values when flags are parsed, before any work starts.
"""

import os
import time

import tensorflow as tf
from absl import flags
from absl import logging

import tflm
from tflm import backbones
from tflm import export
from tflm.data import tfds_source
from tflm.data.data_reading import DataReading
from tflm.errors import UserError
from tflm.export import saved_model_versions
from tflm import run_files
from tflm import training
from tflm.training import runtime

FLAGS = flags.FLAGS
MODES = ("train", "eval", "export", "train_and_export")


def define_mode_flag():
    flags.DEFINE_enum("mode", "train_and_export", MODES,
                      "train: train and evaluate; eval: evaluate the best checkpoint in "
                      "--model_dir; export: export it; train_and_export: all three.")


def define_backbone_flags():
    flags.DEFINE_string("backbone", backbones.BUNDLED_MINILM,
                        "KerasHub preset name or handle (kaggle://, hf://), a local KerasHub "
                        "preset dir, or a local Hugging Face checkpoint dir. Default: the "
                        "bundled MiniLM-L6-H384.")
    flags.DEFINE_string("freeze", "",
                        "What to freeze, comma-separated: embeddings, blocks:A-B, bottom:N, "
                        "pattern:REGEX, all. Example: embeddings,bottom:4.")
    flags.DEFINE_integer("freeze_bottom", 0, "Freeze the lowest N transformer blocks "
                         "(adds bottom:N to --freeze).", lower_bound=0)
    flags.register_validator("freeze", valid_freeze_spec("--freeze"), message="--freeze: bad spec")


def valid_freeze_spec(flag_name):
    """A flag validator for the --freeze grammar that reports the parse error."""
    def validate(value):
        try:
            backbones.FreezeSpec.parse(value, flag_name)
        except UserError as e:
            raise flags.ValidationError(str(e))
        return True

    return validate


def freeze_spec_text():
    """--freeze with --freeze_bottom folded in."""
    parts = [FLAGS.freeze] if FLAGS.freeze else []
    if FLAGS.freeze_bottom:
        parts.append(f"bottom:{FLAGS.freeze_bottom}")
    return ",".join(parts)


def define_runtime_flags():
    flags.DEFINE_enum("strategy", "default", runtime.STRATEGIES,
                      "tf.distribute strategy. multi_worker_mirrored reads the cluster from TF_CONFIG.")
    flags.DEFINE_integer("num_gpus", 0, "GPUs for --strategy=mirrored (0: all visible); one_device takes the "
                         "first.", lower_bound=0)
    flags.DEFINE_integer("cpu_devices", 1, "Split the host CPU into this many logical devices, one "
                         "replica each under mirrored / multi_worker_mirrored (multi-replica runs "
                         "without accelerators, e.g. to test a setup).", lower_bound=1)
    flags.DEFINE_string("tpu", "", "TPU name or grpc:// address for --strategy=tpu ('local' on a TPU VM).")
    flags.DEFINE_string("tpu_zone", "", "GCE zone of the --tpu (default: from the metadata server).")
    flags.DEFINE_string("gcp_project", "", "GCP project of the --tpu (default: from the metadata server).")
    flags.DEFINE_enum("precision", "auto", runtime.PRECISIONS,
                      "Dtype policy. auto: mixed_bfloat16 on TPU and Ampere+ GPUs, mixed_float16 on "
                      "older GPUs; on CPU mixed_bfloat16 only where bf16 matmuls measure >= 1.3x "
                      "float32's (a sub-second probe at start), else float32. Heads stay float32.")
    flags.DEFINE_enum("jit_compile", "auto", runtime.JIT_COMPILE, "XLA-compile the training step. auto: "
                      "off on CPU (slower there, measured) and on GPU (not measured here); TPUs always compile.")
    flags.DEFINE_integer("seed", 42, "Seed for initialisation, dropout and data order.")
    flags.DEFINE_boolean("deterministic", False, "Use deterministic kernels too, so two runs with "
                         "the same flags on one machine give identical weights and metrics.")
    tpu_flags = ["strategy", "tpu", "tpu_zone", "gcp_project"]
    flags.register_multi_flags_validator(
        tpu_flags, lambda f: f["strategy"] == "tpu" or not (f["tpu"] or f["tpu_zone"] or f["gcp_project"]),
        message="--tpu, --tpu_zone and --gcp_project are only used with --strategy=tpu")
    flags.register_multi_flags_validator(
        ["strategy", "tpu"], lambda f: f["strategy"] != "tpu" or bool(f["tpu"]),
        message="--strategy=tpu needs --tpu")
    flags.register_multi_flags_validator(
        ["strategy", "cpu_devices"],
        lambda f: f["cpu_devices"] == 1 or f["strategy"] in ("mirrored", "multi_worker_mirrored"),
        message="--cpu_devices > 1 needs --strategy=mirrored or multi_worker_mirrored")


def runtime_config():
    return runtime.RuntimeConfig(
        strategy=FLAGS.strategy, num_gpus=FLAGS.num_gpus, tpu=FLAGS.tpu, tpu_zone=FLAGS.tpu_zone,
        gcp_project=FLAGS.gcp_project, precision=FLAGS.precision, cpu_devices=FLAGS.cpu_devices,
        seed=FLAGS.seed, deterministic=FLAGS.deterministic)


def start_run(run_defining_flags):
    """What every pipeline does first: runtime, then this process's model dir.

    Returns (strategy, precision, model_dir); model_dir is --model_dir, or a
    per-worker folder inside it on non-chief workers.
    """
    strategy, precision = training.set_up_runtime(runtime_config())
    runtime.per_replica_batch_size(FLAGS.batch_size, strategy)
    model_dir = runtime.worker_model_dir(FLAGS.model_dir, strategy)
    prepare_model_dir(model_dir, run_defining_flags)
    return strategy, precision, model_dir


def define_training_flags(pipeline, best_metric):
    flags.DEFINE_string("model_dir", os.path.join("runs", pipeline),
                        "Checkpoints, logs, flagfile and eval results; any tf.io.gfile path "
                        "(local, gs://). Training resumes from the latest checkpoint here.")
    flags.DEFINE_integer("num_epochs", 3, "Training epochs (ignored if --train_steps > 0).", lower_bound=1)
    flags.DEFINE_integer("train_steps", 0, "Total optimizer steps; 0: --num_epochs worth.", lower_bound=0)
    flags.DEFINE_integer("batch_size", 32, "Global batch size (split across replicas).", lower_bound=1)
    flags.DEFINE_float("learning_rate", 5e-5, "Peak learning rate.", lower_bound=0.0)
    flags.DEFINE_float("warmup_fraction", 0.1, "Fraction of steps for linear warmup.",
                       lower_bound=0.0, upper_bound=1.0)
    flags.DEFINE_float("weight_decay", 0.01, "AdamW weight decay (not on bias/LayerNorm).", lower_bound=0.0)
    flags.DEFINE_float("clip_norm", 1.0, "Global gradient-norm clip; 0: off.", lower_bound=0.0)
    flags.DEFINE_float("ema_momentum", 0.0, "Keep an exponential moving average of the trained weights with "
                       "this decay (warmed up as min(decay, (1+t)/(10+t)) at step t; e.g. 0.999), and evaluate, "
                       "keep and export the average instead of the last weights; 0: off.",
                       lower_bound=0.0, upper_bound=0.99999)
    flags.DEFINE_integer("checkpoint_every_steps", 500, "Checkpoint interval.", lower_bound=1)
    flags.DEFINE_integer("eval_every_steps", 0, "Evaluation interval; 0: every epoch.", lower_bound=0)
    flags.DEFINE_integer("keep_checkpoints", 3, "Checkpoints kept (the best is kept apart).", lower_bound=1)
    flags.DEFINE_string("best_metric", best_metric, "Validation metric that picks the best weights "
                        "and drives early stopping (loss-like metrics are minimised).")
    flags.DEFINE_integer("early_stopping_patience", 0, "Stop after this many evaluations without "
                         "improvement of --best_metric; 0: never.", lower_bound=0)
    flags.DEFINE_enum("on_nan", "stop", training.NAN_POLICIES, "When the training loss becomes "
                      "NaN/Inf: stop with a message, or roll back to the last checkpoint and skip "
                      "the batches since (at most 3 times).")
    flags.DEFINE_integer("steps_per_loop", 1, "Steps per compiled call (larger: less Python "
                         "overhead, coarser progress).", lower_bound=1)


def define_data_flags(formats, bad_rows):
    """Flags for reading data files and TFDS splits, shared by every pipeline.

    The pipeline defines --train_data / --eval_data itself (their forms
    differ); `formats` are the --data_format values besides auto, and
    `bad_rows` says what makes a row bad.
    """
    flags.DEFINE_enum("data_format", "auto", ["auto", *formats], "File format; auto: from the extension.")
    flags.DEFINE_boolean("header", True, "csv/tsv files start with a header line.")
    flags.DEFINE_string("encoding", "utf-8", "Text encoding of data files (e.g. latin-1).")
    flags.DEFINE_boolean("skip_bad_rows", False, f"Skip rows with {bad_rows} (and report how many) instead of "
                         "failing.")
    flags.DEFINE_string("train_split", "train", "TFDS split for training.")
    flags.DEFINE_string("eval_split", "validation", "TFDS split for evaluation.")
    flags.register_multi_flags_validator(
        ["train_data", "eval_data"],
        lambda f: not f["train_data"] or f["eval_data"] or tfds_source.is_tfds(f["train_data"]),
        message="--eval_data is required with --train_data files")


def data_reading():
    """The data-reading flags of `define_data_flags` as the tasks' DataReading."""
    return DataReading(data_format=FLAGS.data_format, header=FLAGS.header, encoding=FLAGS.encoding,
                       skip_bad_rows=FLAGS.skip_bad_rows, train_split=FLAGS.train_split,
                       eval_split=FLAGS.eval_split)


def data_sources(demo_train, demo_eval):
    """(train source, eval source) from --train_data / --eval_data; the demo set when neither is given."""
    if FLAGS.train_data is None:
        if FLAGS.eval_data is not None:
            raise UserError("--eval_data given without --train_data")
        return demo_train, demo_eval
    return FLAGS.train_data, FLAGS.eval_data or FLAGS.train_data


def define_layer_lr_decay_flag():
    """For pipelines whose model is one backbone under a head (classify, pretrain)."""
    flags.DEFINE_float("layer_lr_decay", 1.0, "Layer-wise learning-rate decay: the top backbone block "
                       "learns at this factor x --learning_rate, each block below at one more factor, the "
                       "embeddings at one more; the head at the full rate. 1: off.", upper_bound=1.0)
    flags.register_validator("layer_lr_decay", lambda value: value > 0,
                             message="--layer_lr_decay must be > 0 (1 turns it off)")


def train_from_flags(model, loss_fn, strategy, precision, model_dir, train_inputs, evaluate, pad_to_length=0,
                     backbone=None):
    """Trains `model` with the training flags, resuming from `model_dir`.

    `backbone`: the model's backbone, given by pipelines that define
    --layer_lr_decay; the decay runs over its blocks.

    `evaluate()` returns (metrics dict, per-example outputs). Returns the last
    evaluation's pair when it was of the best weights, which the model holds
    after training, so a pipeline need not evaluate them again; else None.
    """
    steps_per_epoch = train_inputs.steps_per_epoch(FLAGS.batch_size)
    train_steps = FLAGS.train_steps or FLAGS.num_epochs * steps_per_epoch
    config = training.TrainerConfig(
        train_steps=train_steps, steps_per_epoch=steps_per_epoch,
        checkpoint_every_steps=FLAGS.checkpoint_every_steps, eval_every_steps=FLAGS.eval_every_steps,
        keep_checkpoints=FLAGS.keep_checkpoints, best_metric=FLAGS.best_metric,
        early_stopping_patience=FLAGS.early_stopping_patience, steps_per_loop=FLAGS.steps_per_loop,
        on_nan=FLAGS.on_nan, jit_compile=runtime.resolve_jit_compile(FLAGS.jit_compile),
    )
    lr_multipliers = training.layer_lr_multipliers(backbone, FLAGS.layer_lr_decay) if backbone else {}
    if lr_multipliers:
        logging.info("Layer-wise learning-rate decay %g: factors from %.3g (embeddings) to %g (top block); "
                     "head 1", FLAGS.layer_lr_decay, min(lr_multipliers.values()), max(lr_multipliers.values()))
    with strategy.scope():
        optimizer = training.create_optimizer(
            FLAGS.learning_rate, train_steps, FLAGS.warmup_fraction, FLAGS.weight_decay,
            FLAGS.clip_norm, loss_scale=precision == "mixed_float16", lr_multipliers=lr_multipliers,
            ema_momentum=FLAGS.ema_momentum,
        )
    logging.info("Training %d steps (%d per epoch), global batch %d = %d per replica x %d replicas",
                 train_steps, steps_per_epoch, FLAGS.batch_size,
                 runtime.per_replica_batch_size(FLAGS.batch_size, strategy), strategy.num_replicas_in_sync)
    latest = []

    def evaluate_metrics():
        latest[:] = [evaluate()]
        return latest[0][0]

    trainer = training.Trainer(model, optimizer, loss_fn, strategy, model_dir, config, evaluate_metrics)
    trainer.restore()
    save_run_flags(model_dir)
    start = time.time()
    trainer.train(train_inputs.training(FLAGS.batch_size, FLAGS.seed, pad_to_length=pad_to_length))
    logging.info("Training took %.1fs", time.time() - start)
    return latest[0] if trainer.best_is_last_evaluation else None


def exports_here(strategy):
    """Whether this process exports: only the chief does (every worker holds the same weights)."""
    if runtime.is_chief(strategy):
        return True
    logging.info("Not the chief worker: exporting is left to the chief")
    return False


def define_export_flags(default_name):
    flags.DEFINE_string("export_dir", "savedmodels", "Export root: <export_dir>/<export_name>/<version>, "
                        "and <export_dir>/models.config for TF Serving.")
    flags.DEFINE_string("export_name", default_name, "Model name under --export_dir.")
    flags.DEFINE_integer("export_version", 0, "Version number to publish; 0: the next free one. "
                         "An existing version is never overwritten.", lower_bound=0)
    flags.DEFINE_integer("keep_versions", 0, "After publishing, delete all but the newest N versions of "
                         "--export_name (never one models.config serves); 0: keep all.", lower_bound=0)
    flags.DEFINE_string("serving_base_path", "", "The folder TF Serving sees --export_dir as, written into "
                        "models.config (e.g. /models in a container); empty: the absolute --export_dir.")
    flags.register_validator("export_name", lambda v: bool(saved_model_versions.VALID_NAME.match(v)),
                             message="--export_name: use letters, digits, '.', '_' or '-'")


def announce_export(path):
    """Prints the line tflm-tune and tflm-select-model read the export's path from."""
    print(f"{run_files.EXPORTED}{path}", flush=True)


def export_target():
    return export.ExportTarget(FLAGS.export_dir, FLAGS.export_name, FLAGS.export_version, FLAGS.keep_versions,
                               FLAGS.serving_base_path)


def export_metadata(task, backbone_name, model, precision, eval_metrics):
    """What every export records in assets.extra/tflm_model.json besides its task's own fields."""
    return {
        "tflm_version": tflm.__version__, "task": task, "backbone": backbone_name, "precision": precision,
        "parameters": sum(backbones.parameter_counts(model)), "eval_metrics": eval_metrics,
        "training_flags": {n: FLAGS[n].value for n in _pipeline_flags() if n != "mode"},
    }


FLAGFILE = "flags.txt"


def _pipeline_flags():
    """Flags defined by tflm pipelines (absl's and TensorFlow's are left out)."""
    names = []
    for module, module_flags in FLAGS.flags_by_module_dict().items():
        # A pipeline run as a script registers its flags under its file path.
        if module.startswith("pipelines") or "/pipelines/" in module or module == "__main__":
            names.extend(f.name for f in module_flags)
    return sorted(set(names))


def prepare_model_dir(model_dir, run_defining_flags):
    """Creates `model_dir` and checks it can hold this run, changing nothing in it.

    If the folder already holds a run, the flags that define the model (e.g.
    --backbone) must match its flagfile, or resuming would load mismatched
    weights.
    """
    path = os.path.join(model_dir, FLAGFILE)
    try:
        tf.io.gfile.makedirs(model_dir)
        probe = os.path.join(model_dir, f".write-probe-{os.getpid()}")
        with tf.io.gfile.GFile(probe, "w") as f:
            f.write("")
        tf.io.gfile.remove(probe)
        previous = {}
        if tf.io.gfile.exists(path):
            with tf.io.gfile.GFile(path) as f:
                for line in f:
                    name, _, value = line.strip().lstrip("-").partition("=")
                    previous[name] = value
    except (tf.errors.OpError, OSError) as e:
        raise UserError(f"--model_dir={model_dir}: not writable ({str(e).splitlines()[0]})") from None
    for name in run_defining_flags:
        current = FLAGS[name].serialize().lstrip("-").partition("=")[2]
        if name in previous and previous[name] != current:
            raise UserError(
                f"--{name}={current} differs from --{name}={previous[name]} of the run in "
                f"--model_dir={model_dir}; use a new --model_dir"
            )


def save_run_flags(model_dir):
    """Writes the run's flags to `model_dir` as a flagfile that reproduces it.

    Written when training starts, so a run that fails on bad input leaves
    the folder's previous record as it was.
    """
    lines = (FLAGS[n].serialize() for n in _pipeline_flags() if n != "mode")
    run_files.write_atomically(os.path.join(model_dir, FLAGFILE), "\n".join(line for line in lines if line) + "\n")
