"""Layer-wise learning-rate decay: lower backbone layers take smaller steps.

The lower blocks of a pretrained encoder hold general features that
fine-tuning should move least (ULMFiT's discriminative learning rates;
ELECTRA's and BEiT's layer-wise decay). With decay d over a backbone of L
blocks, the top block learns at d x the scheduled rate, the block below at
d^2, ..., the lowest at d^L and the embeddings at d^(L+1). The head and any
backbone weights above the blocks (a pooler, a final norm) keep the full rate.
"""

from tflm.backbones.freeze_spec import embedding_layers
from tflm.backbones.freeze_spec import transformer_blocks
from tflm.errors import UserError


def layer_lr_multipliers(backbone, decay, flag_name="--layer_lr_decay"):
    """{variable path: learning-rate factor} for the optimizer; {} when decay is 1."""
    if not 0.0 < decay <= 1.0:
        raise UserError(f"{flag_name}={decay}: must lie in (0, 1]; 1 turns it off")
    if decay == 1.0:
        return {}
    blocks = transformer_blocks(backbone)
    if not blocks:
        raise UserError(f"{flag_name}: {type(backbone).__name__} has no transformer blocks to decay over")
    multipliers = {}
    for layer in embedding_layers(backbone):
        for variable in layer.weights:
            multipliers[variable.path] = decay ** (len(blocks) + 1)
    for depth, block in enumerate(blocks):
        for variable in block.weights:
            multipliers[variable.path] = decay ** (len(blocks) - depth)
    return multipliers
