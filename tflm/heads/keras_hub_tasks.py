"""Finding the KerasHub task class (Seq2SeqLM, MaskedLM, CausalLM) for a backbone.

KerasHub registers one task class per backbone family (`BertMaskedLM` has
`backbone_cls = BertBackbone`); tflm uses that link to attach the family's own
head instead of re-implementing it.
"""

from tflm.errors import UserError


def backbone_class(preset):
    """The KerasHub backbone class a resolved preset's config names."""
    from keras_hub.src.utils.preset_utils import get_preset_loader

    try:
        return get_preset_loader(preset).check_backbone_class()
    except Exception as e:  # KerasHub raises many types; keep it one line.
        raise UserError(f"backbone {preset}: cannot read its config ({str(e).splitlines()[0]})") from None


def task_class(backbone_cls, base):
    """The registered subclass of `base` (e.g. keras_hub.models.MaskedLM) for `backbone_cls`, or None."""
    for cls in _subclasses(base):
        if getattr(cls, "backbone_cls", None) is backbone_cls:
            return cls
    return None


def _subclasses(cls):
    for sub in cls.__subclasses__():
        yield sub
        yield from _subclasses(sub)
