"""Declarative freezing of backbone parts.

Spec grammar (comma-separated items, usable straight from a flag):
  embeddings       every embedding layer and the embedding layer norm
  blocks:A-B       transformer blocks A..B inclusive (0 is the lowest)
  blocks:N         one block
  bottom:N         the lowest N blocks (same as blocks:0-(N-1))
  pattern:REGEX    every backbone variable whose path matches REGEX (re.search)
  all              the whole backbone (feature extraction)
Example: `--freeze=embeddings,bottom:4` or `--freeze=pattern:attention/query`.
Freezing is per variable (`variable.trainable = False`), so the optimizer
never sees frozen weights and they stay bit-identical during training.
"""

import dataclasses
import re

import numpy as np

from tflm.errors import UserError

_BLOCK_NAME = re.compile(r"(?:transformer|encoder)_layer_(\d+)$")


@dataclasses.dataclass(frozen=True)
class FreezeSpec:
    embeddings: bool = False
    blocks: tuple = ()  # Sorted block indices.
    bottom: int = 0
    patterns: tuple = ()
    whole_backbone: bool = False

    @classmethod
    def parse(cls, text, flag_name="--freeze"):
        """Parses the grammar in the module docstring; '' means nothing."""
        embeddings, whole, bottom = False, False, 0
        blocks, patterns = set(), []
        for item in (s.strip() for s in (text or "").split(",")):
            if not item:
                continue
            kind, _, arg = item.partition(":")
            if kind == "embeddings" and not arg:
                embeddings = True
            elif kind == "all" and not arg:
                whole = True
            elif kind == "bottom":
                bottom = max(bottom, _parse_int(arg, item, flag_name))
            elif kind == "blocks":
                lo, dash, hi = arg.partition("-")
                lo = _parse_int(lo, item, flag_name)
                hi = _parse_int(hi, item, flag_name) if dash else lo
                if hi < lo:
                    raise UserError(f"{flag_name}: {item!r} is an empty range")
                blocks.update(range(lo, hi + 1))
            elif kind == "pattern" and arg:
                try:
                    re.compile(arg)
                except re.error as e:
                    raise UserError(f"{flag_name}: bad regex in {item!r}: {e}")
                patterns.append(arg)
            else:
                raise UserError(
                    f"{flag_name}: unknown item {item!r} (expected embeddings, "
                    "blocks:A-B, bottom:N, pattern:REGEX or all)"
                )
        return cls(embeddings, tuple(sorted(blocks)), bottom, tuple(patterns), whole)


def _parse_int(text, item, flag_name):
    if not text.isdigit():
        raise UserError(f"{flag_name}: {item!r} needs a non-negative integer")
    return int(text)


def transformer_blocks(backbone):
    """The backbone's transformer blocks, lowest first."""
    blocks = getattr(backbone, "transformer_layers", None)
    if blocks:
        return list(blocks)
    numbered = []
    for layer in backbone.layers:
        match = _BLOCK_NAME.search(layer.name)
        if match:
            numbered.append((int(match.group(1)), layer))
    return [layer for _, layer in sorted(numbered, key=lambda p: p[0])]


def embedding_layers(backbone):
    return [l for l in backbone.layers if "embedding" in l.name and l.weights]


def apply_freeze(backbone, spec, flag_name="--freeze"):
    """Marks the variables chosen by `spec` non-trainable.

    Returns the list of frozen variables. Raises UserError when the spec
    names blocks the backbone does not have or a pattern that matches nothing
    (almost always a typo).
    """
    frozen = []
    if spec.whole_backbone:
        frozen.extend(backbone.weights)
    if spec.embeddings:
        layers = embedding_layers(backbone)
        if not layers:
            raise UserError(f"{flag_name}: backbone has no embedding layers")
        for layer in layers:
            frozen.extend(layer.weights)
    blocks = transformer_blocks(backbone)
    wanted = set(spec.blocks) | set(range(spec.bottom))
    if wanted and max(wanted) >= len(blocks):
        raise UserError(
            f"{flag_name}: block {max(wanted)} requested but the backbone has "
            f"{len(blocks)} blocks (0-{len(blocks) - 1})"
        )
    for index in sorted(wanted):
        frozen.extend(blocks[index].weights)
    for pattern in spec.patterns:
        matched = [v for v in backbone.weights if re.search(pattern, v.path)]
        if not matched:
            raise UserError(
                f"{flag_name}: pattern:{pattern} matches no backbone variable "
                f"(paths look like {backbone.weights[-1].path!r})"
            )
        frozen.extend(matched)
    unique = {id(v): v for v in frozen}
    for variable in unique.values():
        variable.trainable = False
    return list(unique.values())


def freeze_unused_pooler(backbone):
    """Keeps a BERT-style pooler out of the optimizer when the head does not use it.

    Gradients would never reach it, and it would inflate the trainable
    parameter count.
    """
    for layer in backbone.layers:
        if layer.name == "pooled_dense":
            layer.trainable = False


def parameter_counts(model):
    """(trainable, frozen) parameter counts of a Keras model."""
    trainable_ids = {id(v) for v in model.trainable_weights}
    trainable = frozen = 0
    seen = set()
    for v in model.weights:
        if id(v) in seen:
            continue
        seen.add(id(v))
        size = int(np.prod(v.shape))
        if id(v) in trainable_ids:
            trainable += size
        else:
            frozen += size
    return trainable, frozen
