"""The bad-input matrix: user mistakes across the pipelines, run as a user would.

Every case must end with a one-line message naming the bad thing, a non-zero
exit status and no traceback, and must leave an existing run's checkpoints
and exports exactly as they were. The table is reproduced in
docs/resilience.md.
"""

import gzip
import hashlib
import os
import shutil

import pytest

from tests.conftest import ROOT, run_module

DEMO = os.path.join(ROOT, "tflm", "data", "demo")
SENTIMENT = f"{DEMO}/sentiment_train.tsv"
DIALOGUES = f"{DEMO}/summarization_train.jsonl"


def classify_flags(w):
    """Flags of the trained run in the fixture; cases add or override."""
    return [f"--backbone={w['tiny']}", f"--model_dir={w['run']}", f"--export_dir={w['exports']}",
            "--train_steps=4", "--batch_size=16", "--max_seq_length=32", "--precision=float32"]


def pretrain_flags(w):
    return [f"--backbone={w['tiny']}", f"--model_dir={w['fresh']}", "--train_steps=2", "--batch_size=8",
            "--max_seq_length=32", "--precision=float32"]


BASE_FLAGS = {"classify": classify_flags, "pretrain": pretrain_flags}


def seq2seq_flags(w):
    return [f"--backbone={w['tiny']}", f"--model_dir={w['fresh']}", f"--export_dir={w['exports']}",
            "--train_steps=2", "--batch_size=8", "--precision=float32", "--decoding=greedy"]


def data(train, eval_=None):
    return [f"--train_data={train}", f"--eval_data={eval_ or train}"]


# (id, pipeline, extra flags (callable of the workspace), expected message, environment)
CASES = [
    # Data files.
    ("missing_file", "classify", lambda w: data(f"{w['root']}/missing.tsv", SENTIMENT),
     "{root}/missing.tsv: no such file", None),
    ("directory_as_file", "classify", lambda w: data(w["root"], SENTIMENT),
     "{root}: is a directory, expected a data file", None),
    ("unknown_extension", "classify", lambda w: data(f"{w['root']}/notes.txt", SENTIMENT),
     "{root}/notes.txt: cannot tell the format from the extension", None),
    ("corrupt_gzip", "classify", lambda w: data(f"{w['root']}/corrupt.tsv.gz", SENTIMENT),
     "{root}/corrupt.tsv.gz: read failed (Error -3 while decompressing data", None),
    ("not_gzip", "classify", lambda w: data(f"{w['root']}/plain.tsv.gz", SENTIMENT),
     "{root}/plain.tsv.gz: read failed", None),
    ("wrong_column_name", "classify", lambda w: data(f"{w['root']}/text_column.tsv", SENTIMENT),
     "{root}/text_column.tsv:2: missing column 'sentence'", None),
    ("no_header_but_header_expected", "classify", lambda w: data(f"{w['root']}/headerless.tsv", SENTIMENT),
     "{root}/headerless.tsv:2: missing column 'sentence'", None),
    ("header_but_noheader", "classify", lambda w: data(SENTIMENT) + ["--noheader"],
     f"{SENTIMENT}: column 'sentence' given by name but the file is read without a header", None),
    ("empty_text", "classify", lambda w: data(f"{w['root']}/empty_text.tsv", SENTIMENT),
     "{root}/empty_text.tsv:3: empty text in column 'sentence' (or pass --skip_bad_rows)", None),
    ("label_outside_label_set", "classify", lambda w: data(SENTIMENT, f"{w['root']}/neutral.tsv"),
     "{root}/neutral.tsv:3: label 'neutral' is not in the label set ['negative', 'positive']", None),
    ("non_utf8_bytes", "classify", lambda w: data(f"{w['root']}/latin1.tsv", SENTIMENT),
     "{root}/latin1.tsv:2: not valid utf-8 (byte 0xe9 at column 4); set --encoding", None),
    ("one_megabyte_line", "classify", lambda w: data(f"{w['root']}/long_line.tsv", SENTIMENT),
     "{root}/long_line.tsv:2: the text in column 'sentence' is 1,000,000 characters, over the 200,000 limit",
     None),
    ("no_rows", "classify", lambda w: data(f"{w['root']}/header_only.tsv", SENTIMENT),
     "{root}/header_only.tsv: no usable examples", None),
    ("unequal_parallel_files", "translate", lambda w: data(f"{w['root']}/t.en,{w['root']}/t.de"),
     "{root}/t.en: has more lines than {root}/t.de ({root}/t.de ends at line 2)", None),
    ("unknown_encoding_of_parallel_files", "translate",
     lambda w: data(f"{w['root']}/t.en,{w['root']}/t.de") + ["--encoding=klingon"],
     "--encoding=klingon: unknown encoding", None),
    ("empty_target_line", "translate", lambda w: data(f"{w['root']}/gap.en,{w['root']}/gap.de"),
     "{root}/gap.de:2: empty target", None),
    ("invalid_json_line", "summarize", lambda w: data(f"{w['root']}/broken.jsonl", DIALOGUES),
     "{root}/broken.jsonl:2: invalid JSON", None),
    ("wrong_json_field", "summarize", lambda w: data(DIALOGUES) + ["--source_field=text"],
     f"{DIALOGUES}:1: missing column 'text'", None),
    # Flags.
    ("unknown_flag", "classify", lambda w: ["--nonexistent_flag=1"], "Unknown command line flag 'nonexistent_flag'",
     None),
    ("unknown_strategy", "classify", lambda w: ["--strategy=ps"], "--strategy=ps: value should be one of", None),
    ("unknown_precision", "classify", lambda w: ["--precision=float8"], "--precision=float8: value should be one of", None),
    ("unknown_decoding", "translate", lambda w: ["--decoding=sample"], "--decoding=sample: value should be one of", None),
    ("unknown_target_vocabulary", "summarize", lambda w: ["--target_vocabulary=bpe"],
     "--target_vocabulary=bpe: value should be one of", None),
    ("bad_freeze_spec", "classify", lambda w: ["--freeze=embedings"], "--freeze: unknown item 'embedings'", None),
    ("freeze_beyond_the_blocks", "classify", lambda w: ["--freeze=blocks:3-5", f"--model_dir={w['fresh']}"],
     "--freeze: block 5 requested but the backbone has 2 blocks (0-1)", None),
    ("bad_freeze_decoder_spec", "summarize", lambda w: ["--freeze_decoder=blocks:x"],
     "--freeze_decoder: 'blocks:x' needs a non-negative integer", None),
    ("zero_layer_lr_decay", "classify", lambda w: ["--layer_lr_decay=0"],
     "--layer_lr_decay must be > 0 (1 turns it off)", None),
    ("ema_momentum_of_one", "classify", lambda w: ["--ema_momentum=1"],
     "flag --ema_momentum=1: 1.0 is not a number in the range [0.0, 0.99999]", None),
    ("zero_batch_size", "classify", lambda w: ["--batch_size=0"], "--batch_size", None),
    ("three_text_fields", "classify", lambda w: ["--text_fields=a,b,c"], "--text_fields: give one field, or two",
     None),
    ("metric_of_another_task", "translate", lambda w: ["--best_metric=accuracy"],
     "--best_metric: one of bleu, chrf, rouge1", None),
    ("longer_than_the_position_table", "classify", lambda w: ["--max_seq_length=200", f"--model_dir={w['fresh']}"],
     "--max_seq_length=200: the backbone has position embeddings for 128 tokens; use at most 128", None),
    ("target_longer_than_the_position_table", "translate", lambda w: ["--max_target_length=129"],
     "--max_target_length=129: the backbone has position embeddings for 128 tokens", None),
    ("report_table_as_best_metric", "classify", lambda w: ["--best_metric=per_class"],
     "--best_metric: one of accuracy, macro_f1, macro_precision, macro_recall", None),
    ("bad_export_name", "classify", lambda w: ["--export_name=a/b"], "--export_name: use letters, digits", None),
    ("missing_flagfile", "classify", lambda w: [f"--flagfile={w['root']}/nope.cfg"], "nope.cfg", None),
    # Incompatible flags.
    ("tpu_without_tpu_strategy", "classify", lambda w: ["--tpu=my-tpu"],
     "--tpu, --tpu_zone and --gcp_project are only used with --strategy=tpu", None),
    ("tpu_strategy_without_tpu", "classify", lambda w: ["--strategy=tpu"], "--strategy=tpu needs --tpu", None),
    ("cpu_devices_without_mirrored", "classify", lambda w: ["--cpu_devices=2"],
     "--cpu_devices > 1 needs --strategy=mirrored or multi_worker_mirrored", None),
    ("train_file_without_eval_file", "translate", lambda w: [f"--train_data={w['root']}/t.en,{w['root']}/t.de"],
     "--eval_data is required with --train_data files", None),
    ("eval_data_without_train_data", "classify", lambda w: [f"--eval_data={SENTIMENT}"],
     "--eval_data given without --train_data", None),
    ("batch_not_divisible_by_replicas", "classify", lambda w: ["--strategy=mirrored", "--cpu_devices=2",
                                                               "--batch_size=15"],
     "--batch_size=15: must be a multiple of the 2 replicas", None),
    ("tf_config_not_json", "classify", lambda w: ["--strategy=multi_worker_mirrored"],
     "TF_CONFIG: not valid JSON", {"TF_CONFIG": "{cluster"}),
    # Folders, checkpoints, exports, backbones.
    ("unwritable_model_dir", "classify", lambda w: [f"--model_dir={w['root']}/notes.txt/run"],
     "--model_dir={root}/notes.txt/run: not writable", None),
    ("model_dir_of_another_run", "classify", lambda w: [f"--model_dir={w['other_run']}"],
     "differs from --backbone=bert_base_en_uncased of the run in --model_dir", None),
    ("eval_without_checkpoint", "classify", lambda w: [f"--model_dir={w['fresh']}", "--mode=eval"],
     "--model_dir={fresh} holds no labels.json; train first", None),
    ("export_to_existing_version", "classify", lambda w: ["--mode=export", "--export_version=1"],
     "--export_version=1: {exports}/text_classifier/1 already exists and is never overwritten", None),
    ("broken_models_config", "classify", lambda w: ["--mode=export", f"--export_dir={w['root']}/broken_config"],
     "{root}/broken_config/models.config: not a TF Serving model config", None),
    ("corrupted_checkpoint_resume", "classify", lambda w: [f"--model_dir={w['corrupt']}", "--train_steps=8"],
     "checkpoint {corrupt}/checkpoints/ckpt-4: cannot resume from it", None),
    ("corrupted_checkpoint_eval", "classify", lambda w: [f"--model_dir={w['corrupt']}", "--mode=eval"],
     "checkpoint {corrupt}/best/ckpt-4: cannot restore", None),
    ("backbone_dir_not_a_model", "classify", lambda w: [f"--backbone={w['junk_model']}",
                                                        f"--model_dir={w['fresh']}"],
     "backbone path {junk_model}: no config.json, so it is neither a KerasHub preset", None),
    ("backbone_is_a_file", "translate", lambda w: [f"--backbone={w['root']}/notes.txt"],
     "backbone path {root}/notes.txt: is not a directory", None),
    ("unknown_preset_name", "classify", lambda w: ["--backbone=bert_tiny_nonexistent", f"--model_dir={w['fresh']}"],
     "--backbone=bert_tiny_nonexistent: not a known KerasHub preset", None),
    # Sample selection and augmentation.
    ("select_budget_over_the_data", "classify", lambda w: ["--select=random", "--select_budget=1000",
                                                           f"--model_dir={w['fresh']}"],
     "--select_budget=1000 is larger than the 320 training examples", None),
    ("select_without_budget", "classify", lambda w: ["--select=diversity"],
     "--select=diversity needs exactly one of --select_budget or --select_per_class", None),
    ("budget_without_select", "classify", lambda w: ["--select_budget=10"],
     "--select_budget and --select_per_class need --select", None),
    ("select_method_of_another_strategy", "classify", lambda w: ["--select=diversity", "--select_budget=10",
                                                                 "--select_method=el2n"],
     "--select_method=el2n: for --select=diversity use k_center, kmeans_pp", None),
    ("select_on_multi_worker", "classify", lambda w: ["--select=random", "--select_budget=10",
                                                      "--strategy=multi_worker_mirrored"],
     "--select with --strategy=multi_worker_mirrored: run the selection in a single-worker run first", None),
    ("unknown_augment_operation", "classify", lambda w: ["--augment=delete,shuffle"],
     "--augment: use delete, swap, insert", None),
    ("back_translate_one_export", "classify", lambda w: ["--back_translate=/only/one"],
     "--back_translate: give two comma-separated paths", None),
    ("back_translate_missing_export", "classify", lambda w: [f"--back_translate={w['root']}/a,{w['root']}/b",
                                                             f"--model_dir={w['fresh']}"],
     "--back_translate: {root}/a: no such directory", None),
    # Continued pretraining and text generation.
    ("empty_corpus", "pretrain", lambda w: data(f"{w['root']}/blank.txt"), "{root}/blank.txt: empty corpus", None),
    ("objective_the_backbone_lacks", "pretrain", lambda w: ["--objective=causal_lm"],
     "--objective=causal_lm: backbone {tiny} supports mlm", None),
    ("url_model_dir_without_local_preset_dir", "pretrain", lambda w: ["--model_dir=gs://bucket/run"],
     "--preset_dir: the preset is written to a local folder", None),
    ("mask_rate_out_of_range", "pretrain", lambda w: ["--mask_rate=0.95"], "--mask_rate", None),
    ("metric_of_a_classifier_for_pretraining", "pretrain", lambda w: ["--best_metric=macro_f1"],
     "--best_metric: one of perplexity, loss, accuracy", None),
    ("decoder_freeze_on_a_decoder_only_model", "generate_text",
     lambda w: ["--backbone=tiny_random_gpt2", "--freeze_decoder=bottom:1"],
     "--freeze_decoder: --backbone=tiny_random_gpt2 is decoder-only (one stack); use --freeze", None),
]


def write_files(root):
    def text(name, content, encoding="utf-8"):
        with open(os.path.join(root, name), "w", encoding=encoding) as f:
            f.write(content)

    text("notes.txt", "not data\n")
    text("plain.tsv.gz", "sentence\tlabel\nfine\tpositive\n")
    text("text_column.tsv", "text\tlabel\ngreat\tpositive\n")
    text("headerless.tsv", "great\tpositive\nawful\tnegative\n")
    text("empty_text.tsv", "sentence\tlabel\ngreat\tpositive\n\tnegative\n")
    text("neutral.tsv", "sentence\tlabel\ngreat\tpositive\nso so\tneutral\n")
    text("latin1.tsv", "sentence\tlabel\ncaf\u00e9 ok\tpositive\n", encoding="latin-1")
    text("long_line.tsv", "sentence\tlabel\n" + "x" * 1_000_000 + "\tpositive\n")
    text("header_only.tsv", "sentence\tlabel\n")
    text("t.en", "one\ntwo\nthree\n")
    corrupt = bytearray(gzip.compress(b"sentence\tlabel\n" + b"great film\tpositive\n" * 2000))
    corrupt[30:60] = b"\xff" * 30  # Inside the deflate stream: zlib fails, not the gzip header check.
    with open(os.path.join(root, "corrupt.tsv.gz"), "wb") as f:
        f.write(corrupt)
    text("t.de", "eins\nzwei\n")
    text("gap.en", "one\ntwo\n")
    text("gap.de", "eins\n\n")
    text("blank.txt", "\n  \n")
    text("broken.jsonl", '{"dialogue": "a: hi", "summary": "hi"}\n{"dialogue": \n')
    os.makedirs(os.path.join(root, "broken_config"))
    text("broken_config/models.config", "model_config_list { config { name: ")
    os.makedirs(os.path.join(root, "junk_model"))
    text("junk_model/weights.bin", "junk")


def snapshot(*folders):
    """{path: sha1} of every file under `folders`."""
    digests = {}
    for folder in folders:
        for directory, _, names in os.walk(folder):
            for name in names:
                path = os.path.join(directory, name)
                with open(path, "rb") as f:
                    digests[path] = hashlib.sha1(f.read()).hexdigest()
    return digests


@pytest.fixture(scope="module")
def workspace(tiny_preset, tmp_path_factory):
    root = str(tmp_path_factory.mktemp("bad_inputs"))
    w = {"root": root, "tiny": tiny_preset, "run": f"{root}/run", "exports": f"{root}/exports",
         "other_run": f"{root}/other_run", "corrupt": f"{root}/corrupt",
         "junk_model": f"{root}/junk_model"}
    result = run_module("pipelines.classify", *classify_flags(w))
    assert result.returncode == 0, result.stderr[-3000:]
    write_files(root)
    os.makedirs(w["other_run"])
    with open(f"{w['other_run']}/flags.txt", "w") as f:
        f.write("--backbone=bert_base_en_uncased\n")
    shutil.copytree(w["run"], w["corrupt"])
    for folder in ("checkpoints", "best"):
        for name in os.listdir(f"{w['corrupt']}/{folder}"):
            if ".data-" in name:
                with open(f"{w['corrupt']}/{folder}/{name}", "r+b") as f:
                    f.write(b"\0garbage" * 64)
    return w


def test_the_matrix_has_at_least_30_cases_over_every_pipeline_and_is_documented():
    assert len(CASES) >= 30 and len({c[0] for c in CASES}) == len(CASES)
    assert {c[1] for c in CASES} == {"classify", "translate", "summarize", "pretrain", "generate_text"}
    documented = open(os.path.join(ROOT, "docs", "resilience.md"), encoding="utf-8").read()
    assert [c[0] for c in CASES if f"| `{c[0]}` |" not in documented] == []


@pytest.mark.parametrize("name, pipeline, extra, message, env", CASES, ids=[c[0] for c in CASES])
def test_bad_input(workspace, tmp_path, name, pipeline, extra, message, env):
    w = dict(workspace, fresh=str(tmp_path / "fresh"))  # A new, empty run folder per case.
    protected = (w["run"], w["exports"], w["corrupt"])
    before = snapshot(*protected)
    base = BASE_FLAGS.get(pipeline, seq2seq_flags)(w)
    result = run_module(f"pipelines.{pipeline}", *base, *extra(w), env=env)
    stderr = result.stderr
    assert result.returncode != 0, stderr[-2000:]
    assert "Traceback" not in stderr, stderr[-3000:]
    expected = message.format(**w)
    assert expected in stderr, stderr[-2000:]
    # The message is one line: the error line itself carries it.
    assert any(expected in line for line in stderr.splitlines())
    assert snapshot(*protected) == before
    if name in ("missing_file", "empty_text", "backbone_dir_not_a_model"):
        assert not os.path.exists(f"{w['fresh']}/checkpoints")
