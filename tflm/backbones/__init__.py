"""Pretrained backbones: loading them, freezing parts of them, switching them to faster kernels."""

from tflm.backbones.backbone_loader import BUNDLED_MINILM
from tflm.backbones.backbone_loader import check_sequence_lengths
from tflm.backbones.backbone_loader import load_backbone
from tflm.backbones.backbone_loader import load_preprocessor
from tflm.backbones.backbone_loader import resolve_backbone
from tflm.backbones.fast_kernels import use_fast_kernels
from tflm.backbones.freeze_spec import FreezeSpec
from tflm.backbones.freeze_spec import apply_freeze
from tflm.backbones.freeze_spec import freeze_unused_pooler
from tflm.backbones.freeze_spec import parameter_counts
from tflm.backbones.tiny_random_gpt2 import TINY_RANDOM_GPT2
