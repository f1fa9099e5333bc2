"""Translation and summarization: a seq2seq model on a pretrained backbone.

Same Task interface as text classification (read data, build inputs, build
model, loss, evaluate, export), so the trainer and pipeline skeleton are
shared. Three model routes: a KerasHub Seq2SeqLM preset (BART and alike) used
as is; a KerasHub CausalLM preset (GPT-2 and alike; `tiny_random_gpt2`
offline) trained on `prompt [sep] completion` (text generation); or an
encoder-decoder warm-started from a BERT-family encoder (the offline
default: the bundled MiniLM).
"""

import dataclasses
import os

import keras
import tensorflow as tf
from absl import logging

from tflm import run_files
from tflm import backbones
from tflm import data
from tflm import export
from tflm.data import target_vocabulary
from tflm.errors import UserError
from tflm import generation
from tflm.heads import keras_hub_language_model
from tflm.heads import keras_hub_seq2seq
from tflm.heads import seq2seq_preprocessor
from tflm.heads.prompt_completion_preprocessor import PromptCompletionPreprocessor
from tflm.heads.warm_started_seq2seq_lm import build_warm_started_seq2seq
from tflm.metrics import generation_metrics
from tflm.training import losses
from tflm.data.data_reading import DataReading

PREDICTIONS_FILE = "eval_predictions.jsonl"
# auto: learned for an encoder backbone, the model's own for a KerasHub
# seq2seq or causal model (translate's default, so one command works with both).
TARGET_VOCABULARIES = ("auto", "source", "sentencepiece")


def _model_route(preset):
    """(KerasHub Seq2SeqLM class or None, whether the preset is a decoder-only causal LM)."""
    hub_cls = keras_hub_seq2seq.seq2seq_lm_class(preset)
    return hub_cls, hub_cls is None and keras_hub_language_model.supported_objectives(preset) == ["causal_lm"]


def is_decoder_only(backbone):
    """Whether `backbone` (a --backbone value) is a causal LM: one stack, decoded by KerasHub's samplers."""
    return _model_route(backbones.resolve_backbone(backbone))[1]


@dataclasses.dataclass(frozen=True)
class Seq2SeqConfig:
    backbone: str = backbones.BUNDLED_MINILM
    freeze: str = ""  # Encoder side.
    freeze_decoder: str = ""
    decoder_layers: int = 0  # 0: as many as the encoder (warm-started route).
    cross_attention_init: str = "auto"  # Warm-started route: auto, random or self_attention (see the head).
    target_vocabulary: str = "source"  # "sentencepiece": learned from the train targets; or "auto".
    target_vocabulary_size: int = 8000
    max_source_length: int = 128
    max_target_length: int = 64
    dropout: float = 0.1
    label_smoothing: float = 0.1
    source_field: str = "source"
    target_field: str = "target"
    reading: DataReading = DataReading()
    decoding: generation.DecodingConfig = generation.DecodingConfig()


class Seq2SeqTask:
    def __init__(self, config):
        self.config = config
        self._generate_fn = None

    # -- data --------------------------------------------------------------
    def read_examples(self, source, split):
        c = self.config
        r = c.reading
        return data.read_seq2seq_examples(source, c.source_field, c.target_field, r.data_format, r.header, r.encoding,
                                          split=split, skip_bad_rows=r.skip_bad_rows)

    def build_inputs(self, examples, preprocessor):
        """TokenizedDataset of the route's features (see `sequence_groups`) with labels and label weights.

        Logs how many sources and targets were truncated to their max length.
        """
        def run(sources, targets):
            source_tokens = preprocessor.source_tokenizer(sources)
            target_tokens = preprocessor.target_tokenizer(targets)
            features, labels, weights = preprocessor.pack_pairs(source_tokens, target_tokens)
            return dict(features, labels=labels, label_weights=weights,
                        source_lengths=source_tokens.row_lengths(), target_lengths=target_tokens.row_lengths())

        arrays = data.run_in_batches(run, [examples.sources, examples.targets])
        long_sources = int((arrays.pop("source_lengths") > preprocessor.source_capacity).sum())
        long_targets = int((arrays.pop("target_lengths") > preprocessor.target_capacity).sum())
        if long_sources or long_targets:
            logging.warning(
                "%s: truncating %d of %d sources to --max_source_length=%d and %d targets to "
                "--max_target_length=%d tokens", examples.origin, long_sources, len(examples),
                self.config.max_source_length, long_targets, self.config.max_target_length,
            )
        for group in preprocessor.sequence_groups:
            arrays = data.trim_to_longest(arrays, group.mask, group.features + group.targets)
        targets = {"labels": arrays.pop("labels"), "label_weights": arrays.pop("label_weights")}
        return data.TokenizedDataset(arrays, targets, preprocessor.sequence_groups)

    # -- model ---------------------------------------------------------------
    def build_model(self, precision, model_dir, train_targets=None):
        """(model, preprocessor); create under the strategy scope.

        `train_targets` trains the SentencePiece target vocabulary if
        --model_dir does not hold one yet.
        """
        c = self.config
        preset = backbones.resolve_backbone(c.backbone)
        hub_cls, decoder_only = _model_route(preset)
        lengths = {"--max_source_length": c.max_source_length, "--max_target_length": c.max_target_length}
        if hub_cls is not None or decoder_only:
            if c.target_vocabulary == "sentencepiece" or c.decoder_layers or c.cross_attention_init != "auto":
                raise UserError(
                    f"--backbone={c.backbone} is a KerasHub {'causal' if decoder_only else 'seq2seq'} model with "
                    "its own decoder and vocabulary; --target_vocabulary, --decoder_layers and --cross_attention_init "
                    "apply to encoder backbones only"
                )
        if decoder_only:
            if c.freeze_decoder:
                raise UserError(f"--freeze_decoder: --backbone={c.backbone} is decoder-only (one stack); use --freeze")
            if c.decoding.no_repeat_ngram_size:
                raise UserError(f"--no_repeat_ngram_size: --backbone={c.backbone} is decoder-only and decodes with "
                                "KerasHub's samplers, which have no such option")
            model, hub_preprocessor = keras_hub_language_model.load_language_model(
                preset, "causal_lm", precision, c.max_source_length + c.max_target_length)
            backbones.check_sequence_lengths(model.backbone, {
                "--max_source_length + --max_target_length": c.max_source_length + c.max_target_length})
            preprocessor = PromptCompletionPreprocessor(hub_preprocessor.tokenizer, c.max_source_length,
                                                        c.max_target_length)
            encoder_part, decoder_part = model.backbone, None
        elif hub_cls is not None:
            model, preprocessor = keras_hub_seq2seq.load_keras_hub_seq2seq(
                preset, hub_cls, precision, c.max_source_length, c.max_target_length)
            backbones.check_sequence_lengths(model.backbone, lengths)
            encoder_part, decoder_part = keras_hub_seq2seq.freezable_parts(model)
        else:
            backbone, preset = backbones.load_backbone(c.backbone, dtype=precision)
            # The warm-started decoder reuses the encoder's position embeddings.
            backbones.check_sequence_lengths(backbone, lengths)
            import keras_hub

            source_tokenizer = backbones.load_preprocessor(
                preset, keras_hub.models.TextClassifierPreprocessor).tokenizer
            source_special = seq2seq_preprocessor.bert_special_tokens(source_tokenizer)
            if c.target_vocabulary in ("sentencepiece", "auto"):
                target_tokenizer = target_vocabulary.load_or_train(model_dir, train_targets,
                                                                   c.target_vocabulary_size)
                target_special = seq2seq_preprocessor.sentencepiece_special_tokens(target_tokenizer)
                target_size = target_tokenizer.vocabulary_size()
            else:
                target_tokenizer, target_special, target_size = source_tokenizer, source_special, None
            preprocessor = seq2seq_preprocessor.Seq2SeqPreprocessor(
                source_tokenizer, target_tokenizer, source_special, target_special,
                c.max_source_length, c.max_target_length)
            model = build_warm_started_seq2seq(backbone, target_size, c.decoder_layers or None, c.dropout,
                                               c.cross_attention_init)
            encoder_part, decoder_part = backbone, model.decoder
        backbones.use_fast_kernels(model)
        backbones.apply_freeze(encoder_part, backbones.FreezeSpec.parse(c.freeze), "--freeze")
        if decoder_part is not None:
            backbones.apply_freeze(decoder_part, backbones.FreezeSpec.parse(c.freeze_decoder, "--freeze_decoder"),
                                   "--freeze_decoder")
        trainable, frozen = backbones.parameter_counts(model)
        logging.info("Parameters: %s trainable, %s frozen (%.1f%% frozen; --freeze=%r, --freeze_decoder=%r)",
                     f"{trainable:,}", f"{frozen:,}", 100.0 * frozen / max(trainable + frozen, 1),
                     c.freeze, c.freeze_decoder)
        return model, preprocessor

    def loss(self, targets, logits):
        """Per-example mean token cross-entropy with label smoothing, padding excluded."""
        return losses.token_cross_entropy(targets["labels"], targets["label_weights"], logits,
                                          self.config.label_smoothing)

    # -- generation and evaluation -------------------------------------------
    def predict(self, model, preprocessor, sources, batch_size):
        """Generated strings for `sources`, in order, with the exported signature's code path."""
        if self._generate_fn is None or self._generate_fn[0] is not model:
            @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
            def generate(texts):
                return generation.generate_text(model, preprocessor, self.config.decoding, texts)

            self._generate_fn = (model, generate)
        outputs = []
        progbar = keras.utils.Progbar(len(sources), unit_name="example")
        for start in range(0, len(sources), batch_size):
            texts = self._generate_fn[1](tf.constant(sources[start:start + batch_size]))
            outputs.extend(t.decode("utf-8", "replace") for t in texts.numpy())
            progbar.update(len(outputs))
        return outputs

    def evaluate(self, model, preprocessor, sources, references, batch_size):
        """(metrics dict, predictions): BLEU, chrF and ROUGE on decoded outputs."""
        predictions = self.predict(model, preprocessor, sources, batch_size)
        return generation_metrics.generation_report(predictions, references), predictions

    @staticmethod
    def write_eval_results(model_dir, report, examples, predictions):
        tf.io.gfile.makedirs(model_dir)
        run_files.write_json(os.path.join(model_dir, run_files.EVAL_RESULTS_FILE), report)
        run_files.write_json_lines(os.path.join(model_dir, PREDICTIONS_FILE), (
            {"source": source, "reference": reference, "prediction": prediction}
            for source, reference, prediction in zip(examples.sources, examples.targets, predictions)))

    # -- export --------------------------------------------------------------
    def export(self, model, preprocessor, target, sample_sources, metadata):
        """Publishes a string-to-string SavedModel at `target` (an `ExportTarget`); returns the version folder."""
        metadata = dict(metadata, decoding=dataclasses.asdict(self.config.decoding),
                        max_source_length=self.config.max_source_length,
                        max_target_length=self.config.max_target_length)
        return export.export_seq2seq(model, preprocessor, self.config.decoding, target, list(sample_sources), metadata)

