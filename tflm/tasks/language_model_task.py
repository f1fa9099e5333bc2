"""Continued pretraining: masked-LM or causal-LM training on raw text.

Same Task interface as classification and seq2seq (read data, build model,
build inputs, loss, evaluate, export), so the trainer and pipeline skeleton
are shared. Both objectives reduce to next/masked-token prediction with
targets `labels` / `label_weights`, so one loss and one perplexity serve both.
The product is the adapted backbone saved as a KerasHub preset, which every
tflm pipeline loads with --backbone=<dir>.
"""

import dataclasses
import os
import shutil

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from tflm import backbones
from tflm import data
from tflm import run_files
from tflm.data import text_corpus
from tflm.data.masked_lm_dataset import MaskedLMDataset
from tflm.data.masking import MaskingConfig
from tflm.errors import UserError
from tflm.heads import keras_hub_language_model
from tflm.metrics import perplexity
from tflm.training import losses
from tflm.data.data_reading import DataReading

INITIAL_EVAL_FILE = "eval_before_training.json"


@dataclasses.dataclass(frozen=True)
class LanguageModelConfig:
    backbone: str = backbones.BUNDLED_MINILM
    objective: str = "auto"  # "mlm", "causal_lm", or auto: what the backbone family supports.
    freeze: str = ""
    max_seq_length: int = 128
    mask_rate: float = 0.15
    text_field: str = "text"
    reading: DataReading = DataReading()


class LanguageModelTask:
    def __init__(self, config):
        self.config = config
        self.objective = None  # Resolved by build_model.
        self._statistics = None

    # -- data --------------------------------------------------------------
    def read_corpus(self, spec, split):
        c = self.config
        r = c.reading
        return text_corpus.read_text_corpus(spec, c.text_field, r.data_format, r.header, r.encoding, split,
                                            r.skip_bad_rows)

    def build_inputs(self, corpus, preprocessor, seed):
        """A dataset of (features, {labels, label_weights}); logs how many texts were truncated."""
        if self.objective == "mlm":
            def run(texts):
                features = preprocessor(x=texts)
                return dict({k: tf.cast(v, tf.int32) for k, v in features.items()},
                            lengths=preprocessor.tokenizer(texts).row_lengths())
        else:
            def run(texts):
                features, labels, weights = preprocessor(x=texts)
                return dict({k: tf.cast(v, tf.int32) for k, v in features.items()}, labels=labels,
                            label_weights=tf.cast(weights, tf.int32),
                            lengths=preprocessor.tokenizer(texts).row_lengths())

        arrays = data.run_in_batches(run, [corpus.texts])
        # Both packings add two special tokens ([CLS]/[SEP], or start/end); the
        # causal one packs max_seq_length + 1 and shifts by one for the labels.
        room = self.config.max_seq_length - (2 if self.objective == "mlm" else 1)
        truncated = int((arrays.pop("lengths") > room).sum())
        if truncated:
            logging.warning("%s: truncating %d of %d texts to --max_seq_length=%d tokens", corpus.origin,
                            truncated, len(corpus), self.config.max_seq_length)
        arrays = data.trim_to_longest(arrays, "padding_mask", list(arrays))
        if self.objective == "mlm":
            return MaskedLMDataset(arrays, self._masking, eval_seed=seed)
        targets = {"labels": arrays.pop("labels"), "label_weights": arrays.pop("label_weights")}
        group = data.SequenceGroup("padding_mask", tuple(arrays), ("labels", "label_weights"))
        return data.TokenizedDataset(arrays, targets, [group])

    # -- model ---------------------------------------------------------------
    def build_model(self, precision):
        """(task model, tokenizing preprocessor); create under the strategy scope."""
        c = self.config
        preset = backbones.resolve_backbone(c.backbone)
        self.objective = keras_hub_language_model.resolve_objective(preset, c.objective)
        model, preprocessor = keras_hub_language_model.load_language_model(
            preset, self.objective, precision, c.max_seq_length)
        backbones.check_sequence_lengths(model.backbone, {"--max_seq_length": c.max_seq_length})
        if self.objective == "mlm":
            tokenizer = preprocessor.tokenizer
            if getattr(tokenizer, "mask_token_id", None) is None:
                raise UserError(f"--backbone={c.backbone}: its tokenizer has no mask token, so it cannot "
                                "be trained with --objective=mlm")
            self._masking = MaskingConfig.for_sequence_length(
                c.max_seq_length, c.mask_rate, mask_token_id=tokenizer.mask_token_id,
                vocabulary_size=tokenizer.vocabulary_size(), unmaskable_ids=tuple(tokenizer.special_token_ids))
        backbones.use_fast_kernels(model)
        backbones.freeze_unused_pooler(model.backbone)
        backbones.apply_freeze(model.backbone, backbones.FreezeSpec.parse(c.freeze), "--freeze")
        trainable, frozen = backbones.parameter_counts(model)
        logging.info("Objective %s on %s; parameters: %s trainable, %s frozen (--freeze=%r)", self.objective,
                     type(model.backbone).__name__, f"{trainable:,}", f"{frozen:,}", c.freeze)
        return model, preprocessor

    @staticmethod
    def loss(targets, logits):
        """Per-example mean cross-entropy over the predicted (masked / next, non-pad) tokens."""
        return losses.token_cross_entropy(targets["labels"], targets["label_weights"], logits)

    # -- evaluation ----------------------------------------------------------
    def evaluate(self, model, inputs, batch_size):
        """(perplexity report, None) over every weighted token of `inputs`."""
        dataset = inputs.evaluation(batch_size)
        if self._statistics is None or self._statistics[0] is not model:
            @tf.function(input_signature=dataset.element_spec)
            def statistics(features, targets):
                return perplexity.token_statistics(model(features, training=False), targets["labels"],
                                                   targets["label_weights"])

            self._statistics = (model, statistics)
        totals = np.zeros(3, np.float64)
        for features, targets in dataset:
            totals += [float(t) for t in self._statistics[1](features, targets)]
        return perplexity.language_model_report(*totals), None

    @staticmethod
    def write_eval_results(model_dir, report, file_name=run_files.EVAL_RESULTS_FILE):
        tf.io.gfile.makedirs(model_dir)
        run_files.write_json(os.path.join(model_dir, file_name), report)

    # -- export --------------------------------------------------------------
    def export_preset(self, model, preprocessor, directory, sample_texts):
        """Saves the trained model as a KerasHub preset at `directory` (replacing one there); returns it.

        The backbone is what downstream pipelines load; the task head is
        saved too, so pretraining can continue from the preset. The preset is
        written beside, reloaded and compared with the in-memory backbone
        before it replaces `directory`.
        """
        directory = os.path.abspath(directory)
        staging = f"{directory}.staging-{os.getpid()}"
        shutil.rmtree(staging, ignore_errors=True)
        os.makedirs(os.path.dirname(directory), exist_ok=True)
        try:
            if self.objective == "causal_lm":
                model.preprocessor = preprocessor  # Saved with the task; training feeds features directly.
                try:
                    model.save_to_preset(staging)
                finally:
                    model.preprocessor = None
            else:
                model.save_to_preset(staging)
                preprocessor.save_to_preset(staging)
            self._verify_preset(model.backbone, preprocessor, staging, sample_texts)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)  # Half a preset helps no one.
            raise
        if os.path.exists(directory):
            retired = f"{directory}.old-{os.getpid()}"
            os.rename(directory, retired)
            os.rename(staging, directory)
            shutil.rmtree(retired)
        else:
            os.rename(staging, directory)
        return directory

    def _verify_preset(self, backbone, preprocessor, path, sample_texts):
        import keras_hub

        features = preprocessor(x=tf.constant(list(sample_texts)))
        if self.objective == "causal_lm":
            features = features[0]
        reloaded = keras_hub.models.Backbone.from_preset(path, dtype=backbone.dtype_policy.name)
        # The same kernels as the trained backbone, as every tflm task loading the preset gets
        # (in bfloat16, Keras's kernels round differently).
        backbones.use_fast_kernels(reloaded)
        expected, actual = backbone(features), reloaded(features)
        if isinstance(expected, dict):
            expected, actual = expected["sequence_output"], actual["sequence_output"]
        difference = float(np.max(np.abs(keras.ops.convert_to_numpy(expected).astype(np.float32)
                                          - keras.ops.convert_to_numpy(actual).astype(np.float32))))
        if difference > 1e-4:
            raise RuntimeError(f"preset {path}: reloaded backbone differs from the trained one "
                               f"(max abs diff {difference:.3g})")
        logging.info("Preset %s reloads to the same outputs (max abs diff %.2g)", path, difference)
