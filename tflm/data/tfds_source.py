"""Rows from TensorFlow Datasets, for sources written `tfds:NAME`."""

from tflm.errors import UserError

PREFIX = "tfds:"


def is_tfds(source):
    return source.startswith(PREFIX)


def read_rows(source, split, fields):
    """Yields (row_number, {field: python value}) from a TFDS split.

    ClassLabel features come back as their string names, so TFDS labels and
    file labels are handled alike. Needs the data set prepared locally or the
    network (TFDS downloads on first use).
    """
    import tensorflow_datasets as tfds

    name = source[len(PREFIX):]
    if not name:
        raise UserError(f"{source}: empty TFDS name (expected tfds:NAME, e.g. tfds:glue/sst2)")
    try:
        builder = tfds.builder(name)
    except Exception as e:  # TFDS raises DatasetNotFoundError and others.
        raise UserError(f"{source}: unknown TFDS data set ({str(e).splitlines()[0]})") from None
    features = builder.info.features
    missing = [f for f in fields if f not in features]
    if missing:
        raise UserError(f"{source}: no feature {missing[0]!r} (features: {sorted(features)})")
    try:
        dataset = tfds.load(name, split=split, shuffle_files=False)
    except Exception as e:
        raise UserError(f"{source}: cannot load split {split!r} ({str(e).splitlines()[0]})") from None
    for number, example in enumerate(tfds.as_numpy(dataset), start=1):
        row = {}
        for field in fields:
            value = example[field]
            if isinstance(features[field], tfds.features.ClassLabel):
                value = features[field].int2str(int(value))
            elif isinstance(value, bytes):
                value = value.decode("utf-8", errors="replace")
            row[field] = value
        yield number, row
