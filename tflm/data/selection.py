"""Choosing which training examples to fine-tune on, within a budget.

Pure numpy: the pipeline computes embeddings, probabilities or head features
with a model and passes them in. Every choice is deterministic under `seed`.

- random: stratified uniform sample; classes keep their share of the data.
- diversity: cover the embedding space. `k_center` is the greedy k-center
  core-set of Sener & Savarese (2018): repeatedly add the point farthest from
  the chosen ones. `kmeans_pp` is k-means++ seeding (Arthur & Vassilvitskii,
  2007): sample points with probability proportional to squared distance.
- difficulty: the examples the model finds hardest, by `loss` (cross-entropy),
  `margin` (true-class probability minus the best other class) or `entropy`.
- gradient: the examples with the largest gradients. `el2n` is the error L2
  norm ||p - y|| of Paul et al. (2021); `grad_norm` is the exact gradient norm
  of the final dense softmax layer (kernel and bias).
"""

import numpy as np

from tflm import run_files
from tflm.errors import UserError

STRATEGIES = ("random", "diversity", "difficulty", "gradient")
DIVERSITY_METHODS = ("k_center", "kmeans_pp")
DIFFICULTY_MEASURES = ("loss", "margin", "entropy")
GRADIENT_MEASURES = ("el2n", "grad_norm")
_METHODS = {"diversity": DIVERSITY_METHODS, "difficulty": DIFFICULTY_MEASURES, "gradient": GRADIENT_MEASURES}


def stratified_random(labels, budget, seed):
    """`budget` sorted indices, classes in proportion to their frequency, uniform within each class."""
    classes, inverse, counts = np.unique(np.asarray(labels), return_inverse=True, return_counts=True)
    _check_budget(budget, len(inverse))
    # Largest-remainder rounding: floors first, then the biggest fractional parts get the leftover.
    ideal = budget * counts / counts.sum()
    quota = np.floor(ideal).astype(np.int64)
    quota[np.argsort(quota - ideal, kind="stable")[: budget - quota.sum()]] += 1
    if budget >= len(classes):
        # Rare classes still get one example, taken from the largest quota (always >= 2 while one is 0).
        for empty in np.flatnonzero(quota == 0):
            quota[np.argmax(quota)] -= 1
            quota[empty] = 1
    rng = np.random.default_rng(seed)
    chosen = [rng.choice(np.flatnonzero(inverse == c), quota[c], replace=False) for c in range(len(classes))]
    return np.sort(np.concatenate(chosen)).astype(np.int64)


def k_center_greedy(embeddings, budget, seed):
    """Greedy k-center core-set indices, in selection order."""
    x = np.asarray(embeddings, dtype=np.float64)
    _check_budget(budget, len(x))
    chosen = [int(np.random.default_rng(seed).integers(len(x)))]
    distance = np.full(len(x), np.inf)
    for _ in range(budget - 1):
        distance = np.minimum(distance, np.linalg.norm(x - x[chosen[-1]], axis=1))
        distance[chosen[-1]] = -np.inf  # never re-pick a center, even among duplicate points
        chosen.append(int(np.argmax(distance)))
    return np.array(chosen, dtype=np.int64)


def kmeans_plus_plus(embeddings, budget, seed):
    """k-means++ seeding (D^2 sampling) over data points; unique indices in selection order."""
    x = np.asarray(embeddings, dtype=np.float64)
    _check_budget(budget, len(x))
    rng = np.random.default_rng(seed)
    chosen = [int(rng.integers(len(x)))]
    squared = np.full(len(x), np.inf)
    for _ in range(budget - 1):
        squared = np.minimum(squared, np.sum((x - x[chosen[-1]]) ** 2, axis=1))
        total = squared.sum()
        if total > 0:
            chosen.append(int(rng.choice(len(x), p=squared / total)))
        else:  # every remaining point duplicates a center: D^2 is undefined, take one uniformly
            chosen.append(int(rng.choice(np.setdiff1d(np.arange(len(x)), chosen))))
    return np.array(chosen, dtype=np.int64)


def difficulty_scores(probabilities, labels, measure):
    """Per-example difficulty; higher is harder."""
    p, y = _probabilities_and_labels(probabilities, labels)
    rows = np.arange(len(p))
    if measure == "loss":
        return -np.log(np.clip(p[rows, y], 1e-12, None))
    if measure == "margin":
        others = p.copy()
        others[rows, y] = -np.inf
        return others.max(axis=1) - p[rows, y]
    if measure == "entropy":
        return -np.sum(p * np.log(np.clip(p, 1e-12, None)), axis=1)
    raise ValueError(f"unknown difficulty measure {measure!r}")


def gradient_scores(probabilities, labels, measure, features=None):
    """Per-example gradient magnitude of the cross-entropy loss."""
    p, y = _probabilities_and_labels(probabilities, labels)
    error = np.linalg.norm(p - np.eye(p.shape[1])[y], axis=1)
    if measure == "el2n":
        return error
    if measure == "grad_norm":
        if features is None:
            raise ValueError("grad_norm needs the features that feed the final dense layer")
        h = np.asarray(features, dtype=np.float64)
        # The logit gradient is p - y; the kernel gradient h (p - y)^T has norm ||h|| ||p - y||, the bias one ||p - y||.
        return error * np.sqrt(np.sum(h**2, axis=1) + 1)
    raise ValueError(f"unknown gradient measure {measure!r}")


def highest(scores, budget, seed):
    """Indices of the `budget` highest scores in descending order; ties broken by a seeded shuffle."""
    scores = np.asarray(scores, dtype=np.float64)
    _check_budget(budget, len(scores))
    shuffled = np.random.default_rng(seed).permutation(len(scores))
    return shuffled[np.argsort(-scores[shuffled], kind="stable")[:budget]].astype(np.int64)


def per_class(labels, per_class_count, choose):
    """Sorted indices of min(per_class_count, class size) examples per class.

    `choose(indices, k)` returns positions within `indices`, the examples of one class.
    """
    labels = np.asarray(labels)
    chosen = []
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        chosen.append(members[np.asarray(choose(members, min(per_class_count, len(members))), dtype=np.int64)])
    return np.sort(np.concatenate(chosen)).astype(np.int64)


def example_scores(strategy, labels, probabilities=None, features=None, method=None):
    """The per-example scores `strategy` ranks by (difficulty or gradient); None for the others."""
    method = method or _METHODS.get(strategy, (None,))[0]
    if strategy == "difficulty":
        return difficulty_scores(_required(probabilities, "probabilities", strategy, len(labels)), labels, method)
    if strategy == "gradient":
        probabilities = _required(probabilities, "probabilities", strategy, len(labels))
        return gradient_scores(probabilities, labels, method, features)
    return None


def select(strategy, budget, labels, seed, embeddings=None, probabilities=None, features=None, method=None,
           per_class_count=0):
    """Sorted unique indices of the examples to train on; flags are checked here, inputs by the callees.

    With per_class_count > 0, `budget` is ignored and that many examples per class are chosen.
    For difficulty and gradient, `labels` are class ids indexing the columns of `probabilities`.
    """
    n = len(labels)
    if strategy not in STRATEGIES:
        raise UserError(f"--select={strategy}: one of {', '.join(STRATEGIES)}")
    methods = _METHODS.get(strategy)
    if methods is None and method:
        raise UserError(f"--select_method={method}: --select={strategy} takes no method")
    if methods is not None:
        method = method or methods[0]
        if method not in methods:
            raise UserError(f"--select_method={method}: for --select={strategy} use one of {', '.join(methods)}")
    if per_class_count < 0:
        raise UserError(f"--select_per_class={per_class_count} must be >= 0")
    if per_class_count == 0:
        if budget < 1:
            raise UserError("--select_budget must be >= 1")
        if budget > n:
            raise UserError(f"--select_budget={budget} is larger than the {n} training examples")

    labels = np.asarray(labels)
    if strategy == "random":
        def choose(indices, k):
            return stratified_random(labels[indices], k, seed)
    elif strategy == "diversity":
        embeddings = np.asarray(_required(embeddings, "embeddings", strategy, n))
        pick = k_center_greedy if method == "k_center" else kmeans_plus_plus

        def choose(indices, k):
            return pick(embeddings[indices], k, seed)
    else:
        scores = example_scores(strategy, labels, probabilities, features, method)

        def choose(indices, k):
            return highest(scores[indices], k, seed)

    if per_class_count > 0:
        return per_class(labels, per_class_count, choose)
    return np.sort(choose(np.arange(n), budget)).astype(np.int64)


def write_selected_ids(path, indices, strategy, method, seed, scores=None, per_class=0):
    """Records the selection as JSON; `scores` (one per example, all N) is written for the selected ones."""
    indices = [int(i) for i in indices]
    record = {"strategy": strategy, "method": method, "seed": seed, "per_class": per_class, "count": len(indices),
              "indices": indices}
    if scores is not None:
        record["scores"] = [float(scores[i]) for i in indices]
    run_files.write_json(path, record)


def _check_budget(budget, n):
    if not 1 <= budget <= n:
        raise ValueError(f"budget {budget} must be between 1 and the {n} examples")


def _probabilities_and_labels(probabilities, labels):
    p = np.asarray(probabilities, dtype=np.float64)
    y = np.asarray(labels, dtype=np.int64)
    if p.ndim != 2 or y.shape != (len(p),):
        raise ValueError(f"probabilities {p.shape} and labels {y.shape} do not match")
    return p, y


def _required(value, name, strategy, n):
    if value is None or len(value) != n:
        raise ValueError(f"--select={strategy} needs {name} for all {n} examples")
    return value
