import json
import os

import pytest

from tflm.backbones import BUNDLED_MINILM, load_backbone, resolve_backbone
from tflm.errors import UserError


def test_local_keras_hub_preset(tiny_preset):
    backbone, preset = load_backbone(tiny_preset, dtype="mixed_bfloat16")
    assert preset == os.path.abspath(tiny_preset)
    assert backbone.dtype_policy.name == "mixed_bfloat16"
    assert len(backbone.transformer_layers) == 2


def test_missing_path(tmp_path):
    with pytest.raises(UserError, match=f"backbone path {tmp_path}/nope: does not exist"):
        resolve_backbone(str(tmp_path / "nope"))


def test_file_is_not_a_model(tmp_path):
    path = tmp_path / "weights.bin"
    path.write_bytes(b"x")
    with pytest.raises(UserError, match="is not a directory"):
        resolve_backbone(str(path))


def test_folder_without_config(tmp_path):
    with pytest.raises(UserError, match="no config.json"):
        resolve_backbone(str(tmp_path))


def test_unreadable_config(tmp_path):
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(UserError, match="config.json: unreadable"):
        resolve_backbone(str(tmp_path))


def test_hf_config_without_safetensors(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(UserError, match="without model.safetensors"):
        resolve_backbone(str(tmp_path))


def test_unknown_preset_name():
    with pytest.raises(UserError, match="--backbone=bert_nonexistent_en: not a known KerasHub preset"):
        resolve_backbone("bert_nonexistent_en")


def test_known_preset_name_and_handles_pass_through():
    assert resolve_backbone("bert_tiny_en_uncased") == "bert_tiny_en_uncased"
    assert resolve_backbone("hf://google-bert/bert-base-uncased") == "hf://google-bert/bert-base-uncased"


def test_broken_weights_are_one_line(tmp_path, tiny_preset):
    broken = tmp_path / "broken"
    broken.mkdir()
    for name in os.listdir(tiny_preset):
        if name.endswith(".json"):
            (broken / name).write_text(open(os.path.join(tiny_preset, name)).read())
    with pytest.raises(UserError, match="cannot load its weights"):
        load_backbone(str(broken))


@pytest.mark.large
def test_bundled_minilm_loads_from_hugging_face_format(minilm_dir):
    assert os.path.exists(os.path.join(minilm_dir, "model.safetensors"))
    assert resolve_backbone(BUNDLED_MINILM) == minilm_dir
    backbone, _ = load_backbone(BUNDLED_MINILM)
    assert backbone.hidden_dim == 384 and len(backbone.transformer_layers) == 6
