"""Serving-grade exports: signatures that agree, models.config, version retirement, `tflm predict`."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from google.protobuf import text_format
from tensorflow_serving.config import model_server_config_pb2

from tests.conftest import ROOT, child_env
from tflm import backbones
from tflm.errors import UserError
from tflm.export import CONFIG_FILE, ExportTarget, export_text_classifier, model_server_config, verification
from tflm.tasks import TextClassificationConfig, TextClassificationTask

LABELS = ["neg", "pos"]
TEXTS = ["the film is a joy .", "dull", "a long and winding story about nothing"]


@pytest.fixture(scope="module")
def exported(tiny_preset, tmp_path_factory):
    task = TextClassificationTask(TextClassificationConfig(backbone=tiny_preset, max_seq_length=32))
    backbone, preset = backbones.load_backbone(tiny_preset)
    model, preprocessor = task.build_model(backbone, 2), task.build_preprocessor(preset)
    root = str(tmp_path_factory.mktemp("savedmodels"))
    path = export_text_classifier(model, preprocessor, LABELS, ExportTarget(root, "clf"), [TEXTS])
    return root, path, preprocessor


def serialized_examples(texts, field="text"):
    return tf.constant([tf.train.Example(features=tf.train.Features(feature={
        field: tf.train.Feature(bytes_list=tf.train.BytesList(value=[t.encode()]))})).SerializeToString()
        for t in texts])


def test_the_three_signatures_give_the_same_answers(exported):
    _, path, preprocessor = exported
    signatures = tf.saved_model.load(path).signatures
    by_text = signatures["serving_default"](text=tf.constant(TEXTS))
    by_example = signatures["serve_examples"](examples=serialized_examples(TEXTS))
    # Ids as a client that tokenizes itself sends them: padded to the full sequence length.
    ids = {k: tf.cast(v, tf.int32) for k, v in preprocessor(tf.constant(TEXTS)).items()}
    assert ids["token_ids"].shape == (3, 32)
    by_ids = signatures["serve_token_ids"](**ids)
    for outputs in (by_example, by_ids):
        np.testing.assert_allclose(outputs["probabilities"], by_text["probabilities"], atol=1e-5)
        assert outputs["label"].numpy().tolist() == by_text["label"].numpy().tolist()


def test_a_missing_example_feature_is_named(exported):
    _, path, _ = exported
    serve = tf.saved_model.load(path).signatures["serve_examples"]
    with pytest.raises(tf.errors.InvalidArgumentError, match="text"):
        serve(examples=serialized_examples(["a film"], field="sentence"))


def fake_versions(root, name, versions):
    for version in versions:
        os.makedirs(os.path.join(root, name, str(version)))


def parse_config(root):
    config = model_server_config_pb2.ModelServerConfig()
    text_format.Parse(open(os.path.join(root, CONFIG_FILE)).read(), config)
    return {entry.name: entry for entry in config.model_config_list.config}


def test_models_config_lists_every_model_and_keeps_what_the_user_set(tmp_path):
    root = str(tmp_path)
    fake_versions(root, "sst2", [1, 2])
    fake_versions(root, "translator", [3])
    os.makedirs(tmp_path / "not_a_model" / "notes")
    (tmp_path / CONFIG_FILE).write_text(
        'model_config_list { config { name: "translator" base_path: "/old" model_platform: "tensorflow" '
        'model_version_policy { specific { versions: 3 } } version_labels { key: "stable" value: 3 } } '
        'config { name: "elsewhere" base_path: "/srv/other" model_platform: "tensorflow" } }')
    model_server_config.update_config(root)
    entries = parse_config(root)
    assert sorted(entries) == ["elsewhere", "sst2", "translator"]
    assert entries["sst2"].base_path == os.path.join(root, "sst2")
    assert entries["sst2"].model_version_policy.latest.num_versions == 1
    assert entries["translator"].base_path == os.path.join(root, "translator")
    assert list(entries["translator"].model_version_policy.specific.versions) == [3]
    assert entries["translator"].version_labels["stable"] == 3
    assert entries["elsewhere"].base_path == "/srv/other"
    # A server in a container sees the export root somewhere else.
    model_server_config.update_config(root, base_path="/models")
    assert parse_config(root)["sst2"].base_path == "/models/sst2"


def test_models_config_of_a_remote_export_root_keeps_its_url(tmp_path):
    root = "ram://tflm-exports"  # In-memory file system: stands for gs:// here.
    tf.io.gfile.makedirs(f"{root}/sst2/1")
    path = model_server_config.update_config(root)
    config = model_server_config.read_config(path)
    assert [entry.base_path for entry in config.model_config_list.config] == [f"{root}/sst2"]


def test_a_hung_fresh_process_check_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="loading it in a fresh process took over 0.01 s"):
        verification.run_in_fresh_process(str(tmp_path), timeout=0.01)


def test_keep_versions_retires_old_versions_but_never_a_served_one(tmp_path):
    root = str(tmp_path)
    fake_versions(root, "clf", [1, 2, 3, 4, 5])
    model_server_config.update_config(root)
    assert model_server_config.retire_old_versions(root, "clf", 2) == [1, 2, 3]
    assert sorted(os.listdir(tmp_path / "clf")) == ["4", "5"]
    fake_versions(root, "clf", [6, 7])
    (tmp_path / CONFIG_FILE).write_text(
        'model_config_list { config { name: "clf" base_path: "x" model_platform: "tensorflow" '
        'model_version_policy { specific { versions: 4 } } } }')
    assert model_server_config.retire_old_versions(root, "clf", 1) == [5, 6]
    assert sorted(os.listdir(tmp_path / "clf")) == ["4", "7"]


def test_a_broken_models_config_is_named_and_left_alone(tmp_path):
    fake_versions(str(tmp_path), "clf", [1])
    (tmp_path / CONFIG_FILE).write_text("model_config_list { config { name: ")
    with pytest.raises(UserError, match=f"{tmp_path}/{CONFIG_FILE}: not a TF Serving model config"):
        model_server_config.update_config(str(tmp_path))
    assert (tmp_path / CONFIG_FILE).read_text() == "model_config_list { config { name: "


# `tflm predict` in a fresh process; reports whether model code (KerasHub, tflm's) was imported.
# (TensorFlow itself imports Keras.)
_PREDICT = ("import sys\n"
            "from pipelines import cli\n"
            "sys.argv = ['tflm', *sys.argv[1:]]\n"
            "try:\n"
            "    cli.run()\n"
            "finally:\n"
            "    print('IMPORTED', sorted(m for m in ('keras_hub', 'tflm.export', 'tflm.tasks') if m in sys.modules), file=sys.stderr)\n")


def predict(*args):
    return subprocess.run([sys.executable, "-c", _PREDICT, "predict", *args], capture_output=True, text=True,
                          env=child_env(), cwd=ROOT, timeout=300)


def test_predict_cli_reads_texts_and_files_without_model_code(exported, tmp_path):
    root, path, _ = exported
    result = predict(f"--model={root}/clf", *TEXTS[:2])
    assert result.returncode == 0, result.stderr[-3000:]
    assert "IMPORTED []" in result.stderr
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["text"] for r in rows] == TEXTS[:2]
    assert all(r["label"] == LABELS[r["label_id"]] and abs(sum(r["probabilities"]) - 1) < 1e-5 for r in rows)
    served = tf.saved_model.load(path).signatures["serving_default"](text=tf.constant(TEXTS[:2]))
    np.testing.assert_allclose([r["probabilities"] for r in rows], served["probabilities"], atol=1e-6)

    inputs = tmp_path / "in.jsonl"
    inputs.write_text("".join(json.dumps({"text": t, "id": i}) + "\n" for i, t in enumerate(TEXTS)))
    result = predict(f"--model={path}", f"--input_file={inputs}", f"--output_file={tmp_path}/out.jsonl",
                     "--batch_size=2")
    assert result.returncode == 0, result.stderr[-3000:]
    rows = [json.loads(line) for line in open(tmp_path / "out.jsonl")]
    assert [r["text"] for r in rows] == TEXTS and set(rows[0]) == {"text", "label", "label_id", "probabilities"}


@pytest.mark.parametrize("args, message", [
    (["--model={root}/nothing", "a"], "--model={root}/nothing: no saved_model.pb"),
    (["--model={root}/clf"], "no input: give texts as arguments or --input_file"),
    (["--model={root}/clf", "--signature=serve_token_ids", "a"], "--signature=serve_token_ids: takes"),
    (["--model={root}/clf", "--input_file={root}/bad.jsonl"], "{root}/bad.jsonl:2: needs string field(s) ['text']"),
    (["--model={root}/clf", "--signature=serve_examples", "a"], "--signature=serve_examples rejected texts 1-1: "),
    (["--model={root}/clf", "--output_file={root}/no/such/dir/out.jsonl", "a"],
     "--output_file={root}/no/such/dir/out.jsonl: No such file or directory"),
])
def test_predict_cli_errors_name_the_problem(exported, args, message):
    root = exported[0]
    with open(os.path.join(root, "bad.jsonl"), "w") as f:
        f.write('{"text": "fine"}\n{"sentence": "wrong field"}\n')
    result = predict(*(a.format(root=root) for a in args))
    assert result.returncode == 1
    assert f"error: {message.format(root=root)}" in result.stderr
    assert "Traceback" not in result.stderr


def test_generated_rows_must_agree_and_float_outputs_must_match(monkeypatch):
    from tflm.export import verification

    def fake_replies(got):
        return lambda path, requests: {"tflm_imported": False, "replies": [
            {"signature": "serving_default", "session": got, "tf2": got}]}

    want = [{"output_text": np.array([b"a", b"b", b"c", b"d"]), "score": np.array([0.5])}]
    three_of_four = {"output_text": ["a", "b", "c", "x"], "score": [0.5]}
    monkeypatch.setattr(verification, "run_in_fresh_process", fake_replies(three_of_four))
    verification.verify_export("e", [], want, min_row_agreement=0.75)
    with pytest.raises(UserError, match="differs from the in-memory model in 1 of 4 rows"):
        verification.verify_export("e", [], want)
    monkeypatch.setattr(verification, "run_in_fresh_process",
                        fake_replies({"output_text": ["a", "b", "c", "d"], "score": [0.6]}))
    with pytest.raises(UserError, match="'score' differs from the in-memory model by 0.1"):
        verification.verify_export("e", [], want, min_row_agreement=0.75)
