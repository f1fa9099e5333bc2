"""Back-translation: paraphrases of classification text via two translation exports.

Text goes source -> pivot language -> source through two SavedModels written
by tflm's translate pipeline (signature `serving_default`: input `text`, a 1-D
tf.string batch; output `output_text`). The round trip rewords a sentence while
mostly keeping its meaning, so a paraphrase can take its source's label.
"""

import importlib

from absl import logging
import keras
import tensorflow as tf

from tflm.data.classification_examples import ClassificationExamples
from tflm.errors import UserError


def _load_signature(path):
    """The `serving_default` signature of the export at `path`, checked to map `text` to `output_text`."""
    importlib.import_module("tensorflow_text")  # Registers the tokenizer ops the graphs use.
    if not tf.io.gfile.isdir(path):
        raise UserError(f"--back_translate: {path}: no such directory (want a translation SavedModel)")
    try:
        loaded = tf.saved_model.load(path)
    except (OSError, ValueError, tf.errors.OpError) as e:
        raise UserError(f"--back_translate: {path}: cannot load the SavedModel: {e}") from e
    signature = loaded.signatures.get("serving_default")
    if signature is None:
        raise UserError(f"--back_translate: {path}: the SavedModel has no serving_default signature")
    inputs = signature.structured_input_signature[1]
    outputs = signature.structured_outputs
    if set(inputs) != {"text"} or inputs["text"].dtype != tf.string or "output_text" not in outputs:
        raise UserError(f"--back_translate: {path}: serving_default takes {sorted(inputs)} and returns "
                        f"{sorted(outputs)}; want `text` -> `output_text` (a translation export)")
    return signature


def back_translate(texts, forward_export, backward_export, batch_size=32):
    """Paraphrases of `texts` (list of str), in order: through `forward_export`, then back through `backward_export`."""
    forward, backward = _load_signature(forward_export), _load_signature(backward_export)
    outputs = []
    progbar = keras.utils.Progbar(len(texts), unit_name="example")
    for start in range(0, len(texts), batch_size):
        pivot = forward(text=tf.constant(texts[start:start + batch_size], tf.string))["output_text"]
        outputs.extend(t.decode("utf-8", "replace") for t in backward(text=pivot)["output_text"].numpy())
        progbar.update(len(outputs))
    return outputs


def back_translate_classification_examples(examples, forward_export, backward_export, batch_size=32):
    """A new ClassificationExamples: the originals, then back-translated paraphrases of them.

    Only the first text column is translated; labels, and the second text of
    sentence pairs, are copied. Empty paraphrases, and ones equal to their
    source up to case and surrounding space, are dropped.
    """
    sources = examples.texts[0]
    paraphrases = back_translate(sources, forward_export, backward_export, batch_size)
    kept = [i for i, (source, paraphrase) in enumerate(zip(sources, paraphrases))
            if paraphrase.strip() and paraphrase.strip().lower() != source.strip().lower()]
    texts = [sources + [paraphrases[i].strip() for i in kept]]
    texts += [column + [column[i] for i in kept] for column in examples.texts[1:]]
    labels = examples.labels + [examples.labels[i] for i in kept]
    logging.info("Back-translation added %d paraphrases to %d examples (%d dropped as empty or unchanged)",
                 len(kept), len(examples), len(examples) - len(kept))
    return ClassificationExamples(texts, labels, origin=examples.origin)
