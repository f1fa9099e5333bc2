"""Masked-LM and causal-LM models from KerasHub presets, for continued pretraining.

The backbone family's own KerasHub task is used (`BertMaskedLM`,
`GPT2CausalLM`, ...): its head is the published one, and a preset that ships
head weights (a KerasHub MaskedLM/CausalLM preset, or one tflm wrote) loads
them; otherwise the head starts fresh on the pretrained backbone.
"""

from tflm.backbones import backbone_loader
from tflm.errors import UserError
from tflm.heads import keras_hub_tasks

OBJECTIVES = ("mlm", "causal_lm")


def _task_bases():
    import keras_hub

    return {"mlm": keras_hub.models.MaskedLM, "causal_lm": keras_hub.models.CausalLM}


def supported_objectives(preset):
    """The objectives (of OBJECTIVES) KerasHub has a head for in `preset`'s backbone family."""
    backbone_cls = keras_hub_tasks.backbone_class(preset)
    return [name for name, base in _task_bases().items() if keras_hub_tasks.task_class(backbone_cls, base)]


def resolve_objective(preset, objective):
    """`objective`, or for "auto" the one the preset's backbone family supports (MLM first)."""
    supported = supported_objectives(preset)
    if objective == "auto":
        if not supported:
            raise UserError(f"backbone {preset}: {keras_hub_tasks.backbone_class(preset).__name__} has neither "
                            "a masked-LM nor a causal-LM head in KerasHub")
        return supported[0]
    if objective not in supported:
        raise UserError(f"--objective={objective}: backbone {preset} supports "
                        f"{', '.join(supported) or 'no language-model objective'}")
    return objective


def load_language_model(preset, objective, dtype, sequence_length):
    """(task model without preprocessor, tokenizing preprocessor) for a resolved preset.

    The preprocessor turns raw strings into the model's features: a
    TextClassifierPreprocessor for MLM (masking is applied later, in tf.data),
    the family's CausalLMPreprocessor (features, next-token labels, weights)
    for causal LM.
    """
    import keras_hub

    base = _task_bases()[objective]
    model = backbone_loader.load_with_user_errors(base.from_preset, preset, f"{objective} model",
                                                  preprocessor=None, dtype=dtype)
    preprocessor_cls = (keras_hub.models.TextClassifierPreprocessor if objective == "mlm"
                        else keras_hub.models.CausalLMPreprocessor)
    preprocessor = backbone_loader.load_preprocessor(preset, preprocessor_cls, sequence_length=sequence_length)
    return model, preprocessor
