"""The hyperparameters a search varies, parsed from flags, as keras-tuner sees them."""

import dataclasses
import math

import keras_tuner

from tflm.errors import UserError

# Hyperparameter -> (pipeline flag, kind). Kinds: "log" float range sampled
# log-uniformly, "float" range, "int" range, "choice" list.
PARAMETERS = {
    "learning_rate": ("--learning_rate", "log"),
    "batch_size": ("--batch_size", "choice"),
    "num_epochs": ("--num_epochs", "int"),
    "warmup_fraction": ("--warmup_fraction", "float"),
    "weight_decay": ("--weight_decay", "float"),
    "dropout": ("--dropout", "float"),
    "freeze_bottom": ("--freeze_bottom", "int"),
    "layer_lr_decay": ("--layer_lr_decay", "float"),
}
# The pipelines that define a parameter's flag, where not every one does.
PIPELINES_WITH = {"dropout": ("classify", "translate", "summarize", "generate_text"),
                  "layer_lr_decay": ("classify", "pretrain")}
# Hyperband chooses epochs itself, per bracket and round.
HYPERBAND_EPOCHS = "tuner/epochs"


@dataclasses.dataclass(frozen=True)
class Dimension:
    name: str
    kind: str
    values: tuple  # (low, high) for ranges; the choices for "choice".

    @property
    def flag(self):
        return PARAMETERS[self.name][0]


def parse_dimension(name, text, flag_name):
    """A Dimension from flag text such as "1e-5,1e-3" (range) or "16,32" (choices); None if empty."""
    kind = PARAMETERS[name][1]
    parts = [p.strip() for p in text.split(",") if p.strip()]
    if not parts:
        return None
    cast = int if kind in ("int", "choice") else float
    try:
        values = tuple(cast(p) for p in parts)
    except ValueError:
        raise UserError(f"--{flag_name}={text}: expected comma-separated {cast.__name__}s") from None
    if kind == "choice":
        if len(set(values)) != len(values) or any(v <= 0 for v in values):
            raise UserError(f"--{flag_name}={text}: choices must be distinct and positive")
        return Dimension(name, kind, values)
    if len(values) != 2:
        raise UserError(f"--{flag_name}={text}: give a range as LOW,HIGH")
    low, high = values
    if low > high:
        raise UserError(f"--{flag_name}={text}: inverted range (low {low} > high {high})")
    if low == high:
        raise UserError(f"--{flag_name}={text}: empty range; give a fixed value as a pipeline flag instead")
    if kind == "log" and low <= 0:
        raise UserError(f"--{flag_name}={text}: a log-scale range must be positive")
    if name in ("warmup_fraction", "dropout") and not (0 <= low and high <= 1):
        raise UserError(f"--{flag_name}={text}: must lie within 0..1")
    if name == "layer_lr_decay" and not (0 < low and high <= 1):
        raise UserError(f"--{flag_name}={text}: must lie within (0, 1]")
    if kind == "int" and low < (1 if name == "num_epochs" else 0):
        raise UserError(f"--{flag_name}={text}: must be >= {1 if name == 'num_epochs' else 0}")
    return Dimension(name, kind, values)


class SearchSpace:
    """The searched dimensions; everything else keeps the pipeline's flag values."""

    def __init__(self, dimensions, hyperband=False):
        self.dimensions = [d for d in dimensions if d is not None]
        self.hyperband = hyperband
        if not self.dimensions:
            raise UserError("nothing to search: every *_range / *_choices flag is empty")

    @property
    def max_epochs(self):
        epochs = [d for d in self.dimensions if d.name == "num_epochs"]
        return epochs[0].values[1] if epochs else None

    def hyperparameters(self):
        """keras_tuner.HyperParameters for the oracle (Hyperband sets the epochs itself)."""
        hp = keras_tuner.HyperParameters()
        for d in self.dimensions:
            if d.kind == "choice":
                hp.Choice(d.name, list(d.values))
            elif d.kind == "int":
                if not (self.hyperband and d.name == "num_epochs"):
                    hp.Int(d.name, d.values[0], d.values[1])
            else:
                hp.Float(d.name, d.values[0], d.values[1], sampling="log" if d.kind == "log" else "linear")
        return hp

    @staticmethod
    def trial_flags(values):
        """Pipeline flags for a trial's hyperparameter values."""
        flags = []
        for name, value in sorted(values.items()):
            if name == HYPERBAND_EPOCHS:
                flags.append(f"--num_epochs={int(value)}")
            elif name in PARAMETERS:
                if isinstance(value, float) and not math.isfinite(value):
                    raise UserError(f"hyperparameter {name}={value} is not finite")
                flags.append(f"{PARAMETERS[name][0]}={value}")
        return flags
