import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from tflm import backbones
from tflm.errors import UserError
from tflm.export import ExportTarget, existing_versions, export_text_classifier, run_in_fresh_process, write_new_version
from tflm.export import serving_module
from tflm.export.serving_module import SERVING_BUCKET_WIDTH, request_bytes, token_features
from tflm.tasks import TextClassificationConfig, TextClassificationTask


def classifier(tiny_preset, text_fields=("sentence",)):
    task = TextClassificationTask(TextClassificationConfig(backbone=tiny_preset, max_seq_length=32,
                                                           text_fields=text_fields))
    backbone, preset = backbones.load_backbone(tiny_preset)
    return task, task.build_model(backbone, 3), task.build_preprocessor(preset)


LABELS = ["neg", "neutral", "pos"]


def test_export_serves_raw_text_in_a_fresh_process(tiny_preset, tmp_path):
    _, model, preprocessor = classifier(tiny_preset)
    texts = ["the film is a joy .", "", "x " * 3000, "sister\udcf0city"]
    path = export_text_classifier(model, preprocessor, LABELS, ExportTarget(str(tmp_path), "clf"), [texts[:3]],
                                  metadata={"backbone": "tiny"})
    assert path == os.path.join(str(tmp_path), "clf", "1")
    # Both loaders (TF1 Session = TF Serving's path, and TF2) in a process without tflm.
    result = run_in_fresh_process(path, [("serving_default", {"text": request_bytes(texts).numpy()})])
    assert result["tflm_imported"] is False
    session, tf2 = result["replies"][-1]["session"], result["replies"][-1]["tf2"]
    probabilities = np.array(session["probabilities"])
    assert probabilities.shape == (4, 3)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(probabilities, np.array(tf2["probabilities"]), atol=1e-6)
    assert session["label"] == [LABELS[i] for i in np.argmax(probabilities, axis=1)]
    assert session["label_id"] == np.argmax(probabilities, axis=1).tolist()
    # Same as the in-memory Keras model on untrimmed features.
    features = preprocessor(tf.constant(texts[:2]))
    features = {k: tf.cast(v, tf.int32) for k, v in features.items()}
    in_memory = tf.nn.softmax(model(features, training=False)).numpy()
    np.testing.assert_allclose(probabilities[:2], in_memory, atol=1e-5)
    metadata = json.load(open(os.path.join(path, "assets.extra", "tflm_model.json")))
    assert metadata["labels"] == LABELS and metadata["backbone"] == "tiny"


def test_small_requests_run_in_float32_and_batches_in_bfloat16(tiny_preset, tmp_path):
    task = TextClassificationTask(TextClassificationConfig(backbone=tiny_preset, max_seq_length=32))
    keras.utils.set_random_seed(0)  # The head's initial weights: the same model under pytest and bazel.
    mixed = task.build_model(backbones.load_backbone(tiny_preset, dtype="mixed_bfloat16")[0], 3)
    full = task.build_model(backbones.load_backbone(tiny_preset, dtype="float32")[0], 3)
    head = mixed.layers[-1]
    # Larger logits make the precisions differ more, short of saturating the softmax.
    head.set_weights([w * 30 for w in head.get_weights()])
    full.set_weights(mixed.get_weights())
    preprocessor = task.build_preprocessor(backbones.load_backbone(tiny_preset)[1])
    texts = ["the film is a joy .", "a dull , lifeless cast", "it works"]
    policies = [layer.dtype_policy.name for layer in mixed._flatten_layers()]
    assert "mixed_bfloat16" in policies
    path = export_text_classifier(mixed, preprocessor, LABELS, ExportTarget(str(tmp_path), "clf"), [texts],
                                  float32_max_batch=2)
    assert [layer.dtype_policy.name for layer in mixed._flatten_layers()] == policies  # Restored after tracing.

    def probabilities(model, rows):
        features = {k: tf.cast(v, tf.int32) for k, v in preprocessor(tf.constant(rows)).items()}
        return tf.nn.softmax(tf.cast(model(features, training=False), tf.float32)).numpy()

    requests = [("serving_default", {"text": request_bytes(rows).numpy()}) for rows in (texts[:1], texts)]
    replies = run_in_fresh_process(path, requests)["replies"]
    one, three = (np.array(reply["session"]["probabilities"]) for reply in replies[-2:])  # After the warmup replays.
    # How far apart the two precisions are depends on the CPU's bfloat16 kernels, so each reply must sit
    # ten times closer to its own path's answer than the two paths are to each other.
    full_one, mixed_one = probabilities(full, texts[:1]), probabilities(mixed, texts[:1])
    full_three, mixed_three = probabilities(full, texts), probabilities(mixed, texts)
    gap_one, gap_three = np.abs(full_one - mixed_one).max(), np.abs(full_three - mixed_three).max()
    assert gap_one > 1e-5 and gap_three > 1e-5  # Well above float32 round-off.
    assert np.abs(one - full_one).max() < gap_one / 10
    assert np.abs(three - mixed_three).max() < gap_three / 10
    assert json.load(open(os.path.join(path, "assets.extra", "tflm_model.json")))["float32_max_batch"] == 2


def stored_weights(path):
    """{(where, name): (dtype, bytes)} of the floating-point weights an export stores.

    `where` is "variables" or the name of the graph function holding them as constants.
    """
    from tensorflow.core.protobuf import saved_model_pb2

    stored = {}
    variables = os.path.join(path, "variables")
    if os.path.exists(os.path.join(variables, "variables.index")):
        reader = tf.train.load_checkpoint(os.path.join(variables, "variables"))
        for name, dtype in reader.get_variable_to_dtype_map().items():
            if dtype.is_floating:
                stored["variables", name] = (dtype, reader.get_tensor(name).nbytes)
    saved_model = saved_model_pb2.SavedModel()
    with open(os.path.join(path, "saved_model.pb"), "rb") as f:
        saved_model.ParseFromString(f.read())
    for function in saved_model.meta_graphs[0].graph_def.library.function:
        for node in function.node_def:
            dtype = tf.dtypes.as_dtype(node.attr["dtype"].type) if node.op == "Const" else None
            if dtype is not None and dtype.is_floating and node.attr["value"].tensor.tensor_content:
                content = node.attr["value"].tensor.tensor_content
                stored[function.signature.name, node.name] = (dtype, len(content))
    return stored


def test_weights_are_stored_once(tiny_preset, tmp_path):
    """As constants of one model function, which all three signatures call."""
    _, model, preprocessor = classifier(tiny_preset)
    path = export_text_classifier(model, preprocessor, LABELS, ExportTarget(str(tmp_path), "clf"), [["a film"]])
    stored = stored_weights(path)
    weight_bytes = sum(v.numpy().nbytes for v in model.weights)
    assert weight_bytes <= sum(size for _, size in stored.values()) < 1.3 * weight_bytes
    (where,) = {where for where, _ in stored}
    assert "call_model" in where
    assert json.load(open(os.path.join(path, "assets.extra", "tflm_model.json")))["weights"] == "constants"


def test_weights_too_large_for_a_graph_stay_variables(tiny_preset, tmp_path, monkeypatch):
    _, model, preprocessor = classifier(tiny_preset)
    weight_bytes = sum(v.numpy().nbytes for v in model.weights)
    monkeypatch.setattr(serving_module, "MAX_CONSTANT_WEIGHT_BYTES", weight_bytes - 1)
    path = export_text_classifier(model, preprocessor, LABELS, ExportTarget(str(tmp_path), "clf"), [["a film"]])
    stored = stored_weights(path)
    assert {where for where, _ in stored} == {"variables"}
    assert weight_bytes <= sum(size for _, size in stored.values()) < 1.3 * weight_bytes
    assert json.load(open(os.path.join(path, "assets.extra", "tflm_model.json")))["weights"] == "variables"


def test_bfloat16_model_stores_the_weights_it_reads_in_bfloat16(tiny_preset, tmp_path):
    """The default for a mixed-precision classifier: same answers as in memory, about half the bytes."""
    task = TextClassificationTask(TextClassificationConfig(backbone=tiny_preset, max_seq_length=32))
    keras.utils.set_random_seed(0)
    model = task.build_model(backbones.load_backbone(tiny_preset, dtype="mixed_bfloat16")[0], 3)
    preprocessor = task.build_preprocessor(backbones.load_backbone(tiny_preset)[1])
    texts = ["the film is a joy .", "a dull , lifeless cast", "it works"]
    weights_before = [v.numpy() for v in model.weights]
    low = export_text_classifier(model, preprocessor, LABELS, ExportTarget(str(tmp_path), "low"), [texts])
    wide = export_text_classifier(model, preprocessor, LABELS, ExportTarget(str(tmp_path), "wide"), [texts],
                                  float32_max_batch=2)
    assert all(v.dtype == "float32" and np.array_equal(v.numpy(), before)  # The model itself is untouched.
               for v, before in zip(model.weights, weights_before))

    def total_bytes(stored):
        return sum(size for _, size in stored.values())

    low_stored, wide_stored = stored_weights(low), stored_weights(wide)
    assert total_bytes(low_stored) < 0.6 * total_bytes(wide_stored)
    assert {where for where, _ in wide_stored} == {"variables"}  # The float32 path reads variables.

    def dtype_of(path):
        (dtype,) = [dtype for (_, name), (dtype, _) in low_stored.items() if name == path]
        return dtype

    assert all(dtype_of(v.path) == tf.float32 for v in model.weights if not v._autocast)  # Layer norms.
    assert sum(dtype_of(v.path) == tf.bfloat16 for v in model.weights) > len(model.weights) / 2
    head = model.layers[-1]
    assert head.compute_dtype == "float32" and dtype_of(head.kernel.path) == tf.float32

    features = {k: tf.cast(v, tf.int32) for k, v in preprocessor(tf.constant(texts)).items()}
    in_memory = tf.nn.softmax(tf.cast(model(features, training=False), tf.float32)).numpy()
    replies = run_in_fresh_process(low, [("serving_default", {"text": request_bytes(texts).numpy()})])["replies"]
    np.testing.assert_allclose(np.array(replies[-1]["session"]["probabilities"]), in_memory, atol=2e-3)
    low_metadata = json.load(open(os.path.join(low, "assets.extra", "tflm_model.json")))
    assert low_metadata["float32_max_batch"] == 0 and low_metadata["weights"] == "constants"
    assert json.load(open(os.path.join(wide, "assets.extra", "tflm_model.json")))["weights"] == "variables"


def test_sentence_pair_signature(tiny_preset, tmp_path):
    _, model, preprocessor = classifier(tiny_preset, text_fields=("premise", "hypothesis"))
    path = export_text_classifier(model, preprocessor, LABELS, ExportTarget(str(tmp_path), "nli"),
                                  [["the film", "the cast"], ["is a joy", ""]], sentence_pair=True)
    firsts, seconds = ["the film", "the film"], ["is dull", "is a joy to watch"]
    request = {"text": np.array([t.encode() for t in firsts]), "text_b": np.array([t.encode() for t in seconds])}
    reply = run_in_fresh_process(path, [("serving_default", request)])["replies"][-1]
    features = {k: tf.cast(v, tf.int32) for k, v in preprocessor(x=(tf.constant(firsts), tf.constant(seconds))).items()}
    in_memory = tf.nn.softmax(tf.cast(model(features, training=False), tf.float32)).numpy()
    # Both texts reach the model: the served pair scores are the in-memory model's, and differ with text_b.
    np.testing.assert_allclose(np.array(reply["session"]["probabilities"]), in_memory, atol=1e-5)
    assert not np.allclose(in_memory[0], in_memory[1])


def test_versions_increment_and_never_overwrite(tiny_preset, tmp_path):
    written = []

    def write(path):
        os.makedirs(path)
        written.append(path)

    assert write_new_version(str(tmp_path), "m", write).endswith("/m/1")
    assert write_new_version(str(tmp_path), "m", write).endswith("/m/2")
    os.makedirs(tmp_path / "m" / "7")
    assert write_new_version(str(tmp_path), "m", write).endswith("/m/8")
    assert existing_versions(str(tmp_path / "m")) == [1, 2, 7, 8]


def test_failed_verification_publishes_nothing(tmp_path):
    def write(path):
        os.makedirs(path)

    def reject(path):
        raise UserError("bad export")

    with pytest.raises(UserError, match="bad export"):
        write_new_version(str(tmp_path), "m", write, reject)
    assert os.listdir(tmp_path / "m") == []  # No version, no staging leftovers.


def test_bad_export_name(tmp_path):
    with pytest.raises(UserError, match="--export_name='../x'"):
        write_new_version(str(tmp_path), "../x", lambda p: None)


def test_trimmed_serving_features_give_the_same_logits(tiny_preset):
    _, model, preprocessor = classifier(tiny_preset)
    texts = tf.constant(["the film is a joy .", "dull"])
    full = {k: tf.cast(v, tf.int32) for k, v in preprocessor(texts).items()}
    trimmed = token_features(preprocessor, texts)
    longest = int(tf.reduce_max(tf.reduce_sum(full["padding_mask"], 1)))
    assert trimmed["token_ids"].shape[1] == -(-longest // SERVING_BUCKET_WIDTH) * SERVING_BUCKET_WIDTH
    assert trimmed["token_ids"].shape[1] < full["token_ids"].shape[1]
    np.testing.assert_allclose(model(trimmed).numpy(), model(full).numpy(), atol=1e-5)
