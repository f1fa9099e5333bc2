"""Accuracy, per-class and macro precision/recall/F1, confusion matrix."""

import numpy as np

# The report's scalar quality metrics: what --best_metric and a search can rank by.
CLASSIFICATION_METRICS = ("accuracy", "macro_f1", "macro_precision", "macro_recall")


def classification_report(label_ids, predicted_ids, label_names):
    """Computes classification metrics from integer ids.

    Precision (recall) of a class that is never predicted (never present) is
    0, as in scikit-learn with zero_division=0.

    Returns a JSON-ready dict: accuracy, macro_precision, macro_recall,
    macro_f1, per_class {name: {precision, recall, f1, support}},
    confusion_matrix (rows: true label, columns: predicted), labels.
    """
    label_ids = np.asarray(label_ids, dtype=np.int64)
    predicted_ids = np.asarray(predicted_ids, dtype=np.int64)
    n = len(label_names)
    confusion = np.zeros((n, n), dtype=np.int64)
    np.add.at(confusion, (label_ids, predicted_ids), 1)
    true_positives = np.diag(confusion).astype(np.float64)
    predicted = confusion.sum(axis=0)
    support = confusion.sum(axis=1)
    precision = np.divide(true_positives, predicted, out=np.zeros(n), where=predicted > 0)
    recall = np.divide(true_positives, support, out=np.zeros(n), where=support > 0)
    denominator = precision + recall
    f1 = np.divide(2 * precision * recall, denominator, out=np.zeros(n), where=denominator > 0)
    return {
        "accuracy": float(true_positives.sum() / max(len(label_ids), 1)),
        "macro_precision": float(precision.mean()),
        "macro_recall": float(recall.mean()),
        "macro_f1": float(f1.mean()),
        "num_examples": int(len(label_ids)),
        "per_class": {
            name: {
                "precision": float(precision[i]),
                "recall": float(recall[i]),
                "f1": float(f1[i]),
                "support": int(support[i]),
            }
            for i, name in enumerate(label_names)
        },
        "labels": list(label_names),
        "confusion_matrix": confusion.tolist(),
    }


def format_classification_report(report):
    """A plain-text table of a `classification_report` result."""
    names = report["labels"]
    width = max(12, max(len(n) for n in names) + 2)
    lines = [f"{'label':<{width}}{'precision':>10}{'recall':>10}{'f1':>10}{'support':>10}"]
    for name in names:
        row = report["per_class"][name]
        lines.append(
            f"{name:<{width}}{row['precision']:>10.4f}{row['recall']:>10.4f}"
            f"{row['f1']:>10.4f}{row['support']:>10d}"
        )
    lines.append(
        f"{'macro avg':<{width}}{report['macro_precision']:>10.4f}"
        f"{report['macro_recall']:>10.4f}{report['macro_f1']:>10.4f}{report['num_examples']:>10d}"
    )
    lines.append(f"accuracy {report['accuracy']:.4f} on {report['num_examples']} examples")
    lines.append("confusion matrix (rows: true, columns: predicted):")
    cell = max(6, max(len(n) for n in names) + 1)
    lines.append(" " * width + "".join(f"{n[:cell - 1]:>{cell}}" for n in names))
    for name, row in zip(names, report["confusion_matrix"]):
        lines.append(f"{name:<{width}}" + "".join(f"{v:>{cell}d}" for v in row))
    return "\n".join(lines)
