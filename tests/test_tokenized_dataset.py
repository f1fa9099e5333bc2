import numpy as np

from tflm.backbones import load_preprocessor
from tflm.data import TokenizedDataset, tokenize


def _preprocessor(tiny_preset, sequence_length=64):
    import keras_hub

    return load_preprocessor(tiny_preset, keras_hub.models.TextClassifierPreprocessor,
                             sequence_length=sequence_length)


def test_tokenize_trims_to_longest_row_and_handles_pairs(tiny_preset):
    pre = _preprocessor(tiny_preset)
    single = tokenize(pre, [["the film", "the film is a joy to watch ."]])
    assert single["token_ids"].dtype == np.int32
    assert single["padding_mask"].shape == (2, 10)  # [CLS] + 8 tokens + [SEP]
    pair = tokenize(pre, [["the film"], ["is a joy"]])
    assert pair["padding_mask"].sum() == 2 + 3 + 3
    assert pair["segment_ids"][0].tolist() == [0, 0, 0, 0, 1, 1, 1, 1]


def test_training_batches_are_bucketed_and_bounded(tiny_preset):
    pre = _preprocessor(tiny_preset)
    texts = ["the film"] * 40 + [" ".join(["the film"] * 15)] * 40
    dataset = TokenizedDataset(tokenize(pre, [texts]), np.arange(80) % 2)
    shapes = set()
    for features, labels in dataset.training(batch_size=8, seed=1).take(20):
        length = features["token_ids"].shape[1]
        shapes.add(length)
        assert length % 16 == 0 or length == dataset.max_length
        assert features["padding_mask"].numpy().sum(axis=1).max() <= length
        assert labels.shape == (8,)
    assert shapes == {16, 32}  # Short and long rows never share a batch.


def test_static_padding_gives_one_shape_and_the_same_rows(tiny_preset):
    pre = _preprocessor(tiny_preset)
    texts = ["the film"] * 20 + [" ".join(["the film"] * 15)] * 20
    dataset = TokenizedDataset(tokenize(pre, [texts]), np.arange(40))
    seen = []
    for features, labels in dataset.training(batch_size=8, seed=1, pad_to_length=64).take(10):
        assert features["token_ids"].shape == (8, 64) and features["padding_mask"].shape == (8, 64)
        for row, label in zip(features["padding_mask"].numpy(), labels.numpy()):
            assert row.sum() == dataset.lengths[label]  # Each row keeps its own tokens, padded after them.
        seen.extend(labels.numpy().tolist())
    assert sorted(seen[:40]) == list(range(40))  # An epoch is every row once.


def test_training_order_is_seeded(tiny_preset):
    pre = _preprocessor(tiny_preset)
    dataset = TokenizedDataset(tokenize(pre, [[f"the film {'joy ' * (i % 5)}" for i in range(50)]]), np.arange(50))
    first = [y.numpy().tolist() for _, y in dataset.training(5, seed=3).take(6)]
    again = [y.numpy().tolist() for _, y in dataset.training(5, seed=3).take(6)]
    other = [y.numpy().tolist() for _, y in dataset.training(5, seed=4).take(6)]
    assert first == again and first != other


def test_evaluation_keeps_file_order(tiny_preset):
    pre = _preprocessor(tiny_preset)
    texts = ["the film " * (i % 7 + 1) for i in range(30)]
    dataset = TokenizedDataset(tokenize(pre, [texts]), np.arange(30))
    seen = np.concatenate([y.numpy() for _, y in dataset.evaluation(batch_size=8)])
    assert seen.tolist() == list(range(30))
