"""Sample selection and augmentation in the classify pipeline: runs as a user makes them, and the library in-process."""

import json

import numpy as np
import pytest
import tensorflow as tf

from tests.conftest import run_module
from tflm import backbones
from tflm.data import demo
from tflm.data import sample_selection_inputs as ssi
from tflm.data.augment import AugmentConfig
from tflm.data.data_reading import DataReading
from tflm.data.augment import augment_texts
from tflm.errors import UserError
from tflm.tasks import TextClassificationConfig
from tflm.tasks import TextClassificationTask


def fast_flags(tiny_preset, model_dir):
    return [f"--backbone={tiny_preset}", f"--model_dir={model_dir}", "--mode=train", "--train_steps=4",
            "--batch_size=16", "--max_seq_length=32", "--learning_rate=1e-3", "--precision=float32"]


def classify(*args):
    return run_module("pipelines.classify", *args)


@pytest.fixture(scope="module")
def task():
    return TextClassificationTask(TextClassificationConfig(max_seq_length=32))


@pytest.fixture(scope="module")
def train(task):
    return task.read_examples(demo.SENTIMENT_TRAIN, "train")


@pytest.mark.slow  # Two pipeline runs in subprocesses (~25 s); selection logic is fast-tested in test_selection. CI: -m slow.
def test_diversity_selection_trains_on_the_budget_and_a_resumed_run_reuses_it(tiny_preset, tmp_path, train):
    flags = fast_flags(tiny_preset, tmp_path) + ["--select=diversity", "--select_budget=40"]
    result = classify(*flags)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Training on 40 examples: 40 of the 320 read" in result.stderr
    assert "Training 4 steps (2 per epoch)" in result.stderr
    record = json.loads((tmp_path / "selected_ids.json").read_text())
    assert (record["strategy"], record["method"], record["seed"], record["count"]) == ("diversity", "k_center", 42, 40)
    assert len(set(record["indices"])) == 40 and record["indices"] == sorted(record["indices"])
    rows = [json.loads(line) for line in open(tmp_path / "selected_train.jsonl")]
    assert rows == [{"sentence": train.texts[0][i], "label": train.labels[i]} for i in record["indices"]]
    again = TextClassificationTask(TextClassificationConfig(reading=DataReading(data_format="jsonl"))).read_examples(
        str(tmp_path / "selected_train.jsonl"), "train")
    assert again.texts == [[row["sentence"] for row in rows]] and again.labels == [row["label"] for row in rows]

    before = (tmp_path / "selected_ids.json").read_text()
    result = classify(*flags, "--train_steps=6")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Reusing the selection" in result.stderr and "Training on 40 examples" in result.stderr
    assert (tmp_path / "selected_ids.json").read_text() == before


class _Translator(tf.Module):
    """A stand-in translation export: `text` -> `output_text`."""

    def __init__(self, translate):
        super().__init__()
        self.serve = tf.function(lambda text: {"output_text": translate(text)},
                                 input_signature=[tf.TensorSpec([None], tf.string, name="text")])


def _save_translator(translate, path):
    module = _Translator(translate)
    tf.saved_model.save(module, str(path), signatures={"serving_default": module.serve})
    return str(path)


def test_augmentation_and_back_translation_grow_train_data_only(tiny_preset, tmp_path, task, train):
    forward = _save_translator(tf.strings.upper, tmp_path / "en_xx")
    backward = _save_translator(lambda text: tf.strings.lower(text) + " indeed", tmp_path / "xx_en")
    result = classify(*fast_flags(tiny_preset, tmp_path / "run"), "--augment=delete,swap", "--augment_copies=2",
                      f"--back_translate={forward},{backward}")
    assert result.returncode == 0, result.stderr[-3000:]
    copies, _ = augment_texts(train.texts[0], AugmentConfig(("delete", "swap"), copies=2, seed=42))
    assert f"Training on {320 + len(copies) + 320} examples: 320 of the 320 read, {len(copies) + 320} augmented" \
        in result.stderr
    evaluation = task.read_examples(demo.SENTIMENT_DEV, "validation")
    predictions = [json.loads(line) for line in open(tmp_path / "run" / "eval_predictions.jsonl")]
    assert [p["text"] for p in predictions] == [[text] for text in evaluation.texts[0]]
    assert [p["label"] for p in predictions] == evaluation.labels
    assert not any("indeed" in p["text"][0] for p in predictions)


@pytest.fixture(scope="module")
def embeddings(tiny_preset, train):
    task = TextClassificationTask(TextClassificationConfig(backbone=tiny_preset, max_seq_length=32))
    labels = task.label_vocabulary(train)
    backbone, preset = backbones.load_backbone(tiny_preset)
    model = task.build_model(backbone, len(labels))
    inputs = task.build_inputs(train, labels, task.build_preprocessor(preset))
    first = task.sentence_embeddings(model, inputs, 64)
    assert first.shape == (320, 16) and np.array_equal(first, task.sentence_embeddings(model, inputs, 64))
    return first


def select(model_dir, train, config, embeddings, resuming=False):
    model_dir.mkdir(parents=True, exist_ok=True)
    label_ids = [0 if label == "negative" else 1 for label in train.labels]
    columns = TextClassificationConfig().columns
    return ssi.select_training_examples(train, label_ids, 2, config, str(model_dir), columns, lambda: embeddings,
                                        resuming)


def test_difficulty_selection_is_deterministic_and_records_scores(tmp_path, train, embeddings):
    config = ssi.SelectionConfig("difficulty", budget=25, method="margin", scoring_epochs=2, seed=5)
    chosen = select(tmp_path / "a", train, config, embeddings)
    record = json.loads((tmp_path / "a" / "selected_ids.json").read_text())
    assert len(chosen) == 25 and record["method"] == "margin" and len(record["scores"]) == 25
    assert chosen.texts[0] == [train.texts[0][i] for i in record["indices"]]
    select(tmp_path / "b", train, config, embeddings)
    assert json.loads((tmp_path / "b" / "selected_ids.json").read_text()) == record
    per_class = select(tmp_path / "c", train, ssi.SelectionConfig("gradient", per_class=4, seed=5), embeddings)
    assert sorted(per_class.labels) == ["negative"] * 4 + ["positive"] * 4


def test_resuming_needs_the_same_selection(tmp_path, train, embeddings):
    config = ssi.SelectionConfig("random", budget=30, seed=1)
    chosen = select(tmp_path, train, config, None)
    assert select(tmp_path, train, config, None, resuming=True).texts == chosen.texts
    with pytest.raises(UserError, match="holds a run trained on another selection .*: 30 examples; this run asks "
                                        "for --select=random --select_budget=30 --seed=2: 30 examples out of 320"):
        select(tmp_path, train, ssi.SelectionConfig("random", budget=30, seed=2), None, resuming=True)
    with pytest.raises(UserError, match="another selection .* asks for --select=random --select_per_class=15"):
        select(tmp_path, train, ssi.SelectionConfig("random", per_class=15, seed=1), None, resuming=True)
    with pytest.raises(UserError, match="holds a run trained on a --select=random selection"):
        select(tmp_path, train, ssi.SelectionConfig(), None, resuming=True)
    with pytest.raises(UserError, match="--select=diversity: --model_dir=.* holds a run trained on all examples"):
        select(tmp_path / "unselected", train, ssi.SelectionConfig("diversity", budget=5), embeddings, resuming=True)
    # A record no run trained on yet is replaced, or removed.
    other = select(tmp_path, train, ssi.SelectionConfig("diversity", budget=5, method="kmeans_pp"), embeddings)
    assert len(other) == 5 and json.loads((tmp_path / "selected_ids.json").read_text())["method"] == "kmeans_pp"
    assert select(tmp_path, train, ssi.SelectionConfig(), None) is train
    assert not (tmp_path / "selected_ids.json").exists() and not (tmp_path / "selected_train.jsonl").exists()


def test_scoring_head_learns_separable_classes_deterministically():
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1, 2], 50)
    features = ssi.standardize(rng.normal(size=(150, 8)) + 3 * np.eye(8)[labels])
    probabilities = ssi.train_scoring_head(features, labels, 3, epochs=3, seed=0)
    assert probabilities.shape == (150, 3) and np.allclose(probabilities.sum(axis=1), 1)
    assert (probabilities.argmax(axis=1) == labels).mean() > 0.9
    assert np.array_equal(probabilities, ssi.train_scoring_head(features, labels, 3, epochs=3, seed=0))
