"""Pretrained backbones: loading them and freezing parts of them."""

from tflm.backbones.backbone_loader import BUNDLED_MINILM
from tflm.backbones.backbone_loader import load_backbone
from tflm.backbones.backbone_loader import load_preprocessor
from tflm.backbones.backbone_loader import resolve_backbone
from tflm.backbones.freeze_spec import FreezeSpec
from tflm.backbones.freeze_spec import apply_freeze
from tflm.backbones.freeze_spec import freeze_unused_pooler
from tflm.backbones.freeze_spec import parameter_counts
from tflm.backbones.tiny_random_gpt2 import TINY_RANDOM_GPT2
