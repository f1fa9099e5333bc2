"""Sample selection for classification training: the model-derived inputs, the choice, its record in the run.

`selection` chooses from arrays; this module makes the arrays and keeps the
choice. Diversity works on the classifier's sentence embeddings under the
pretrained backbone (the caller's `embed()`). Difficulty and gradient need a
briefly fine-tuned model: here that is the classification head alone, a
softmax linear layer trained with Adam for a few epochs on the frozen,
standardized embeddings, which costs one forward pass of the backbone instead
of a fine-tune. Its probabilities over the training examples are scored; the
standardized embeddings are the features that feed it (for `grad_norm`).

The choice is written to the model dir as selected_ids.json and as
selected_train.jsonl (the selected rows, usable as --train_data), and a
resumed run reuses it, so every run in a model dir trains on the same subset.
"""

import collections
import dataclasses
import json
import os

from absl import logging
import numpy as np
import tensorflow as tf

from tflm import run_files
from tflm.data import selection
from tflm.data.classification_examples import ClassificationExamples
from tflm.errors import UserError

SELECTED_IDS_FILE = "selected_ids.json"
SELECTED_TRAIN_FILE = "selected_train.jsonl"
# Methods of each strategy, the default first; random takes none.
METHODS = {"random": (), "diversity": selection.DIVERSITY_METHODS, "difficulty": selection.DIFFICULTY_MEASURES,
           "gradient": selection.GRADIENT_MEASURES}
SCORING_BATCH_SIZE = 32
# A linear probe on standardized features needs a far larger rate than a transformer fine-tune.
SCORING_LEARNING_RATE = 1e-2


@dataclasses.dataclass(frozen=True)
class SelectionConfig:
    """What to select; mirrors the --select* flags. strategy "none" selects nothing."""

    strategy: str = "none"
    budget: int = 0  # Total examples to keep...
    per_class: int = 0  # ...or this many per class, when > 0.
    method: str = ""  # Empty: the strategy's default.
    scoring_epochs: int = 3  # Epochs of the scoring head (difficulty, gradient).
    seed: int = 0

    @property
    def method_name(self):
        """The method in effect; None for random."""
        methods = METHODS[self.strategy]
        return (self.method or methods[0]) if methods else None


def train_scoring_head(features, label_ids, num_classes, epochs, seed, batch_size=SCORING_BATCH_SIZE,
                       learning_rate=SCORING_LEARNING_RATE):
    """Probabilities [N, num_classes] of a softmax linear head trained on `features` with mini-batch Adam.

    Zero-initialised and shuffled by `seed`: the same inputs give the same probabilities.
    """
    x = np.asarray(features, dtype=np.float64)
    y = np.eye(num_classes)[np.asarray(label_ids)]
    parameters = [np.zeros((x.shape[1], num_classes)), np.zeros(num_classes)]
    moments = [[np.zeros_like(p), np.zeros_like(p)] for p in parameters]
    beta1, beta2, epsilon = 0.9, 0.999, 1e-8
    rng = np.random.default_rng(seed)
    step = 0
    for _ in range(epochs):
        order = rng.permutation(len(x))
        for start in range(0, len(x), batch_size):
            batch = order[start:start + batch_size]
            error = (_softmax(x[batch] @ parameters[0] + parameters[1]) - y[batch]) / len(batch)
            step += 1
            for parameter, (m, v), gradient in zip(parameters, moments, (x[batch].T @ error, error.sum(axis=0))):
                m[:] = beta1 * m + (1 - beta1) * gradient
                v[:] = beta2 * v + (1 - beta2) * gradient**2
                parameter -= learning_rate * (m / (1 - beta1**step)) / (np.sqrt(v / (1 - beta2**step)) + epsilon)
    return _softmax(x @ parameters[0] + parameters[1])


def standardize(features):
    """Zero mean, unit variance per dimension (constant dimensions are only centred)."""
    x = np.asarray(features, dtype=np.float64)
    scale = x.std(axis=0)
    return (x - x.mean(axis=0)) / np.where(scale > 0, scale, 1.0)


def choose(config, label_ids, num_classes, embed):
    """(sorted indices, per-example scores or None) for `config`; `embed()` gives [N, D] embeddings."""
    embeddings = probabilities = features = None
    if config.strategy != "random":
        embeddings = np.asarray(embed(), dtype=np.float64)
    if config.strategy in ("difficulty", "gradient"):
        features = standardize(embeddings)
        probabilities = train_scoring_head(features, label_ids, num_classes, config.scoring_epochs, config.seed)
    indices = selection.select(config.strategy, config.budget, label_ids, config.seed, embeddings=embeddings,
                               probabilities=probabilities, features=features, method=config.method_name,
                               per_class_count=config.per_class)
    scores = selection.example_scores(config.strategy, label_ids, probabilities, features, config.method_name)
    return indices, scores


def select_training_examples(examples, label_ids, num_classes, config, model_dir, columns, embed, resuming):
    """The examples to train on: all of them, or the selection `config` asks for.

    A selection is recorded in `model_dir`. When `resuming` (the dir holds a
    run that has trained), the recorded selection must match `config` and is
    reused; a run that trained on all examples cannot go on with a selection,
    nor the other way round. `columns` (ColumnSpec) names the fields of
    selected_train.jsonl.
    """
    path = os.path.join(model_dir, SELECTED_IDS_FILE)
    if not resuming:
        # Left by a run that stopped before training: it describes no weights, so it goes.
        for name in (SELECTED_IDS_FILE, SELECTED_TRAIN_FILE):
            if tf.io.gfile.exists(os.path.join(model_dir, name)):
                tf.io.gfile.remove(os.path.join(model_dir, name))
    previous = _read_record(path) if resuming else None
    if config.strategy == "none":
        if previous:
            raise UserError(f"--model_dir={model_dir} holds a run trained on a --select={previous['strategy']} "
                            f"selection ({path}); pass the same --select flags or use a new --model_dir")
        return examples
    if resuming and previous is None:
        raise UserError(f"--select={config.strategy}: --model_dir={model_dir} holds a run trained on all "
                        "examples; use a new --model_dir")
    label_ids = np.asarray(label_ids)
    count = _selected_count(config, label_ids)
    wanted = (config.strategy, config.method_name, config.seed, config.per_class, count)
    if previous:
        found = tuple(previous.get(key) for key in ("strategy", "method", "seed", "per_class", "count"))
        if found != wanted or any(i >= len(examples) for i in previous["indices"]):
            raise UserError(f"--model_dir={model_dir} holds a run trained on another selection ({_describe(found)}; "
                            f"this run asks for {_describe(wanted)} out of {len(examples)}); "
                            "use a new --model_dir")
        logging.info("Reusing the selection in %s: %s", path, _describe(found))
        return subset(examples, previous["indices"])
    indices, scores = choose(config, label_ids, num_classes, embed)
    selection.write_selected_ids(path, indices, config.strategy, config.method_name, config.seed, scores,
                                 config.per_class)
    selected = subset(examples, indices)
    fields = columns.text_fields + (columns.label_field,)
    run_files.write_json_lines(os.path.join(model_dir, SELECTED_TRAIN_FILE), (
        dict(zip(fields, values)) for values in zip(*selected.texts, selected.labels)))
    logging.info("Selected %s out of %d; wrote %s and %s", _describe(wanted), len(examples), path,
                 SELECTED_TRAIN_FILE)
    return selected


def subset(examples, indices):
    """The examples at `indices`, in that order."""
    return ClassificationExamples([[column[i] for i in indices] for column in examples.texts],
                                  [examples.labels[i] for i in indices], origin=examples.origin)


def _selected_count(config, label_ids):
    """How many examples `config` selects, checked against the data before any model runs."""
    if config.per_class:
        return int(sum(min(config.per_class, n) for n in collections.Counter(label_ids.tolist()).values()))
    if config.budget > len(label_ids):
        raise UserError(f"--select_budget={config.budget} is larger than the {len(label_ids)} training examples")
    return config.budget


def _describe(settings):
    strategy, method, seed, per_class, count = settings
    size = f"--select_per_class={per_class}" if per_class else f"--select_budget={count}"
    return f"--select={strategy}{f' --select_method={method}' if method else ''} {size} --seed={seed}: {count} examples"


def _read_record(path):
    if not tf.io.gfile.exists(path):
        return None
    try:
        with tf.io.gfile.GFile(path) as f:
            record = json.load(f)
        record["indices"] = [int(i) for i in record["indices"]]
    except (ValueError, KeyError, TypeError) as e:
        raise UserError(f"{path}: not a selection record ({e}); use a new --model_dir") from None
    return record


def _softmax(logits):
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)
