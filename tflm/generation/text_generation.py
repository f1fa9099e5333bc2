"""Strings in, generated strings out, for any seq2seq route's model and preprocessor."""


def generate_text(model, preprocessor, decoding_config, texts):
    """Generated strings for a batch of source strings (a tf.string tensor), in TF ops.

    Evaluation and the exported signature both run this, so the metrics are
    those of what is served.
    """
    features = preprocessor.encode_prompts(texts)
    return preprocessor.decode_targets(preprocessor.generate(model, features, decoding_config))
