"""How a pipeline reads its data files and TFDS splits: one settings object for every task."""

import dataclasses


@dataclasses.dataclass(frozen=True)
class DataReading:
    """Mirrors the --data_format/--header/--encoding/--skip_bad_rows/--*_split flags."""

    data_format: str = "auto"
    header: bool = True
    encoding: str = "utf-8"
    skip_bad_rows: bool = False
    train_split: str = "train"
    eval_split: str = "validation"
