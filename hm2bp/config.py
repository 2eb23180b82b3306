"""Network configuration: the TOML / dict schema of docs/config.md as frozen dataclasses.

`load_config` accepts a dict, a TOML path, or a `NetworkConfig`; unknown keys anywhere raise `ConfigError`
naming the key path. Times are in simulation steps (`steps`, `tau_m`, `tau_s`, `refractory`).
"""

from __future__ import annotations

import dataclasses
import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hm2bp.errors import Hm2bpError

LAYER_TYPES = ("dense", "conv", "pool")
INIT_KINDS = ("uniform", "gaussian")
OPTIMIZERS = ("adam", "sgd")
LR_SCHEDULES = ("inv_sqrt_epoch", "constant")
LR_BATCH_SCALINGS = ("none", "sqrt")


class ConfigError(Hm2bpError, ValueError):
    """A network configuration that does not follow the schema; the message names the key path."""


@dataclass(frozen=True)
class NeuronParams:
    """LIF parameters (algorithm.md §1), all in steps: membrane / synaptic time constants and refractory period."""

    tau_m: float = 64.0
    tau_s: float = 8.0
    refractory: int = 2


@dataclass(frozen=True)
class LayerSpec:
    """One layer; `size` = number of neurons (dense), `threshold` = vth, `lateral_inhibition` = w0 (algorithm.md §1)."""

    name: str
    type: str
    size: int | None
    threshold: float
    neuron: NeuronParams = field(default_factory=NeuronParams)
    init_kind: str = "uniform"
    init_scale: float = 1.0
    lateral_inhibition: float = 0.0
    channels: int | None = None
    kernel: int | None = None
    window: int | None = None

    def describe(self) -> str:
        """Short form for logs: `300` (dense), `15C5` (conv), `P2` (pool)."""
        if self.type == "conv":
            return f"{self.channels}C{self.kernel}"
        if self.type == "pool":
            return f"P{self.window}"
        return str(self.size)


@dataclass(frozen=True)
class LossSpec:
    """Dead-zone count loss (algorithm.md §3.2): targets `desired` / `undesired` spikes, no error within `margin`."""

    desired: float = 35
    undesired: float = 5
    margin: float = 5


@dataclass(frozen=True)
class TrainSpec:
    """Optimiser and loop settings (algorithm.md §3.9-3.12)."""

    optimizer: str = "adam"
    lr: float = 1e-3
    momentum: float = 0.9
    lr_schedule: str = "inv_sqrt_epoch"
    batch_size: int = 1
    epochs: int = 100
    effect_ratio: bool = True
    boost: bool = True
    seed: int = 0
    lr_batch_scaling: str = "none"


@dataclass(frozen=True)
class RegularizerSpec:
    """Weight regulariser of algorithm.md §3.7 (`lam` is the TOML key `lambda`)."""

    lam: float = 10.0
    beta: float = 0.04
    weight_limit: float = 8.0


DRAWS = ("epoch", "sample")


@dataclass(frozen=True)
class AugmentSpec:
    """Training-image augmentation (algorithm.md §2.1; CNN config: SCALE 12, ROTATION 12, DISTORTION 3.4), applied by
    `hm2bp.train.augment` to the store's `images` extra and Poisson re-encoded every epoch (TOML table `[augment]`).

    `scale` in percent, `rotation` in degrees, `distortion` the elastic displacement scale (pixels per unit of the
    smoothed noise), `field_size`/`sigma` the Gaussian smoothing kernel (pixels), `max_prob` the per-step spike
    probability of a white pixel (1/5.5), `draw` "epoch" | "sample"."""

    enabled: bool = False
    scale: float = 12.0
    rotation: float = 12.0
    distortion: float = 3.4
    field_size: int = 21
    sigma: float = 4.0
    max_prob: float = 1.0 / 5.5
    draw: str = "epoch"

    @property
    def is_identity(self) -> bool:
        return self.scale == 0.0 and self.rotation == 0.0 and self.distortion == 0.0


def parse_augment(d: Any, path: str = "augment") -> AugmentSpec:
    """Validate an `[augment]` table (unknown keys -> ConfigError naming `path.key`)."""
    if not isinstance(d, dict):
        raise ConfigError(f"{path}: expected a table, got {type(d).__name__}")
    known = tuple(f.name for f in dataclasses.fields(AugmentSpec))
    for key in d:
        if key not in known:
            raise ConfigError(f"{path}.{key}: unknown key; known: {', '.join(known)}")
    values: dict[str, Any] = {}
    for f in dataclasses.fields(AugmentSpec):
        if f.name not in d:
            continue
        v = d[f.name]
        where = f"{path}.{f.name}"
        if f.name == "enabled":
            if not isinstance(v, bool):
                raise ConfigError(f"{where}: expected true or false, got {v!r}")
        elif f.name == "draw":
            if v not in DRAWS:
                raise ConfigError(f"{where}: {v!r} is not one of {', '.join(DRAWS)}")
        elif f.name == "field_size":
            if isinstance(v, bool) or not isinstance(v, int) or v < 1 or v % 2 == 0:
                raise ConfigError(f"{where}: expected a positive odd integer, got {v!r}")
        else:
            if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v) or v < 0:
                raise ConfigError(f"{where}: expected a finite number >= 0, got {v!r}")
            if f.name == "sigma" and v == 0:
                raise ConfigError(f"{where}: must be > 0")
            if f.name == "max_prob" and not 0 < v <= 1:
                raise ConfigError(f"{where}: must lie in (0, 1], got {v!r}")
            v = float(v)
        values[f.name] = v
    return AugmentSpec(**values)


@dataclass(frozen=True)
class NetworkConfig:
    """A whole network: `steps` per sample, default neuron, layers (last = output), loss, training, regulariser."""

    steps: int
    neuron: NeuronParams
    layers: tuple[LayerSpec, ...]
    loss: LossSpec = field(default_factory=LossSpec)
    train: TrainSpec = field(default_factory=TrainSpec)
    regularizer: RegularizerSpec = field(default_factory=RegularizerSpec)
    augment: AugmentSpec = field(default_factory=AugmentSpec)

    def to_dict(self) -> dict[str, Any]:
        """The schema dict (round-trips through `load_config`)."""
        layers = []
        for spec in self.layers:
            d: dict[str, Any] = {"name": spec.name, "type": spec.type}
            if spec.type != "pool":
                d["init"] = {"kind": spec.init_kind, "scale": spec.init_scale}
            for key in ("size", "channels", "kernel", "window"):
                if getattr(spec, key) is not None:
                    d[key] = getattr(spec, key)
            d["threshold"] = spec.threshold
            d["lateral_inhibition"] = spec.lateral_inhibition
            d["neuron"] = dataclasses.asdict(spec.neuron)
            layers.append(d)
        reg = self.regularizer
        out = {
            "steps": self.steps,
            "neuron": dataclasses.asdict(self.neuron),
            "layers": layers,
            "loss": dataclasses.asdict(self.loss),
            "train": dataclasses.asdict(self.train),
            "regularizer": {"lambda": reg.lam, "beta": reg.beta, "weight_limit": reg.weight_limit},
        }
        if self.augment != AugmentSpec():  # omitted when default: configs without augmentation keep their dict
            out["augment"] = dataclasses.asdict(self.augment)
        return out

    def replace_train(self, **kw: Any) -> NetworkConfig:
        """A copy with the given `train` fields changed (validated like the TOML keys)."""
        merged = {**dataclasses.asdict(self.train), **kw}
        return dataclasses.replace(self, train=_parse_train(merged, "train"))

    def replace_augment(self, **kw: Any) -> NetworkConfig:
        """A copy with the given `augment` fields changed (validated like the TOML keys)."""
        merged = {**dataclasses.asdict(self.augment), **kw}
        return dataclasses.replace(self, augment=parse_augment(merged, "augment"))

    @property
    def output(self) -> LayerSpec:
        """The output layer (the last one)."""
        return self.layers[-1]


# ---------------------------------------------------------------------------------------------- parsing helpers
def _check_keys(d: Any, known: tuple[str, ...], path: str) -> dict:
    if not isinstance(d, dict):
        raise ConfigError(f"{path or '<root>'}: expected a table, got {type(d).__name__}")
    for key in d:
        if key not in known:
            where = f"{path}.{key}" if path else str(key)
            raise ConfigError(f"{where}: unknown key; known: {', '.join(known)}")
    return d


def _num(d: dict, key: str, path: str, default: Any, *, lo: float | None = None, lo_strict: bool = False,
         integer: bool = False, allow_none: bool = False) -> Any:
    value = d.get(key, default)
    where = f"{path}.{key}" if path else key
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"{where}: expected a number, got {value!r}")
    if integer:
        if isinstance(value, float) and not value.is_integer():
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        value = int(value)
    elif not math.isfinite(value):
        raise ConfigError(f"{where}: expected a finite number, got {value!r}")
    if lo is not None and (value <= lo if lo_strict else value < lo):
        raise ConfigError(f"{where}: must be {'>' if lo_strict else '>='} {lo:g}, got {value!r}")
    return value if integer else float(value)


def _choice(d: dict, key: str, path: str, default: str, choices: tuple[str, ...]) -> str:
    value = d.get(key, default)
    if value not in choices:
        raise ConfigError(f"{path}.{key}: {value!r} is not one of {', '.join(choices)}")
    return value


def _bool(d: dict, key: str, path: str, default: bool) -> bool:
    value = d.get(key, default)
    if not isinstance(value, bool):
        raise ConfigError(f"{path}.{key}: expected true or false, got {value!r}")
    return value


def _default(cls: type, name: str) -> Any:
    """The dataclass default of field `name` of `cls`: the one place every schema default is written."""
    f = next(f for f in dataclasses.fields(cls) if f.name == name)
    return f.default_factory() if f.default is dataclasses.MISSING else f.default


_NEURON_KEYS = ("tau_m", "tau_s", "refractory")


def _parse_neuron(d: dict, path: str, base: NeuronParams) -> NeuronParams:
    tau_m = _num(d, "tau_m", path, base.tau_m, lo=0, lo_strict=True)
    tau_s = _num(d, "tau_s", path, base.tau_s, lo=0, lo_strict=True)
    if tau_m == tau_s:
        raise ConfigError(f"{path}: tau_m and tau_s must differ (the S-PSP kernel divides by 1 - tau_s/tau_m)")
    return NeuronParams(tau_m, tau_s, _num(d, "refractory", path, base.refractory, lo=0, integer=True))


_LAYER_KEYS = ("name", "type", "size", "threshold", "init", "lateral_inhibition", "channels", "kernel", "window",
               "neuron", *_NEURON_KEYS)


def _parse_layer(d: Any, path: str, base: NeuronParams) -> LayerSpec:
    _check_keys(d, _LAYER_KEYS, path)
    name = d.get("name")
    if not isinstance(name, str) or not name:
        raise ConfigError(f"{path}.name: expected a non-empty string, got {name!r}")
    kind = _choice(d, "type", path, "dense", LAYER_TYPES)
    neuron = _parse_neuron(_check_keys(d.get("neuron", {}), _NEURON_KEYS, f"{path}.neuron"), f"{path}.neuron", base)
    neuron = _parse_neuron({k: d[k] for k in _NEURON_KEYS if k in d}, path, neuron)
    init = _check_keys(d.get("init", {}), ("kind", "scale"), f"{path}.init")
    if "threshold" not in d:
        raise ConfigError(f"{path}.threshold: missing")
    threshold = _num(d, "threshold", path, None, lo=0, lo_strict=True)
    size = _num(d, "size", path, None, lo=1, integer=True, allow_none=True)
    channels = _num(d, "channels", path, None, lo=1, integer=True, allow_none=True)
    kernel = _num(d, "kernel", path, None, lo=1, integer=True, allow_none=True)
    window = _num(d, "window", path, None, lo=1, integer=True, allow_none=True)
    if kind == "dense" and size is None:
        raise ConfigError(f"{path}.size: missing (a dense layer needs its number of neurons)")
    if kind == "conv" and (channels is None or kernel is None):
        raise ConfigError(f"{path}: a conv layer needs channels and kernel")
    if kind == "pool" and window is None:
        raise ConfigError(f"{path}.window: missing (a pool layer needs its window)")
    if kind != "dense" and d.get("lateral_inhibition", _default(LayerSpec, "lateral_inhibition")) != 0.0:
        raise ConfigError(f"{path}.lateral_inhibition: only dense layers support lateral inhibition")
    return LayerSpec(
        name=name, type=kind, size=size, threshold=threshold, neuron=neuron,
        init_kind=_choice(init, "kind", f"{path}.init", _default(LayerSpec, "init_kind"), INIT_KINDS),
        init_scale=_num(init, "scale", f"{path}.init", _default(LayerSpec, "init_scale"), lo=0),
        lateral_inhibition=_num(d, "lateral_inhibition", path, _default(LayerSpec, "lateral_inhibition"), lo=0),
        channels=channels, kernel=kernel, window=window,
    )


def _parse_train(d: Any, path: str) -> TrainSpec:
    _check_keys(d, tuple(f.name for f in dataclasses.fields(TrainSpec)), path)
    base = TrainSpec()
    momentum = _num(d, "momentum", path, base.momentum, lo=0)
    if momentum >= 1:
        raise ConfigError(f"{path}.momentum: must be < 1, got {momentum!r}")
    return TrainSpec(
        optimizer=_choice(d, "optimizer", path, base.optimizer, OPTIMIZERS),
        lr=_num(d, "lr", path, base.lr, lo=0, lo_strict=True),
        momentum=momentum,
        lr_schedule=_choice(d, "lr_schedule", path, base.lr_schedule, LR_SCHEDULES),
        batch_size=_num(d, "batch_size", path, base.batch_size, lo=1, integer=True),
        epochs=_num(d, "epochs", path, base.epochs, lo=0, integer=True),
        effect_ratio=_bool(d, "effect_ratio", path, base.effect_ratio),
        boost=_bool(d, "boost", path, base.boost),
        seed=_num(d, "seed", path, base.seed, lo=0, integer=True),
        lr_batch_scaling=_choice(d, "lr_batch_scaling", path, base.lr_batch_scaling, LR_BATCH_SCALINGS),
    )


def _parse(d: Any) -> NetworkConfig:
    _check_keys(d, ("steps", "neuron", "layers", "loss", "train", "regularizer", "augment"), "")
    if "steps" not in d:
        raise ConfigError("steps: missing")
    steps = _num(d, "steps", "", None, lo=2, integer=True)
    neuron = _parse_neuron(_check_keys(d.get("neuron", {}), _NEURON_KEYS, "neuron"), "neuron", NeuronParams())
    raw_layers = d.get("layers")
    if not isinstance(raw_layers, list | tuple) or not raw_layers:
        raise ConfigError("layers: expected a non-empty array of tables")
    layers = tuple(_parse_layer(item, f"layers[{k}]", neuron) for k, item in enumerate(raw_layers))
    names = [spec.name for spec in layers]
    for k, name in enumerate(names):
        if name in names[:k]:
            raise ConfigError(f"layers[{k}].name: duplicate layer name {name!r}")
    for k in range(1, len(layers)):
        if layers[k].type != "dense" and layers[k - 1].type == "dense":
            raise ConfigError(f"layers[{k}].type: a {layers[k].type} layer needs a spatial input (the input or a "
                              f"conv/pool layer), but layer {layers[k - 1].name!r} before it is dense")
    if layers[-1].type != "dense":
        raise ConfigError(f"layers[{len(layers) - 1}].type: the output layer must be dense")
    loss_d = _check_keys(d.get("loss", {}), ("desired", "undesired", "margin"), "loss")
    base_loss = LossSpec()
    loss = LossSpec(
        desired=_num(loss_d, "desired", "loss", base_loss.desired, lo=1),
        undesired=_num(loss_d, "undesired", "loss", base_loss.undesired, lo=0),
        margin=_num(loss_d, "margin", "loss", base_loss.margin, lo=0),
    )
    if int(loss.desired) > steps - 1:
        raise ConfigError(f"loss.desired: {loss.desired:g} spikes cannot fit in {steps} steps")
    reg_d = _check_keys(d.get("regularizer", {}), ("lambda", "beta", "weight_limit"), "regularizer")
    base_reg = RegularizerSpec()
    reg = RegularizerSpec(
        lam=_num(reg_d, "lambda", "regularizer", base_reg.lam, lo=0),
        beta=_num(reg_d, "beta", "regularizer", base_reg.beta, lo=0),
        weight_limit=_num(reg_d, "weight_limit", "regularizer", base_reg.weight_limit, lo=0, lo_strict=True),
    )
    return NetworkConfig(steps=steps, neuron=neuron, layers=layers, loss=loss,
                         train=_parse_train(d.get("train", {}), "train"), regularizer=reg,
                         augment=parse_augment(d.get("augment", {}), "augment"))


def read_toml(path: str | Path) -> dict[str, Any]:
    """Parse a TOML file (a config or a preset): the one TOML reader of hm2bp. A missing file, a directory, text that
    is not UTF-8 or a syntax error is a ConfigError naming the file."""
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"{path}: is a directory; pass the path of a config .toml file")
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte offset {exc.start}); a config is a TOML file") from None


def load_config(source: dict | str | Path | NetworkConfig) -> NetworkConfig:
    """Parse and validate a network configuration from a dict, a TOML file path, or a `NetworkConfig`."""
    if isinstance(source, NetworkConfig):
        return source
    if isinstance(source, str | Path):
        source = read_toml(source)
    if not isinstance(source, dict):
        raise ConfigError(f"config: expected a dict, a TOML path or a NetworkConfig, got {type(source).__name__}")
    return _parse(source)
