"""Resuming a run from its directory alone (`hm2bp fit --resume --out DIR`).

`run.json` records everything that shaped the run: the store (absolute path or URL) and its fingerprint, the config
as trained (preset or file, with every override applied: epochs, batch, lr, seed, augmentation) and the options
(`options`: splits, validation, subsets, shuffle buffer, device and kernel set as asked). `resume_options` turns
that record, and the options a user gave with `--resume`, into the arguments of `hm2bp.train.run.start_fit`:

* the run continues exactly as it was started: a shaping option given again must have its recorded value (else a
  SetupError naming the option and both values), and so must the config (compared key by key);
* `epochs` may change the run's length (a later `--resume` alone uses the new total), and `batch_size` the
  per-rank batch when the number of ranks changes (the global batch must stay; `prepare_run` checks it);
* how it executes may change: `device`, `backend`, `resident_fraction`, `report_every` (the same weights either
  way, to float rounding across kernel sets);
* the store may be given at another path (a moved copy): its fingerprint must be the recorded one.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hm2bp.config import ConfigError, load_config
from hm2bp.errors import SetupError
from hm2bp.train.run import config_differences, fit_config
from hm2bp.train.rundir import RUN_INFO

#: Options that shape what a run computes: restored from run.json, never changed by `resume`.
SHAPING = ("max_train", "max_test", "shuffle_buffer", "train_split", "test_split", "valid_split", "val_fraction")
#: Options that say only how a run executes: restored from run.json unless given again.
EXECUTION = ("device", "backend", "resident_fraction", "report_every")


def read_run_info(run_dir: Path) -> dict[str, Any]:
    """The run.json of `run_dir` (SetupError when there is none, it is unreadable, or it predates `options`)."""
    path = Path(run_dir) / RUN_INFO
    if not path.is_file():
        raise SetupError(f"`resume`: {run_dir} holds no run to resume (no {RUN_INFO}); start one with `hm2bp fit "
                         f"STORE --preset NAME --out {run_dir}`")
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise SetupError(f"{path}: unreadable ({exc}); resume by giving the store, the config and the options again"
                         ) from None
    if not isinstance(info, dict) or not isinstance(info.get("options"), dict) or not isinstance(
            info.get("config"), dict) or not isinstance(info.get("store"), dict):
        raise SetupError(f"{path} does not record the run's options (written by an older hm2bp): resume by giving "
                         "the store, --preset or --config and the options the run was started with")
    return info


def _checked_config(info: dict[str, Any], given: dict[str, Any], path: Path) -> dict[str, Any]:
    """The recorded config with the given `epochs` and `batch_size`; SetupError when the config the given preset,
    config file or overrides make differs from the recorded one elsewhere."""
    try:
        saved = load_config(info["config"])
    except ConfigError as exc:
        raise SetupError(f"{path}: the recorded config is invalid ({exc})") from None
    overrides = dict(given.get("overrides") or {})
    length = {k: overrides.pop(k) for k in ("epochs", "batch_size") if k in overrides}
    if any(given.get(k) is not None for k in ("preset", "config_file", "augment")) or overrides:
        wanted, _, _ = fit_config(given.get("preset"), given.get("config_file"), overrides, given.get("augment"),
                                  base=saved)
        diff = config_differences(saved, wanted, "epochs", "batch_size")
        if diff:
            raise SetupError(f"`resume`: the config differs from the run's at {', '.join(diff[:5])} (a resumed run "
                             "keeps the config it was started with; only `epochs` may change)")
    return saved.replace_train(**length).to_dict() if length else saved.to_dict()


def resume_options(run_dir: Path, given: dict[str, Any]) -> dict[str, Any]:
    """Keyword arguments of `start_fit` that resume the run recorded in `run_dir` (see the module docstring).

    `given`: the options the user gave (only those): `store`, `preset`, `config_file`, `overrides` ({epochs,
    batch_size, lr, seed}), `augment`, and any of `SHAPING` and `EXECUTION`."""
    run_dir = Path(run_dir)
    info = read_run_info(run_dir)
    recorded = info["options"]
    for name in SHAPING:
        if name in given and name in recorded and given[name] != recorded[name]:
            raise SetupError(f"`resume`: the run in {run_dir} was started with `{name}` {recorded[name]!r}, not "
                             f"{given[name]!r} (a resumed run continues as it was started; start a new run with "
                             "another `run_dir` to change it)")
    missing = [n for n in (*SHAPING, *EXECUTION, "store", "source") if n not in recorded]
    if missing:
        raise SetupError(f"{run_dir / RUN_INFO}: the recorded options lack {', '.join(missing)}")
    config = _checked_config(info, given, run_dir / RUN_INFO)
    out = {name: recorded[name] for name in SHAPING}
    out.update({name: given.get(name, recorded[name]) for name in EXECUTION})
    out.update(store=given.get("store") or recorded["store"], preset=None, config_file=None,
               overrides={k: config["train"][k] for k in ("epochs", "batch_size")}, augment=None, out=run_dir,
               resume=True,
               recorded={"config": config, "source": recorded["source"], "options": recorded,
                         "fingerprint": info["store"].get("fingerprint")})
    return out
