"""How fast an export answers one request, measured the way a server runs it."""

import time

import numpy as np
import tensorflow as tf


def serving_latency(export_dir, texts, repeats=200, warmup=20):
    """p50/p95 milliseconds of single-text requests to `serving_default` (after `warmup` calls)."""
    import tensorflow_text  # noqa: F401  Registers the tokenizer ops the graph uses.

    serve = tf.saved_model.load(export_dir).signatures["serving_default"]
    for i in range(warmup):
        serve(text=tf.constant([texts[i % len(texts)]]))
    times = []
    for i in range(repeats):
        request = tf.constant([texts[i % len(texts)]])
        start = time.perf_counter()
        serve(text=request)
        times.append((time.perf_counter() - start) * 1000)
    return {"p50_ms": float(np.percentile(times, 50)), "p95_ms": float(np.percentile(times, 95))}
