"""Single-sentence and sentence-pair text classification.

Follows Model Garden's Task interface (build_model / build_inputs / loss /
evaluate) so the trainer and pipelines stay task-agnostic; the seq2seq tasks
share everything but the head, the preprocessing and the metrics.
"""

import dataclasses
import os

import keras
import numpy as np
import tensorflow as tf
from absl import logging

from tflm import run_files
from tflm import backbones
from tflm import data
from tflm import export
from tflm import heads
from tflm import metrics
from tflm.errors import UserError
from tflm.data.data_reading import DataReading

PREDICTIONS_FILE = "eval_predictions.jsonl"


@dataclasses.dataclass(frozen=True)
class TextClassificationConfig:
    backbone: str = backbones.BUNDLED_MINILM
    freeze: str = ""
    max_seq_length: int = 128
    pooling: str = "mean"
    dropout: float = 0.1
    text_fields: tuple = ("sentence",)
    label_field: str = "label"
    labels: tuple = ()  # Fixed label set and order; inferred from train data if empty.
    reading: DataReading = DataReading()

    @property
    def columns(self):
        return data.ColumnSpec.from_flags(self.text_fields, self.label_field)

    @property
    def sentence_pair(self):
        return len(self.columns.text_fields) == 2


class TextClassificationTask:
    def __init__(self, config):
        self.config = config

    # -- data --------------------------------------------------------------
    def read_examples(self, source, split, label_vocabulary=None):
        c = self.config
        return data.read_classification_examples(
            source, c.columns, label_vocabulary, c.reading.data_format, c.reading.header, c.reading.encoding,
            split=split, skip_bad_rows=c.reading.skip_bad_rows,
        )

    def label_vocabulary(self, train_examples=None, model_dir=None):
        """The label set: saved in model_dir, else --labels, else the train labels."""
        saved = data.LabelVocabulary.load(model_dir) if model_dir else None
        given = data.LabelVocabulary(self.config.labels) if self.config.labels else None
        if saved and given and saved != given:
            raise UserError(
                f"--labels={','.join(given.names)} differs from the labels {saved.names} "
                f"saved in {model_dir}; use a new --model_dir"
            )
        vocabulary = saved or given
        if vocabulary is None:
            if train_examples is None:
                raise UserError(f"--model_dir={model_dir} holds no labels.json; train first or pass --labels")
            vocabulary = data.LabelVocabulary.from_labels(train_examples.labels)
        elif train_examples is not None:
            unknown = sorted(set(train_examples.labels) - set(vocabulary.names))
            if unknown:
                raise UserError(
                    f"{train_examples.origin}: labels {unknown[:5]} are not in the label set "
                    f"{vocabulary.names}"
                )
        return vocabulary

    def build_preprocessor(self, preset):
        import keras_hub

        return backbones.load_preprocessor(
            preset, keras_hub.models.TextClassifierPreprocessor,
            sequence_length=self.config.max_seq_length,
        )

    def build_inputs(self, examples, label_vocabulary, preprocessor):
        label_ids = np.array([label_vocabulary.id(label) for label in examples.labels], np.int32)
        return data.TokenizedDataset(data.tokenize(preprocessor, examples.texts), label_ids)

    # -- model -------------------------------------------------------------
    def build_model(self, backbone, num_classes):
        """Classifier on `backbone` with the configured layers frozen."""
        backbones.check_sequence_lengths(backbone, {"--max_seq_length": self.config.max_seq_length})
        spec = backbones.FreezeSpec.parse(self.config.freeze)
        backbones.apply_freeze(backbone, spec)
        model = heads.build_text_classifier(backbone, num_classes, self.config.dropout, self.config.pooling)
        backbones.use_fast_kernels(model)
        trainable, frozen = backbones.parameter_counts(model)
        logging.info(
            "Parameters: %s trainable, %s frozen (%.1f%% frozen; --freeze=%r)",
            f"{trainable:,}", f"{frozen:,}", 100.0 * frozen / max(trainable + frozen, 1), self.config.freeze,
        )
        return model

    @staticmethod
    def loss(label_ids, logits):
        """Per-example cross-entropy."""
        return keras.losses.sparse_categorical_crossentropy(
            label_ids, tf.cast(logits, tf.float32), from_logits=True
        )

    # -- evaluation ----------------------------------------------------------
    def predict_probabilities(self, model, dataset):
        # One traced function per model: batch shapes vary, the signature does not.
        if getattr(self, "_predict_model", None) is not model:
            self._predict_model = model
            self._predict = tf.function(
                lambda x: tf.nn.softmax(tf.cast(model(x, training=False), tf.float32)),
                input_signature=[dataset.element_spec[0]],
            )
        return np.concatenate([self._predict(features).numpy() for features, _ in dataset])

    def sentence_embeddings(self, model, inputs, batch_size):
        """[N, D] float32: what the classifier's final dense layer sees for each example, in order.

        The pooled backbone output (dropout is off at inference); sample selection works on these.
        """
        features = keras.Model(model.input, model.get_layer("logits").input)
        dataset = inputs.evaluation(batch_size)
        embed = tf.function(lambda x: tf.cast(features(x, training=False), tf.float32),
                            input_signature=[dataset.element_spec[0]])
        progbar = keras.utils.Progbar(len(inputs), unit_name="example")
        embeddings = []
        for batch, _ in dataset:
            embeddings.append(embed(batch).numpy())
            progbar.add(len(embeddings[-1]))
        return np.concatenate(embeddings)

    def evaluate(self, model, inputs, label_vocabulary, batch_size):
        """Metrics dict (see metrics.classification_report) and probabilities."""
        probabilities = self.predict_probabilities(model, inputs.evaluation(batch_size))
        report = metrics.classification_report(
            inputs.targets, probabilities.argmax(axis=-1), label_vocabulary.names
        )
        return report, probabilities

    @staticmethod
    def write_eval_results(model_dir, report, examples, probabilities, label_vocabulary):
        """Writes eval_results.json and one JSON line of prediction per example."""
        tf.io.gfile.makedirs(model_dir)
        run_files.write_json(os.path.join(model_dir, run_files.EVAL_RESULTS_FILE), report)
        run_files.write_json_lines(os.path.join(model_dir, PREDICTIONS_FILE), ({
            "text": [column[i] for column in examples.texts],
            "label": examples.labels[i],
            "predicted": label_vocabulary.names[int(row.argmax())],
            "probabilities": [round(float(p), 6) for p in row],
        } for i, row in enumerate(probabilities)))

    # -- export --------------------------------------------------------------
    def export(self, model, preprocessor, label_vocabulary, target, sample_examples, metadata, float32_max_batch=0):
        """Publishes a raw-text SavedModel at `target` (an `ExportTarget`); returns the version folder.

        `float32_max_batch`: see `export.TextClassifierServingModule`.
        """
        return export.export_text_classifier(
            model, preprocessor, label_vocabulary.names, target, [list(c) for c in sample_examples.texts],
            sentence_pair=self.config.sentence_pair,
            metadata=dict(metadata, max_seq_length=self.config.max_seq_length), float32_max_batch=float32_max_batch)
