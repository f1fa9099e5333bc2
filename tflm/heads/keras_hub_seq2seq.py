"""KerasHub Seq2SeqLM presets (BART and alike) behind tflm's seq2seq interface.

The preset's own task model is used as is (it already has the decoding
interface tflm's generation drives); its tokenizer and packing conventions
(e.g. BART's `</s><s>` decoder prompt) are read off its preprocessor and
re-expressed as a `Seq2SeqPreprocessor`, so data, training, generation,
metrics and export are the same code for both seq2seq routes.
"""

import types

from tflm.backbones import backbone_loader
from tflm.errors import UserError
from tflm.heads import keras_hub_tasks
from tflm.generation.decoding import SpecialTokens
from tflm.heads.seq2seq_preprocessor import Seq2SeqPreprocessor


def seq2seq_lm_class(preset):
    """The KerasHub Seq2SeqLM subclass for `preset`'s backbone, or None (encoder-only backbones)."""
    import keras_hub

    return keras_hub_tasks.task_class(keras_hub_tasks.backbone_class(preset), keras_hub.models.Seq2SeqLM)


def _values(value):
    return tuple(int(v) for v in (value if isinstance(value, (list, tuple)) else [value]))


def load_keras_hub_seq2seq(preset, task_cls, dtype, max_source_length, max_target_length):
    """(Seq2SeqLM task model, Seq2SeqPreprocessor) for a resolved KerasHub preset."""
    model = backbone_loader.load_with_user_errors(task_cls.from_preset, preset, "seq2seq model", dtype=dtype)
    hub_preprocessor = model.preprocessor
    if hub_preprocessor is None:
        raise UserError(f"backbone {preset}: the preset has no preprocessor (tokenizer)")
    hub_preprocessor.build(None)  # Creates its packers.
    encoder, decoder = hub_preprocessor.encoder_packer, hub_preprocessor.decoder_packer
    source = SpecialTokens(_values(encoder.start_value), _values(encoder.end_value)[0], int(encoder.pad_value))
    target = SpecialTokens(_values(decoder.start_value), _values(decoder.end_value)[0], int(decoder.pad_value))
    preprocessor = Seq2SeqPreprocessor(hub_preprocessor.tokenizer, hub_preprocessor.tokenizer, source, target,
                                       max_source_length, max_target_length)
    # Training and export call the task model directly, with our features.
    model.preprocessor = None
    return model, preprocessor


def freezable_parts(model):
    """(encoder, decoder) views of a KerasHub seq2seq backbone for `apply_freeze`.

    A token embedding both stacks share (BART's `token_embedding`) belongs to
    the encoder part, which reads it first: --freeze=embeddings freezes it, and
    with it the decoder's input and tied output embedding.
    """
    backbone = model.backbone
    embeddings = [l for l in backbone.layers if "embedding" in l.name]
    shared = [l for l in embeddings if not l.name.startswith(("encoder", "decoder"))]

    def part(prefix, blocks, extra=()):
        layers = list(extra) + [l for l in embeddings if l.name.startswith(prefix)]
        weights = [w for layer in layers + list(blocks) for w in layer.weights]
        return types.SimpleNamespace(transformer_layers=list(blocks), layers=layers, weights=weights)

    return (part("encoder", backbone.encoder_transformer_layers, shared),
            part("decoder", backbone.decoder_transformer_layers))
