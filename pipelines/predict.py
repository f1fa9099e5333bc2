"""Runs an exported SavedModel on texts: a quick local check without TF Serving.

  tflm predict --model=savedmodels/sst2 "a great film" "a dull one"
  tflm predict --model=savedmodels/translator/3 --input_file=dev.txt --output_file=out.jsonl

--model is a model folder (its newest version is used) or one version
folder. Texts come as arguments or from --input_file: `.txt` (one text per
line) or `.jsonl` (objects holding the signature's inputs, e.g. "text" and,
for sentence-pair classifiers, "text_b"). One JSON line per text goes to
stdout or --output_file: the inputs and every output of the signature.

Needs only the SavedModel, TensorFlow and tensorflow-text (no Keras, no
tflm model code), as on a serving host.
"""

import json
import os
import sys

import tensorflow as tf
import tensorflow_text  # noqa: F401  Registers the tokenizer ops export graphs use.
from absl import flags

from pipelines.entry import run_pipeline
from tflm.errors import UserError

FLAGS = flags.FLAGS

flags.DEFINE_string("model", None, "SavedModel: <export_dir>/<name> (newest version) or <export_dir>/<name>/<version>.")
flags.DEFINE_string("input_file", "", "Texts to run: .txt (one per line) or .jsonl (the signature's input "
                    "names as fields); instead of positional texts.")
flags.DEFINE_string("output_file", "", "Write the JSON lines here instead of stdout.")
flags.DEFINE_string("signature", "serving_default", "Signature to call: one taking raw text, e.g. "
                    "serving_default (serve_examples takes serialized tf.Example protos instead).")
flags.DEFINE_integer("batch_size", 32, "Texts per call.", lower_bound=1)
flags.mark_flag_as_required("model")


def saved_model_dir(path):
    """`path` if it holds a SavedModel, else its highest integer-named version folder."""
    if os.path.isfile(os.path.join(path, "saved_model.pb")):
        return path
    versions = sorted(int(n) for n in (os.listdir(path) if os.path.isdir(path) else []) if n.isdigit())
    for version in reversed(versions):
        candidate = os.path.join(path, str(version))
        if os.path.isfile(os.path.join(candidate, "saved_model.pb")):
            return candidate
    raise UserError(f"--model={path}: no saved_model.pb there or in an integer-named version folder under it")


def read_rows(path, input_names):
    """Rows (dicts of input name -> text) from a .txt or .jsonl file; errors name the file and line."""
    rows = []
    try:
        with open(path, encoding="utf-8") as f:
            for number, line in enumerate(f, 1):
                line = line.rstrip("\n")
                if path.endswith(".jsonl"):
                    if not line.strip():
                        continue
                    try:
                        row = json.loads(line)
                    except json.JSONDecodeError as e:
                        raise UserError(f"{path}:{number}: not JSON ({e.msg})") from None
                    missing = [n for n in input_names if not isinstance(row.get(n) if isinstance(row, dict) else None,
                                                                      str)]
                    if missing:
                        raise UserError(f"{path}:{number}: needs string field(s) {missing} (the signature's inputs)")
                    rows.append({n: row[n] for n in input_names})
                elif len(input_names) == 1:
                    rows.append({input_names[0]: line})
                else:
                    raise UserError(f"--input_file={path}: the signature takes {list(input_names)}; use .jsonl")
    except OSError as e:
        raise UserError(f"--input_file={path}: {e.strerror}") from None
    return rows


def _jsonable(value):
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if hasattr(value, "tolist"):
        return _jsonable(value.tolist())
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    return value


def predict(signature, rows, batch_size):
    """Yields one dict per row: the row and the signature's outputs for it."""
    for start in range(0, len(rows), batch_size):
        batch = rows[start:start + batch_size]
        try:
            outputs = signature(**{n: tf.constant([r[n] for r in batch]) for n in batch[0]})
        except tf.errors.InvalidArgumentError as e:  # E.g. raw text given to serve_examples.
            raise UserError(f"--signature={FLAGS.signature} rejected texts {start + 1}-{start + len(batch)}: "
                            f"{e.message.splitlines()[0]}") from None
        outputs = {k: v.numpy() for k, v in outputs.items()}
        for i, row in enumerate(batch):
            yield dict(row, **{k: _jsonable(v[i]) for k, v in sorted(outputs.items())})


def main(argv):
    texts = argv[1:]
    if bool(texts) == bool(FLAGS.input_file):
        raise UserError("give texts as arguments or --input_file, not both" if texts else
                        "no input: give texts as arguments or --input_file")
    path = saved_model_dir(FLAGS.model)
    signatures = tf.saved_model.load(path).signatures
    if FLAGS.signature not in signatures:
        raise UserError(f"--signature={FLAGS.signature}: {path} has {sorted(signatures)}")
    signature = signatures[FLAGS.signature]
    specs = signature.structured_input_signature[1]
    if any(spec.dtype != tf.string for spec in specs.values()):
        raise UserError(f"--signature={FLAGS.signature}: takes {sorted(specs)}, not only strings; "
                        "use a raw-text signature such as serving_default")
    input_names = sorted(specs)
    if texts:
        if len(input_names) != 1:
            raise UserError(f"{path} takes {input_names}; pass them in a .jsonl --input_file")
        rows = [{input_names[0]: t} for t in texts]
    else:
        rows = read_rows(FLAGS.input_file, input_names)
    try:
        out = open(FLAGS.output_file, "w", encoding="utf-8") if FLAGS.output_file else sys.stdout
    except OSError as e:
        raise UserError(f"--output_file={FLAGS.output_file}: {e.strerror}") from None
    try:
        for result in predict(signature, rows, FLAGS.batch_size):
            out.write(json.dumps(result, ensure_ascii=False) + "\n")
    finally:
        if out is not sys.stdout:
            out.close()


def run():
    run_pipeline(main, takes_arguments=True)


if __name__ == "__main__":
    run()
