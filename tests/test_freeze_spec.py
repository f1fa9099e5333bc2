import pytest

from tflm.backbones import FreezeSpec, apply_freeze, load_backbone, parameter_counts
from tflm.backbones.freeze_spec import transformer_blocks
from tflm.errors import UserError


@pytest.mark.parametrize("text, expected", [
    ("", FreezeSpec()),
    ("embeddings", FreezeSpec(embeddings=True)),
    ("embeddings,blocks:0-2", FreezeSpec(embeddings=True, blocks=(0, 1, 2))),
    ("blocks:3,blocks:1", FreezeSpec(blocks=(1, 3))),
    ("bottom:4", FreezeSpec(bottom=4)),
    ("pattern:query, all", FreezeSpec(patterns=("query",), whole_backbone=True)),
])
def test_parse(text, expected):
    assert FreezeSpec.parse(text) == expected


@pytest.mark.parametrize("text, message", [
    ("embedings", "unknown item 'embedings'"),
    ("blocks:3-1", "empty range"),
    ("blocks:a", "non-negative integer"),
    ("bottom:-1", "non-negative integer"),
    ("pattern:(", "bad regex"),
])
def test_parse_errors_name_the_item(text, message):
    with pytest.raises(UserError, match=message):
        FreezeSpec.parse(text)


def _backbone(tiny_preset):
    return load_backbone(tiny_preset)[0]


def test_embeddings_and_bottom_blocks(tiny_preset):
    backbone = _backbone(tiny_preset)
    total = backbone.count_params()
    frozen = apply_freeze(backbone, FreezeSpec.parse("embeddings,bottom:1"))
    frozen_paths = {v.path for v in frozen}
    assert any(p.startswith("token_embedding") for p in frozen_paths)
    assert any(p.startswith("embeddings_layer_norm") for p in frozen_paths)
    assert any(p.startswith("transformer_layer_0/") for p in frozen_paths)
    assert not any(p.startswith("transformer_layer_1/") for p in frozen_paths)
    trainable, not_trainable = parameter_counts(backbone)
    assert trainable + not_trainable == total
    assert not_trainable == sum(int(v.numpy().size) for v in frozen)
    assert {v.path for v in backbone.trainable_weights}.isdisjoint(frozen_paths)


def test_pattern_and_all(tiny_preset):
    backbone = _backbone(tiny_preset)
    frozen = apply_freeze(backbone, FreezeSpec.parse("pattern:self_attention_layer/query"))
    assert frozen and all("query" in v.path for v in frozen)
    apply_freeze(backbone, FreezeSpec.parse("all"))
    assert backbone.trainable_weights == []


def test_out_of_range_block_and_unmatched_pattern(tiny_preset):
    backbone = _backbone(tiny_preset)
    assert len(transformer_blocks(backbone)) == 2
    with pytest.raises(UserError, match="block 2 requested but the backbone has 2 blocks"):
        apply_freeze(backbone, FreezeSpec.parse("bottom:3"))
    with pytest.raises(UserError, match="matches no backbone variable"):
        apply_freeze(backbone, FreezeSpec.parse("pattern:no_such_layer"))
