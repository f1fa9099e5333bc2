"""Shared by the seq2seq benchmarks: train with the pipeline, score the export on a test set.

The test set is decoded by the exported SavedModel itself (raw strings in,
strings out, loaded with only TensorFlow + tensorflow-text), so the reported
BLEU/ROUGE and decode speed are those of what TF Serving would serve. Scores
come from tflm.metrics; when sacrebleu / rouge-score are installed they are
reported too, as a cross-check.
"""

import json
import os
import time

from benchmarks.common import RESULTS_DIR
from tflm.metrics import generation_metrics


def decode_with_export(export_dir, sources, batch_size=32):
    """(outputs, examples per second) from serving_default over `sources`."""
    import tensorflow as tf
    import tensorflow_text  # noqa: F401  Registers the tokenizer ops.

    serve = tf.saved_model.load(export_dir).signatures["serving_default"]
    serve(text=tf.constant(sources[:2]))  # Warm-up (first call initialises).
    outputs = []
    start = time.time()
    for i in range(0, len(sources), batch_size):
        batch = serve(text=tf.constant(sources[i:i + batch_size]))["output_text"].numpy()
        outputs.extend(t.decode("utf-8") for t in batch)
        print(f"\r  decoded {len(outputs)}/{len(sources)}", end="", flush=True)
    print()
    return outputs, len(sources) / (time.time() - start)


def reference_scores(outputs, references):
    """The same metrics from sacrebleu and rouge-score, if installed (else empty)."""
    scores = {}
    try:
        import sacrebleu

        scores["sacrebleu_bleu"] = sacrebleu.corpus_bleu(outputs, [references]).score
    except ImportError:
        pass
    try:
        from rouge_score import rouge_scorer

        scorer = rouge_scorer.RougeScorer(list(generation_metrics.ROUGE_TYPES), use_stemmer=True)
        for name in generation_metrics.ROUGE_TYPES:
            scores[f"rouge_score_{name}"] = 100 * sum(
                scorer.score(r, o)[name].fmeasure for o, r in zip(outputs, references)) / len(outputs)
    except ImportError:
        pass
    return scores


def summarize(name, model_dir, export_dir, wall_seconds, batch_size, settings, sources, references, examples_out):
    with open(os.path.join(model_dir, "train_stats.json")) as f:
        stats = json.load(f)
    with open(os.path.join(model_dir, "eval_results.json")) as f:
        validation = json.load(f)
    outputs, decode_rate = decode_with_export(export_dir, sources)
    report = generation_metrics.generation_report(outputs, references)
    result = {
        "benchmark": name,
        "test": {k: report[k] for k in generation_metrics.GENERATION_METRICS},
        "test_examples": len(sources),
        "reference_implementations": reference_scores(outputs, references),
        "validation": {k: validation[k] for k in generation_metrics.GENERATION_METRICS},
        "train_examples_per_second": stats["steps_per_second"] * batch_size if stats["steps_per_second"] else None,
        "decode_examples_per_second": decode_rate,
        "wall_seconds": wall_seconds,
        "export": export_dir,
        "settings": settings,
        "examples": [{"source": s, "reference": r, "output": o}
                     for s, r, o in list(zip(sources, references, outputs))[:examples_out]],
    }
    os.makedirs(RESULTS_DIR, exist_ok=True)
    with open(os.path.join(RESULTS_DIR, f"{name}.json"), "w") as f:
        json.dump(result, f, indent=1, ensure_ascii=False)
    print(f"\n{name}")
    for key, value in result["test"].items():
        print(f"  test {key:<30}{value:>10.2f}")
    for key, value in result["reference_implementations"].items():
        print(f"  ({key:<34}{value:>10.2f})")
    print(f"  {'train examples/s':<35}{result['train_examples_per_second'] or 0:>10.1f}")
    print(f"  {'decode examples/s (export, batch 32)':<35}{decode_rate:>10.1f}")
    print(f"  {'wall time (min)':<35}{wall_seconds / 60:>10.1f}")
    print(f"  settings: {' '.join(settings)}")
    print(f"  wrote {os.path.join(RESULTS_DIR, name + '.json')}")
    return result
