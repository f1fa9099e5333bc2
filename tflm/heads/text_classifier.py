"""Classification head: pooled backbone output -> dropout -> dense logits."""

import keras

from tflm.backbones.freeze_spec import freeze_unused_pooler
from tflm.errors import UserError
from tflm.heads.masked_mean_pooling import MaskedMeanPooling

# mean: masked mean of the sequence output (what sentence encoders such as
#   all-MiniLM were trained with; works for every encoder backbone).
# cls: the first token's vector.
# pooled: the backbone's own pooler output (BERT family only).
POOLINGS = ("mean", "cls", "pooled")


def build_text_classifier(backbone, num_classes, dropout=0.1, pooling="mean"):
    """Returns a functional Keras model from token features to logits.

    Inputs are the backbone's inputs (`token_ids`, `padding_mask`, ...) with
    integer dtypes; the logits layer is float32 under any mixed precision.
    """
    if pooling not in POOLINGS:
        raise UserError(f"--pooling={pooling}: expected one of {POOLINGS}")
    if num_classes < 2:
        raise UserError(f"a classifier needs at least 2 labels, got {num_classes}")
    inputs = {
        tensor.name.split(":")[0]: keras.Input(
            shape=(None,), dtype="int32", name=tensor.name.split(":")[0]
        )
        for tensor in backbone.inputs
    }
    outputs = backbone(inputs)
    if pooling == "pooled":
        if not isinstance(outputs, dict) or "pooled_output" not in outputs:
            raise UserError(
                f"--pooling=pooled: {type(backbone).__name__} has no pooler; "
                "use --pooling=mean or cls"
            )
        features = outputs["pooled_output"]
    else:
        freeze_unused_pooler(backbone)
        sequence = outputs["sequence_output"] if isinstance(outputs, dict) else outputs
        if pooling == "cls":
            features = sequence[:, 0, :]
        else:
            features = MaskedMeanPooling(name="mean_pooling")(
                sequence, inputs["padding_mask"]
            )
    features = keras.layers.Dropout(dropout, name="head_dropout")(features)
    logits = keras.layers.Dense(
        num_classes,
        dtype="float32",
        kernel_initializer=keras.initializers.TruncatedNormal(stddev=0.02),
        name="logits",
    )(features)
    return keras.Model(inputs, logits, name="text_classifier")
