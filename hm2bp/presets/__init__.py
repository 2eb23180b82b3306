"""Network presets shipped with the package: the paper's networks (`docs/algorithm.md` §4.1) and a demo.

A preset is a network config TOML (schema in `docs/config.md`) plus an optional `[meta]` table that is not part of
the network config: `inputs` (the number of input units the first layer expects, checked against the store) and
`description`. `load_preset` returns the config without `[meta]`; `preset_meta` returns the table. Config files
given to `hm2bp fit` as a config file may carry the same `[meta]` table (see `split_meta`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hm2bp.config import ConfigError, read_toml

PRESET_DIR = Path(__file__).resolve().parent
META_KEYS = ("inputs", "description")


def preset_names() -> list[str]:
    """Names of the shipped presets (file stems), sorted."""
    return sorted(p.stem for p in PRESET_DIR.glob("*.toml"))


def preset_path(name: str) -> Path:
    """The TOML file of preset `name` (KeyError naming the known presets otherwise)."""
    path = PRESET_DIR / f"{name}.toml"
    if not path.is_file():
        raise KeyError(f"unknown preset {name!r}; known: {', '.join(preset_names())}")
    return path


def split_meta(raw: dict[str, Any], where: str = "config") -> tuple[dict[str, Any], dict[str, Any]]:
    """Separate the optional `[meta]` table from a raw config dict: (network config, meta). Files are read with
    `hm2bp.config.read_toml`, the one TOML reader of the package."""
    config = dict(raw)
    meta = config.pop("meta", {}) or {}
    if not isinstance(meta, dict):
        raise ConfigError(f"{where}: 'meta' must be a table")
    unknown = sorted(set(meta) - set(META_KEYS))
    if unknown:
        raise ConfigError(f"{where}: meta.{unknown[0]}: unknown key; known: {', '.join(META_KEYS)}")
    if "inputs" in meta and (not isinstance(meta["inputs"], int) or meta["inputs"] < 1):
        raise ConfigError(f"{where}: meta.inputs must be a positive integer; got {meta['inputs']!r}")
    return config, meta


def load_config_file(path: str | Path):
    """(NetworkConfig, meta) of a config TOML file (`hm2bp fit --config`); every ConfigError names the file."""
    from hm2bp.config import ConfigError, load_config

    try:
        raw, meta = split_meta(read_toml(path), str(path))
        return load_config(raw), meta
    except ConfigError as exc:
        text = str(exc)
        raise ConfigError(text if text.startswith(str(path)) else f"{path}: {text}") from None
    except ValueError as exc:  # split_meta's messages already start with the file
        raise ConfigError(str(exc)) from None


def load_preset(name: str) -> dict[str, Any]:
    """The network config dict of preset `name` (without its `[meta]` table)."""
    return split_meta(read_toml(preset_path(name)), f"preset {name!r}")[0]


def preset_meta(name: str) -> dict[str, Any]:
    """The `[meta]` table of preset `name` (`inputs`, `description`)."""
    return split_meta(read_toml(preset_path(name)), f"preset {name!r}")[1]
