"""A tiny randomly initialised GPT-2, the offline stand-in for causal-LM presets.

GPT-2 and other KerasHub CausalLM presets need the network. `tiny_random_gpt2`
as a --backbone gives a 2-block GPT-2 with a byte-level vocabulary (the 256
byte symbols of GPT-2's tokenizer and a single merge, since KerasHub's
tokenizer needs a non-empty merge table; nearly every byte is a token):
it can encode any text, needs no download, and trains in seconds, which is
what offline runs and tests of the causal-LM path need. It is written once
as a KerasHub preset under $TFLM_CACHE_DIR (default ~/.cache/tflm).
"""

import os
import shutil
import tempfile

TINY_RANDOM_GPT2 = "tiny_random_gpt2"
END_OF_TEXT = "<|endoftext|>"
MERGES = ["\u0120 t"]  # " t": space-marker + t.


def byte_level_vocabulary():
    """GPT-2's byte-to-symbol alphabet, the merged symbols and the end-of-text token."""
    from keras_hub.src.tokenizers.byte_pair_tokenizer import bytes_to_unicode

    symbols = bytes_to_unicode()[1]
    vocabulary = {symbol: i for i, symbol in enumerate(symbols)}
    for merge in MERGES:
        vocabulary[merge.replace(" ", "")] = len(vocabulary)
    vocabulary[END_OF_TEXT] = len(vocabulary)
    return vocabulary


def write_tiny_random_gpt2(directory, num_layers=2, hidden_dim=64, num_heads=2, max_sequence_length=512, seed=0):
    """Saves a randomly initialised GPT-2 causal LM (backbone, tokenizer, preprocessor) as a KerasHub preset."""
    import keras
    import keras_hub

    keras.utils.set_random_seed(seed)
    tokenizer = keras_hub.models.GPT2Tokenizer(vocabulary=byte_level_vocabulary(), merges=MERGES)
    backbone = keras_hub.models.GPT2Backbone(
        vocabulary_size=tokenizer.vocabulary_size(), num_layers=num_layers, num_heads=num_heads,
        hidden_dim=hidden_dim, intermediate_dim=4 * hidden_dim, max_sequence_length=max_sequence_length,
    )
    preprocessor = keras_hub.models.GPT2CausalLMPreprocessor(tokenizer, sequence_length=128)
    keras_hub.models.GPT2CausalLM(backbone, preprocessor).save_to_preset(directory)
    return directory


def tiny_random_gpt2_preset():
    """Path of the cached tiny random GPT-2 preset, written on first use."""
    cache = os.environ.get("TFLM_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "tflm")
    path = os.path.join(cache, "presets", TINY_RANDOM_GPT2)
    if not os.path.isfile(os.path.join(path, "config.json")):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        # Written beside and renamed, so concurrent first uses never see half a preset.
        staging = tempfile.mkdtemp(prefix=f".{TINY_RANDOM_GPT2}-", dir=os.path.dirname(path))
        try:
            write_tiny_random_gpt2(staging)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        try:
            os.rename(staging, path)
        except OSError:  # Another process finished first.
            shutil.rmtree(staging, ignore_errors=True)
    return path
