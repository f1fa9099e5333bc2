import gzip
import json

import pytest

from tflm.data import ColumnSpec, LabelVocabulary, read_classification_examples
from tflm.data import demo
from tflm.errors import UserError

SINGLE = ColumnSpec(("sentence",), "label")


def write(path, text, encoding="utf-8"):
    path.write_bytes(text.encode(encoding))
    return str(path)


def test_tsv_with_quotes_and_gzip(tmp_path):
    path = tmp_path / "train.tsv.gz"
    with gzip.open(path, "wt", encoding="utf-8") as f:
        f.write('sentence\tlabel\n"quoted" start \t1\nplain\t0\n')
    examples = read_classification_examples(str(path), SINGLE)
    assert examples.texts == [['"quoted" start ', "plain"]]
    assert examples.labels == ["1", "0"]


def test_csv_pairs_by_index_without_header(tmp_path):
    path = write(tmp_path / "pairs.csv", 'a man,"a person, sitting",yes\nx,y,no\n')
    examples = read_classification_examples(path, ColumnSpec(("0", "1"), "2"), header=False)
    assert examples.texts == [["a man", "x"], ["a person, sitting", "y"]]
    assert examples.labels == ["yes", "no"]


def test_jsonl_numbers_become_string_labels(tmp_path):
    path = write(tmp_path / "d.jsonl", json.dumps({"text": "hi", "y": 1}) + "\n\n" + json.dumps({"text": "yo", "y": 0}) + "\n")
    examples = read_classification_examples(path, ColumnSpec(("text",), "y"))
    assert examples.labels == ["1", "0"]


def test_missing_column_names_file_and_line(tmp_path):
    path = write(tmp_path / "d.tsv", "sentence\tlabel\ngood\t1\nbad row\n")
    with pytest.raises(UserError, match=r"d.tsv:3: missing column 'label'"):
        read_classification_examples(path, SINGLE)


def test_wrong_column_name(tmp_path):
    path = write(tmp_path / "d.tsv", "text\tlabel\ngood\t1\n")
    with pytest.raises(UserError, match=r"d.tsv:2: missing column 'sentence'"):
        read_classification_examples(path, SINGLE)


def test_names_without_header(tmp_path):
    path = write(tmp_path / "d.tsv", "good\t1\n")
    with pytest.raises(UserError, match="given by name but the file is read without a header"):
        read_classification_examples(path, SINGLE, header=False)


def test_empty_text(tmp_path):
    path = write(tmp_path / "d.tsv", "sentence\tlabel\ngood\t1\n  \t0\n")
    with pytest.raises(UserError, match=r"d.tsv:3: empty text in column 'sentence'"):
        read_classification_examples(path, SINGLE)


def test_label_outside_label_set(tmp_path):
    path = write(tmp_path / "d.tsv", "sentence\tlabel\ngood\t1\nmeh\t7\n")
    with pytest.raises(UserError, match=r"d.tsv:3: label '7' is not in the label set \['0', '1'\]"):
        read_classification_examples(path, SINGLE, LabelVocabulary(["0", "1"]))


def test_skip_bad_rows_reports_counts(tmp_path, caplog):
    path = write(tmp_path / "d.tsv", "sentence\tlabel\ngood\t1\n\t0\nmeh\t7\nshort\nfine\t0\n")
    examples = read_classification_examples(path, SINGLE, LabelVocabulary(["0", "1"]), skip_bad_rows=True)
    assert examples.texts == [["good", "fine"]]
    assert "skipped 3 bad rows (1 empty text, 1 missing column, 1 unknown label)" in caplog.text


def test_non_utf8_names_line_and_latin1_reads(tmp_path):
    path = write(tmp_path / "d.tsv", "sentence\tlabel\nok\t1\nsister\xf0city\t0\n", encoding="latin-1")
    with pytest.raises(UserError, match=r"d.tsv:3: not valid utf-8 \(byte 0xf0 at column 7\)"):
        read_classification_examples(path, SINGLE)
    examples = read_classification_examples(path, SINGLE, encoding="latin-1")
    assert examples.texts[0][1] == "sister\xf0city"


def test_one_megabyte_line_is_a_bad_row(tmp_path, caplog):
    """A text this long is almost always an unclosed quote; it is named, or skipped and counted."""
    long_text = "word " * 200_000
    path = write(tmp_path / "d.csv", f"sentence,label\n{long_text},1\nshort,0\n")
    with pytest.raises(UserError, match=r"d.csv:2: the text in column 'sentence' is 1,000,000 characters, "
                                        r"over the 200,000 limit"):
        read_classification_examples(path, SINGLE)
    examples = read_classification_examples(path, SINGLE, skip_bad_rows=True)
    assert examples.texts[0] == ["short"]
    assert "oversized text" in caplog.text


@pytest.mark.parametrize("name, content, message", [
    ("missing.tsv", None, "no such file"),
    ("data.txt", "a\tb\n", "cannot tell the format"),
    ("empty.tsv", "", "empty file"),
    ("bad.jsonl", "{oops\n", r"bad.jsonl:1: invalid JSON"),
    ("list.jsonl", "[1, 2]\n", r"list.jsonl:1: expected a JSON object"),
    ("only_header.tsv", "sentence\tlabel\n", "no usable examples"),
])
def test_file_level_errors(tmp_path, name, content, message):
    path = tmp_path / name
    if content is not None:
        path.write_text(content)
    with pytest.raises(UserError, match=message):
        read_classification_examples(str(path), SINGLE)


def test_directory_and_unknown_encoding(tmp_path):
    with pytest.raises(UserError, match="is a directory"):
        read_classification_examples(str(tmp_path), SINGLE, data_format="tsv")
    path = write(tmp_path / "d.tsv", "sentence\tlabel\na\t1\n")
    with pytest.raises(UserError, match="--encoding=klingon: unknown encoding"):
        read_classification_examples(path, SINGLE, encoding="klingon")


def test_label_vocabulary_orders_and_round_trips(tmp_path):
    assert LabelVocabulary.from_labels(["10", "2", "1", "2"]).names == ["1", "2", "10"]
    assert LabelVocabulary.from_labels(["pos", "neg"]).names == ["neg", "pos"]
    vocabulary = LabelVocabulary(["b", "a"])
    vocabulary.save(str(tmp_path))
    assert LabelVocabulary.load(str(tmp_path)) == vocabulary
    with pytest.raises(UserError, match="duplicate labels"):
        LabelVocabulary(["a", "a"])


def test_demo_data_is_balanced_enough():
    examples = read_classification_examples(demo.SENTIMENT_TRAIN, SINGLE)
    counts = {label: examples.labels.count(label) for label in set(examples.labels)}
    assert set(counts) == {"negative", "positive"} and min(counts.values()) >= 100


def test_tfds_source_with_mock_data():
    tfds = pytest.importorskip("tensorflow_datasets")
    with tfds.testing.mock_data(num_examples=6):
        examples = read_classification_examples("tfds:glue/sst2", SINGLE, split="train")
    assert len(examples) == 6
    assert set(examples.labels) <= {"negative", "positive"}
    with pytest.raises(UserError, match="no feature 'text'"):
        with tfds.testing.mock_data(num_examples=2):
            read_classification_examples("tfds:glue/sst2", ColumnSpec(("text",), "label"))
