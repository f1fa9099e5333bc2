import json

import numpy as np
import pytest
import tensorflow as tf

from tflm.data import selection
from tflm.errors import UserError


def clusters(sizes, spread=1.0, separation=1000.0, seed=0):
    """Gaussian blobs around far-apart centers; returns points and the cluster id of each."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(len(sizes), 8)) * separation
    points = np.concatenate([c + spread * rng.normal(size=(n, 8)) for c, n in zip(centers, sizes)])
    return points, np.repeat(np.arange(len(sizes)), sizes)


def mislabeled_probabilities(n=40, classes=3, wrong=(3, 17, 29), seed=0):
    """The model agrees with the label (p=0.8-0.9) except on `wrong`, where it is confident in another class."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(classes, size=n)
    probabilities = np.full((n, classes), 0.0)
    confidence = rng.uniform(0.8, 0.9, size=n)
    target = labels.copy()
    target[list(wrong)] = (labels[list(wrong)] + 1) % classes
    probabilities += ((1 - confidence) / (classes - 1))[:, None]
    probabilities[np.arange(n), target] = confidence
    return probabilities, labels


def test_stratified_random_keeps_class_proportions_and_is_seeded():
    labels = ["pos"] * 80 + ["neg"] * 20
    chosen = selection.stratified_random(labels, 10, seed=1)
    assert len(set(chosen)) == 10 and list(chosen) == sorted(chosen)
    assert sum(labels[i] == "pos" for i in chosen) == 8
    assert np.array_equal(chosen, selection.stratified_random(labels, 10, seed=1))
    assert not np.array_equal(chosen, selection.stratified_random(labels, 10, seed=2))


def test_stratified_random_gives_every_class_one_example():
    labels = [0] * 97 + [1, 2, 3]
    chosen = selection.stratified_random(labels, 5, seed=0)
    assert sorted(labels[i] for i in chosen) == [0, 0, 1, 2, 3]


@pytest.mark.parametrize("pick", [selection.k_center_greedy, selection.kmeans_plus_plus])
def test_diversity_picks_one_point_per_cluster(pick):
    points, cluster = clusters([200, 50, 10, 5, 3], spread=1.0, separation=1000.0)
    for seed in range(5):
        chosen = pick(points, 5, seed)
        assert sorted(cluster[chosen]) == [0, 1, 2, 3, 4]
        assert np.array_equal(chosen, pick(points, 5, seed))


@pytest.mark.parametrize("pick", [selection.k_center_greedy, selection.kmeans_plus_plus])
def test_diversity_stays_unique_on_duplicate_points(pick):
    points = np.repeat([[0.0, 0.0], [1.0, 1.0]], 3, axis=0)
    assert sorted(pick(points, 6, seed=0)) == list(range(6))


def test_k_center_adds_the_farthest_point():
    points = np.array([[0.0], [1.0], [10.0], [4.0], [7.0]])
    for seed in range(5):
        chosen = selection.k_center_greedy(points, 4, seed)
        for i in range(1, 4):
            nearest_center = np.min(np.abs(points - points[chosen[:i]].T), axis=1)
            assert chosen[i] == np.argmax(nearest_center)


@pytest.mark.parametrize("measure", ["loss", "margin"])
def test_difficulty_ranks_mislabeled_examples_first(measure):
    probabilities, labels = mislabeled_probabilities()
    scores = selection.difficulty_scores(probabilities, labels, measure)
    assert sorted(selection.highest(scores, 3, seed=0)) == [3, 17, 29]


def test_difficulty_values_and_entropy_prefers_uniform_rows():
    probabilities = np.array([[0.9, 0.1, 0.0], [1 / 3, 1 / 3, 1 / 3], [0.5, 0.5, 0.0], [0.0, 1.0, 0.0]])
    labels = np.array([0, 1, 0, 0])
    loss = selection.difficulty_scores(probabilities, labels, "loss")
    np.testing.assert_allclose(loss, [-np.log(0.9), np.log(3), np.log(2), -np.log(1e-12)])
    margin = selection.difficulty_scores(probabilities, labels, "margin")
    np.testing.assert_allclose(margin, [-0.8, 0.0, 0.0, 1.0], atol=1e-12)
    entropy = selection.difficulty_scores(probabilities, labels, "entropy")
    assert list(selection.highest(entropy, 2, seed=0)) == [1, 2]


def test_el2n_matches_hand_computation():
    probabilities = np.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]])
    el2n = selection.gradient_scores(probabilities, [0, 1], "el2n")
    np.testing.assert_allclose(el2n, [np.sqrt(0.3**2 + 0.2**2 + 0.1**2), np.sqrt(0.1**2 + 0.9**2 + 0.8**2)])


def test_grad_norm_equals_the_dense_layer_gradient_norm():
    rng = np.random.default_rng(0)
    features = rng.normal(size=(4, 5)).astype(np.float32)
    labels = np.array([0, 2, 1, 2])
    dense = tf.keras.layers.Dense(3)
    dense.build((None, 5))
    expected = []
    for h, y in zip(features, labels):
        with tf.GradientTape() as tape:
            logits = dense(h[None])
            loss = tf.keras.losses.sparse_categorical_crossentropy(tf.constant([y]), logits, from_logits=True)
        gradients = tape.gradient(loss, dense.trainable_variables)
        expected.append(np.sqrt(sum(np.sum(g.numpy() ** 2) for g in gradients)))
    probabilities = tf.nn.softmax(dense(features)).numpy()
    grad_norm = selection.gradient_scores(probabilities, labels, "grad_norm", features)
    np.testing.assert_allclose(grad_norm, expected, rtol=1e-5)
    with pytest.raises(ValueError, match="features"):
        selection.gradient_scores(probabilities, labels, "grad_norm")


def test_highest_orders_by_score_and_breaks_ties_by_seed():
    scores = np.array([0.1, 0.9, 0.5, 0.5, 0.5, 0.5])
    picks = {seed: selection.highest(scores, 3, seed).tolist() for seed in range(10)}
    assert all(p[0] == 1 and set(p[1:]) <= {2, 3, 4, 5} for p in picks.values())
    assert len({tuple(p) for p in picks.values()}) > 1
    assert selection.highest(scores, 3, 4).tolist() == picks[4]


def test_per_class_takes_k_per_class_capped_at_class_size():
    labels = ["a"] * 10 + ["b"] * 6 + ["c"] * 2
    chosen = selection.per_class(labels, 3, lambda indices, k: np.arange(k))
    assert list(chosen) == [0, 1, 2, 10, 11, 12, 16, 17]


@pytest.mark.parametrize("strategy, method", [("random", None), ("diversity", "k_center"), ("diversity", "kmeans_pp"),
                                              ("difficulty", "margin"), ("gradient", "grad_norm")])
def test_select_per_class(strategy, method):
    points, labels = clusters([30, 12, 4], spread=1.0, separation=100.0)
    probabilities, _ = mislabeled_probabilities(n=46, wrong=())
    chosen = selection.select(strategy, 999, labels, 0, embeddings=points, probabilities=probabilities,
                              features=points, method=method, per_class_count=5)
    assert np.bincount(labels[chosen]).tolist() == [5, 5, 4]
    assert chosen.dtype == np.int64 and list(chosen) == sorted(set(chosen))


def test_select_budget_and_defaults():
    probabilities, labels = mislabeled_probabilities()
    chosen = selection.select("difficulty", 3, labels, 0, probabilities=probabilities)
    assert list(chosen) == [3, 17, 29]
    assert len(selection.select("random", 7, labels, 0)) == 7
    with pytest.raises(ValueError, match="embeddings"):
        selection.select("diversity", 3, labels, 0)


def test_select_rejects_bad_flags():
    labels = [0, 1] * 600
    with pytest.raises(UserError, match=r"^--select_budget=5000 is larger than the 1200 training examples$"):
        selection.select("random", 5000, labels, 0)
    with pytest.raises(UserError, match=r"^--select_budget must be >= 1$"):
        selection.select("random", 0, labels, 0)
    with pytest.raises(UserError, match=r"^--select=bogus: one of random, diversity, difficulty, gradient$"):
        selection.select("bogus", 5, labels, 0)
    bad_method = r"^--select_method=foo: for --select=diversity use one of k_center, kmeans_pp$"
    with pytest.raises(UserError, match=bad_method):
        selection.select("diversity", 5, labels, 0, method="foo")


def test_write_selected_ids(tmp_path):
    path = str(tmp_path / "selected.json")
    selection.write_selected_ids(path, np.array([4, 1]), "difficulty", "loss", 7, scores=np.arange(6) / 2)
    with open(path) as f:
        record = json.load(f)
    assert record == {"strategy": "difficulty", "method": "loss", "seed": 7, "per_class": 0, "count": 2,
                      "indices": [4, 1], "scores": [2.0, 0.5]}
    selection.write_selected_ids(path, [0], "random", None, 1)
    with open(path) as f:
        assert "scores" not in json.load(f)
