"""Is the warm-started decoder's cross-attention learning? Attention spread and gradient sizes per block.

  python benchmarks/cross_attention_probe.py --label=fresh_random --cross_attention_init=random
  python benchmarks/cross_attention_probe.py --label=samsum_1epoch --model_dir=/work/bench_runs/samsum/model

Builds the warm-started MiniLM2MiniLM (fresh, or restored from a summarize
run's --model_dir, which must share the source vocabulary), runs one
teacher-forced batch of SAMSum validation pairs and prints, per decoder block:
the cross-attention's entropy relative to uniform attention over the source
(1.0: it attends to nothing in particular), its largest weight, and the
gradient RMS of the cross- and self-attention query kernels. A cross-attention
whose query/key gradients are orders of magnitude below the self-attention's
is stuck: its gradients fall to AdamW's epsilon (1e-6) and below. Writes
benchmarks/results/cross_attention_probe.json (one entry per --label).
"""

import json
import os
import sys

import numpy as np
from absl import app
from absl import flags

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks.common import RESULTS_DIR  # noqa: E402

flags.DEFINE_string("label", None, "Name of this probe in the results file.")
flags.DEFINE_string("model_dir", "", "A summarize run to restore (its best weights); empty: a fresh model.")
flags.DEFINE_enum("cross_attention_init", "random", ["random", "self_attention"], "Start of a fresh model.")
flags.DEFINE_string("data", os.path.join("..", "shared", "data", "samsum", "validation.jsonl"), "jsonl pairs.")
flags.DEFINE_string("source_field", "dialogue", "Source field.")
flags.DEFINE_string("target_field", "summary", "Target field.")
flags.DEFINE_integer("max_source_length", 256, "As in the run.")
flags.DEFINE_integer("max_target_length", 64, "As in the run.")
flags.DEFINE_integer("examples", 32, "Pairs in the probed batch (the first N).")
flags.mark_flag_as_required("label")
FLAGS = flags.FLAGS


def rms(x):
    return float(np.sqrt(np.mean(np.square(x))))


def cross_attention_weights(block, x, encoder_output, encoder_mask, decoder_mask):
    """[batch, heads, target, source] weights of `block`'s cross-attention, recomputed from its sublayers."""
    import tensorflow as tf

    steps = tf.shape(x)[1]
    causal = tf.linalg.band_part(tf.ones((steps, steps), tf.bool), -1, 0)[None] & decoder_mask[:, None, :]
    # TransformerDecoder (post-LN, as BERT): the cross-attention's query is the self-attention sublayer's output.
    query = block._self_attention_layer_norm(x + block._self_attention_layer(x, x, attention_mask=causal))
    attention = block._cross_attention_layer
    q, k = attention._query_dense(query), attention._key_dense(encoder_output)
    scores = tf.einsum("btnh,bsnh->bnts", q, k) / np.sqrt(q.shape[-1])
    scores += (1.0 - tf.cast(encoder_mask, scores.dtype))[:, None, None, :] * -1e9
    return tf.nn.softmax(scores, axis=-1).numpy()


def main(argv):
    del argv
    import tensorflow as tf

    from tflm import data
    from tflm import training
    from tflm.tasks import Seq2SeqConfig
    from tflm.tasks import Seq2SeqTask

    task = Seq2SeqTask(Seq2SeqConfig(
        max_source_length=FLAGS.max_source_length, max_target_length=FLAGS.max_target_length,
        cross_attention_init=FLAGS.cross_attention_init))
    model, preprocessor = task.build_model("float32", FLAGS.model_dir or None)
    restored = training.restore_for_inference(model, FLAGS.model_dir) if FLAGS.model_dir else "fresh"
    with open(FLAGS.data, encoding="utf-8") as f:
        rows = [json.loads(line) for line in f if line.strip()][:FLAGS.examples]
    examples = data.Seq2SeqExamples([r[FLAGS.source_field] for r in rows], [r[FLAGS.target_field] for r in rows],
                                    FLAGS.data)
    features, targets = next(iter(task.build_inputs(examples, preprocessor).evaluation(len(rows))))
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(task.loss(targets, model(features)))
    gradients = dict(zip((v.path for v in model.trainable_variables),
                         tape.gradient(loss, model.trainable_variables)))

    encoder_mask = features["encoder_padding_mask"]
    decoder_mask = tf.cast(features["decoder_padding_mask"], tf.bool)
    source_lengths = tf.reduce_sum(tf.cast(encoder_mask, tf.float32), axis=1).numpy()
    encoder_output = model.call_encoder(features["encoder_token_ids"], encoder_mask)
    x = model._embed_targets(features["decoder_token_ids"])
    blocks = []
    for block in model.decoder.transformer_layers:
        weights = cross_attention_weights(block, x, encoder_output, encoder_mask, decoder_mask)
        entropy = -(weights * np.log(weights + 1e-12)).sum(-1) / np.log(source_lengths)[:, None, None]
        valid = decoder_mask.numpy()[:, None, :].repeat(weights.shape[1], axis=1)
        cross, own = block._cross_attention_layer, block._self_attention_layer
        blocks.append({
            "block": block.name,
            "entropy_vs_uniform": float(entropy[valid].mean()),
            "max_weight": float(weights.max(-1)[valid].mean()),
            "cross_query_grad_rms": rms(gradients[cross._query_dense.kernel.path]),
            "self_query_grad_rms": rms(gradients[own._query_dense.kernel.path]),
            "cross_query_kernel_rms": rms(cross._query_dense.kernel.numpy()),
        })
        x = block(decoder_sequence=x, encoder_sequence=encoder_output,
                  decoder_padding_mask=features["decoder_padding_mask"], encoder_padding_mask=encoder_mask)

    print(f"\n{FLAGS.label} ({restored}; loss {float(loss):.3f})")
    print(f"  {'block':<18}{'entropy/uniform':>16}{'max weight':>12}{'cross q grad':>14}{'self q grad':>13}"
          f"{'cross q rms':>13}")
    for b in blocks:
        print(f"  {b['block']:<18}{b['entropy_vs_uniform']:>16.3f}{b['max_weight']:>12.3f}"
              f"{b['cross_query_grad_rms']:>14.1e}{b['self_query_grad_rms']:>13.1e}{b['cross_query_kernel_rms']:>13.4f}")
    path = os.path.join(RESULTS_DIR, "cross_attention_probe.json")
    results = {}
    if os.path.exists(path):
        with open(path) as f:
            results = json.load(f)
    results[FLAGS.label] = {"restored": restored, "loss": float(loss), "examples": len(rows), "blocks": blocks,
                            "model_dir": FLAGS.model_dir, "cross_attention_init": FLAGS.cross_attention_init}
    os.makedirs(RESULTS_DIR, exist_ok=True)
    with open(path, "w") as f:
        json.dump(results, f, indent=1)
    print(f"  wrote {path}")


if __name__ == "__main__":
    app.run(main)
