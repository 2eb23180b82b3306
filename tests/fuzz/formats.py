"""The one table of fuzzed formats: `FORMATS`. Each entry says where its seeds come from, how to mutate them, and
how to read a mutant and check the result (that check runs in the child process, `tests.fuzz.child`).

Adding a reader (SPHERE / WAV, Prophesee EVT 2 / EVT 3 / DAT, SHD HDF5, ...) is one entry::

    Format("evt3", seeds=real_files(("dvs/prophesee_evt3_sample.raw", {})) + written(write_evt3_sample),
           check=check_event_file),

* `seeds(folder) -> [Seed]`: pristine inputs, copied or written into `folder` (real sample files from
  `SPIKEDATA_SAMPLE_DATA` when present, plus files written here with a spec-following writer, so that a format is
  fuzzed even without the sample data);
* `check(path, seed_path, context, op) -> summary`: read the mutant as the project does; raise AssertionError
  when the result is not plausible (project errors are classified by the harness);
* `mutants` (default `byte_mutants`: truncations, bit flips in header and body, zero / random / moved spans,
  foreign files, random bytes, zeros, a directory) and `names_input(message, path)` (default: the message
  contains the path).

An event reader needs nothing else: `check_event_file` re-runs `spikedata.io.validate.check_events` on what the
reader returned (no event outside the sensor, polarity 0/1, time sorted, no zero-filled run).
"""

from __future__ import annotations

import functools
import gzip
import json
import os
import re
import shutil
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tests.fuzz.harness import Mutant, Seed, byte_mutants, mutate_bytes

REPO = Path(__file__).resolve().parents[2]
SAMPLE_DATA = Path(os.environ.get("SPIKEDATA_SAMPLE_DATA", REPO.parent / "shared" / "data"))


def _real(*files: tuple[str, dict]) -> Callable[[Path], list[Seed]]:
    """Seeds copied from the sample data (none when it is absent)."""

    def make(folder: Path) -> list[Seed]:
        out = []
        for rel, context in files:
            src = SAMPLE_DATA / rel
            if src.is_file():
                dst = folder / Path(rel).name
                dst.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(src, dst)
                out.append(Seed(dst, context))
        return out

    return make


def _written(*writers: Callable[[Path], Seed]) -> Callable[[Path], list[Seed]]:
    def make(folder: Path) -> list[Seed]:
        folder.mkdir(parents=True, exist_ok=True)
        return [w(folder) for w in writers]

    return make


def _both(*parts: Callable[[Path], list[Seed]]) -> Callable[[Path], list[Seed]]:
    return lambda folder: [s for part in parts for s in part(folder)]


def names_path(message: str, path: Path) -> bool:
    return str(path) in message


@dataclass(frozen=True)
class Format:
    """One fuzzed format (see the module docstring)."""

    name: str
    seeds: Callable[[Path], list[Seed]]
    check: Callable[[Path, Path, dict, str], str]
    mutants: Callable = byte_mutants
    names_input: Callable[[str, Path], bool] = names_path
    index: int = 0
    needs_sample_data: bool = False
    notes: str = ""


# ------------------------------------------------------------------------------------------ event files


def check_event_file(path: Path, seed: Path, context: dict, op: str) -> str:
    """Read an event file as `spikedata encode` does and re-check every event of the result."""
    from spikedata.io.event_types import EVENT_DTYPE, EventFileError
    from spikedata.io.events import read_events_with_info
    from spikedata.io.validate import check_events

    sensor = tuple(context["sensor_size"]) if context.get("sensor_size") else None
    events, info = read_events_with_info(path, sensor_size=sensor)
    assert events.dtype == EVENT_DTYPE and info.n_events == len(events), "inconsistent event count"
    try:
        _, repairs = check_events(events, path, info.format, info.sensor_size or sensor)
    except EventFileError as exc:
        raise AssertionError(f"garbage events accepted: {exc}") from None
    assert not repairs, f"returned events still need repairs {repairs}"
    return f"{len(events)} events, sensor {info.sensor_size or sensor}, repairs {info.repairs}"


def _atis_record(x: int, y: int, p: int, t: int) -> bytes:
    return bytes([x, y, (p << 7) | (t >> 16), (t >> 8) & 0xFF, t & 0xFF])


def write_atis(folder: Path) -> Seed:
    """N-MNIST-like ATIS 40-bit file: 3000 events on 34 x 34 with two timestamp-overflow markers."""
    rng = np.random.default_rng(11)
    t = np.sort(rng.integers(0, 300_000, 3000))
    out = bytearray()
    for k, tk in enumerate(t):
        if k in (1000, 2000):
            out += _atis_record(0, 240, 0, 0)
        out += _atis_record(int(rng.integers(34)), int(rng.integers(34)), int(rng.integers(2)),
                            int(tk) - 8192 * (k >= 1000) - 8192 * (k >= 2000))
    path = folder / "written.bin"
    path.write_bytes(bytes(out))
    return Seed(path, {"sensor_size": [34, 34]})


def write_aedat2(folder: Path) -> Seed:
    from tests.writers import aedat2_bytes

    rng = np.random.default_rng(12)
    recs = [((int(rng.integers(128)) << 8) | (int(rng.integers(128)) << 1) | int(rng.integers(2)), 1000 + 7 * i)
            for i in range(2000)]
    path = folder / "written_dvs128.aedat"
    path.write_bytes(aedat2_bytes(recs, "DVS128"))
    return Seed(path, {})


def write_aedat2_davis(folder: Path) -> Seed:
    from tests.writers import aedat2_bytes

    rng = np.random.default_rng(13)
    recs = []
    for i in range(2000):
        if i % 50 == 7:
            recs.append((0x80000C00 | (1 << 12), 500 + 5 * i))  # IMU sample
        else:
            x, y, p = int(rng.integers(346)), int(rng.integers(260)), int(rng.integers(2))
            recs.append(((y << 22) | (x << 12) | (p << 11), 500 + 5 * i))
    path = folder / "written_davis.aedat"
    path.write_bytes(aedat2_bytes(recs, "Davis346red"))
    return Seed(path, {})


def write_aedat31(folder: Path) -> Seed:
    from tests.writers import aedat31_sample

    path = folder / "written.aedat"
    path.write_bytes(aedat31_sample()[0])
    return Seed(path, {})


def write_aedat31_large(folder: Path) -> Seed:
    from tests.writers import aedat31_bytes, imu6_packet, polarity_packet

    rng = np.random.default_rng(14)
    packets = []
    for k in range(8):
        ev = [(int(rng.integers(128)), int(rng.integers(128)), int(rng.integers(2)), 10_000 * k + 3 * i, 1)
              for i in range(250)]
        packets += [polarity_packet(ev), imu6_packet(3)]
    path = folder / "written_large.aedat"
    path.write_bytes(aedat31_bytes(packets))
    return Seed(path, {})


def _sample_events(n: int, size: tuple[int, int], seed: int) -> np.ndarray:
    """Time-ordered random events [n] on a sensor of `size` (width, height)."""
    from spikedata.io.event_types import EVENT_DTYPE

    rng = np.random.default_rng(seed)
    ev = np.zeros(n, EVENT_DTYPE)
    ev["t"] = 5000 + np.sort(rng.integers(0, 200_000, n))
    ev["x"], ev["y"], ev["p"] = rng.integers(0, size[0], n), rng.integers(0, size[1], n), rng.integers(0, 2, n)
    return ev[np.lexsort((ev["x"], ev["p"], ev["y"], ev["t"]))]


def write_evt21(folder: Path) -> Seed:
    from tests.spikedata.test_evt21 import evt21_file, evt21_words

    path = folder / "written_evt21.raw"
    path.write_bytes(evt21_file(evt21_words(_sample_events(3000, (1280, 720), 21))))
    return Seed(path, {})


def write_dat_cd(folder: Path) -> Seed:
    from tests.spikedata.test_dat_cd import dat_cd_file

    path = folder / "written_cd.dat"
    path.write_bytes(dat_cd_file(_sample_events(3000, (120, 100), 22)))
    return Seed(path, {})


def write_prophesee_hdf5(folder: Path) -> Seed:
    from tests.spikedata.test_hdf5_events import write_prophesee_hdf5 as write

    path = folder / "written_ecf.hdf5"
    write(path, _sample_events(40_000, (1280, 720), 23))
    return Seed(path, {})


def write_dsec(folder: Path) -> Seed:
    from tests.spikedata.test_hdf5_events import write_dsec as write

    path = folder / "written_dsec.h5"
    write(path, _sample_events(5000, (640, 480), 24))
    return Seed(path, {"sensor_size": [640, 480]})


def write_csv(folder: Path) -> Seed:
    ev = _sample_events(2000, (304, 240), 25)
    path = folder / "written.csv"
    rows = "".join(f"{t},{x},{y},{p}\n" for t, x, y, p in zip(*(ev[k].tolist() for k in "txyp"), strict=True))
    path.write_text("t,x@304,y@240,on\n" + rows)
    return Seed(path, {})


def write_txt_seconds(folder: Path) -> Seed:
    ev = _sample_events(2000, (240, 180), 26)
    path = folder / "written.txt"
    rows = "".join(f"{t / 1e6:.6f} {x} {y} {2 * p - 1}\n" for t, x, y, p in zip(*(ev[k].tolist() for k in "txyp"),
                                                                              strict=True))
    path.write_text("# timestamp x y polarity\n" + rows)
    return Seed(path, {"sensor_size": [240, 180]})


# ------------------------------------------------------------------------------------------ IDX


def check_idx(path: Path, seed: Path, context: dict, op: str) -> str:
    from spikedata.io.idx import parse_idx_header, read_idx, read_idx_bytes

    arr = read_idx(path)
    header = parse_idx_header(read_idx_bytes(path)[:1024], str(path))
    assert arr.shape == header.shape and arr.dtype == header.dtype.newbyteorder("="), "shape/dtype not as declared"
    return f"{arr.dtype} {list(arr.shape)}"


def _idx_bytes(images: np.ndarray) -> bytes:
    return struct.pack(">HBB", 0, 8, images.ndim) + struct.pack(f">{images.ndim}I", *images.shape) + images.tobytes()


def write_idx_gz(folder: Path) -> Seed:
    images = (np.random.default_rng(15).random((200, 28, 28)) * 255).astype(np.uint8)
    path = folder / "written-images-idx3-ubyte.gz"
    path.write_bytes(gzip.compress(_idx_bytes(images)))
    return Seed(path, {})


def write_idx_raw(folder: Path) -> Seed:
    labels = np.random.default_rng(16).integers(0, 10, 3000).astype(np.uint8)
    path = folder / "written-labels-idx1-ubyte"
    path.write_bytes(_idx_bytes(labels))
    return Seed(path, {})


def idx_gz_mutants(seeds: list[Seed], rng, case_dir: Path, foreign: list[bytes]) -> Mutant:
    """Byte mutations of the gzip files and of their decompressed content (re-compressed: a valid gzip around a
    damaged IDX), and decompression bombs (a small gzip whose header claims far more than it holds)."""
    seed = seeds[int(rng.integers(len(seeds)))]
    kind = rng.random()
    path = case_dir / seed.path.name
    if kind < 0.1:
        n = int(rng.choice([2**31, 2**24, 10**6]))
        path.write_bytes(gzip.compress(struct.pack(">HBBIII", 0, 8, 3, n, 28, 28) + bytes(int(rng.integers(1, 3))
                                       * 1_000_000), compresslevel=1))
        return Mutant(path, seed, "bomb")
    if kind < 0.4:
        op, data = mutate_bytes(gzip.decompress(seed.path.read_bytes()), rng, foreign)
        if data is not None:
            path.write_bytes(gzip.compress(data, compresslevel=1))
            return Mutant(path, seed, f"content:{op}")
    return byte_mutants([seed], rng, case_dir, foreign)


# ------------------------------------------------------------------------------------------ stores


N_UNITS, N_STEPS = 12, 30


def write_store(folder: Path) -> Seed:
    from spikedata.store import StoreWriter

    attrs = dict(dataset="fuzz", encoder={"name": "bernoulli", "params": {}}, n_units=N_UNITS, unit_shape=[3, 4],
                 n_steps=N_STEPS, dt_us=1000, classes=["a", "b", "c"], seed=1, source={"files": {}})
    path = folder / "s.zarr"
    with StoreWriter(path, attrs, event_chunk=128) as w:
        for name, n, seed in (("train", 60, 0), ("test", 30, 1)):
            rng = np.random.default_rng(seed)
            r = rng.random((n, N_STEPS, N_UNITS)) < 0.08
            s, t, u = np.nonzero(r)
            indptr = np.concatenate([[0], np.cumsum(np.bincount(s, minlength=n))])
            w.split(name).append(indptr, t, u, rng.integers(0, 3, n),
                                 extras={"images": (r.sum(1) * 20).astype(np.uint8), "speaker":
                                         np.array(["x", "y", "z"])[np.arange(n) % 3]})
    return Seed(path, {})


def store_content(path: Path) -> dict:
    """Everything training could read from a store: root attributes that define it and every split's arrays."""
    from spikedata.store import open_store

    st = open_store(path)
    out = {k: json.dumps(st.attrs[k], sort_keys=True) for k in ("n_units", "n_steps", "dt_us", "unit_shape",
                                                                  "classes", "splits")}
    for name in st.splits:
        split = st[name]
        block = split.read_range(0, len(split))
        out[name] = [split.indptr, split.labels, block.times, block.units,
                     *[split.extra(e) for e in split.extra_names]]
        out[f"{name}.extras"] = list(split.extra_names)
    return out


@functools.lru_cache(maxsize=4)
def _pristine_store(seed: str) -> dict:
    return store_content(Path(seed))


def check_store(path: Path, seed: Path, context: dict, op: str) -> str:
    """Open and read every split as the loader does; intact only if identical to the pristine store."""
    got, want = store_content(path), _pristine_store(str(seed))
    assert got.keys() == want.keys(), f"damaged store read as intact: keys {sorted(got)}"
    for key in want:
        a, b = got[key], want[key]
        if isinstance(b, list) and b and isinstance(b[0], np.ndarray):
            same = len(a) == len(b) and all(x.dtype == y.dtype and np.array_equal(x, y) for x, y in zip(a, b,
                                                                                                    strict=True))
        else:
            same = a == b
        assert same, f"damaged store read as intact: {key} differs from the original"
    return "identical to the original"


STORE_OPS = ("delete-chunk", "truncate-chunk", "flip-chunk", "zero-chunk", "swap-chunks", "chunk-from-other-split",
             "flip-json", "edit-attribute", "delete-array", "delete-split", "json-from-other-array", "stray-file",
             "bytes-of-a-file")


def store_mutants(seeds: list[Seed], rng, case_dir: Path, foreign: list[bytes]) -> Mutant:
    """Copy the seed store and damage it: chunks deleted, cut, flipped, zeroed, swapped, copied from the other
    split; metadata flipped or edited; arrays or splits deleted; stray files (harmless)."""
    seed = seeds[0]
    path = case_dir / "s.zarr"
    shutil.copytree(seed.path, path)
    chunks = sorted(p for p in path.rglob("*") if p.is_file() and "/c/" in p.as_posix())
    metas = sorted(path.rglob("zarr.json"))
    op = str(rng.choice(STORE_OPS))
    pick = lambda items: items[int(rng.integers(len(items)))]  # noqa: E731
    if op == "delete-chunk":
        pick(chunks).unlink()
    elif op == "truncate-chunk":
        c = pick(chunks)
        c.write_bytes(c.read_bytes()[: int(rng.integers(0, max(1, c.stat().st_size)))])
    elif op in ("flip-chunk", "zero-chunk"):
        c = pick(chunks)
        data = bytearray(c.read_bytes())
        if op == "flip-chunk":
            for _ in range(int(rng.integers(1, 4))):
                data[int(rng.integers(len(data)))] ^= 1 << int(rng.integers(8))
        else:
            data = bytearray(len(data))
        c.write_bytes(bytes(data))
    elif op == "swap-chunks":
        groups: dict[Path, list[Path]] = {}
        for c in chunks:
            groups.setdefault(c.parent, []).append(c)
        group = pick([g for g in groups.values() if len(g) > 1])
        a, b = (group[int(i)] for i in rng.choice(len(group), 2, replace=False))
        da, db = a.read_bytes(), b.read_bytes()
        a.write_bytes(db)
        b.write_bytes(da)
    elif op == "chunk-from-other-split":
        c = pick([c for c in chunks if "/train/" in c.as_posix()])
        other = Path(str(c).replace("/train/", "/test/"))
        if other.exists():
            shutil.copyfile(other, c)
        else:
            c.unlink()
    elif op == "flip-json":
        m = pick(metas)
        data = bytearray(m.read_bytes())
        data[int(rng.integers(len(data)))] ^= 1 << int(rng.integers(8))
        m.write_bytes(bytes(data))
    elif op == "edit-attribute":
        m = pick(metas)
        meta = json.loads(m.read_text())
        leaves = _leaves(meta)
        keys, _ = leaves[int(rng.integers(len(leaves)))]
        _set(meta, keys, [None, "abc", -1, 0, 1.5, 10**12, [], {}, True][int(rng.integers(9))])
        m.write_text(json.dumps(meta))
    elif op == "delete-array":
        shutil.rmtree(pick([m.parent for m in metas if m.parent.parent != path and m.parent != path]))
    elif op == "delete-split":
        shutil.rmtree(path / str(rng.choice(["train", "test"])))
    elif op == "json-from-other-array":
        a, b = (metas[i] for i in rng.choice(len(metas), 2, replace=False))
        shutil.copyfile(a, b)
    elif op == "stray-file":
        (path / "train" / "notes.txt").write_text("harmless")
    else:
        f = pick([p for p in path.rglob("*") if p.is_file()])
        op_b, data = mutate_bytes(f.read_bytes(), rng, foreign)
        if data is None:
            f.unlink()
            f.mkdir()
        else:
            f.write_bytes(data)
        op = f"bytes:{op_b}"
    return Mutant(path, seed, op)


def _leaves(obj, prefix=()):
    if isinstance(obj, dict):
        return [leaf for k, v in obj.items() for leaf in _leaves(v, (*prefix, k))] or [(prefix, obj)]
    if isinstance(obj, list) and obj:
        return [leaf for i, v in enumerate(obj) for leaf in _leaves(v, (*prefix, i))]
    return [(prefix, obj)]


def _set(obj, keys, value) -> None:
    for k in keys[:-1]:
        obj = obj[k]
    if keys:
        obj[keys[-1]] = value


# ------------------------------------------------------------------------------------------ checkpoints


def write_checkpoint(folder: Path) -> Seed:
    """A real checkpoint of the trainer (tiny network on a synthetic store, one epoch trained)."""
    from hm2bp import Network, Trainer, load_config
    from hm2bp.train.checkpoint import save_checkpoint
    from spikedata.store import open_store
    from tests.hm2bp.synthetic import make_store

    store = open_store(make_store(folder / "train.zarr", n_train=24, n_test=8, n_units=20, n_steps=20))
    cfg = load_config({"steps": 20, "layers": [{"name": "hidden", "size": 12, "threshold": 3.0},
                                                {"name": "output", "size": 4, "threshold": 2.0}],
                       "loss": {"desired": 6, "undesired": 1, "margin": 1},
                       "train": {"batch_size": 8, "epochs": 1, "lr": 0.01}})
    trainer = Trainer(Network.from_config(cfg, 20), store["train"], store["test"], device="cpu")
    trainer.fit()
    path = folder / "last.pt"
    save_checkpoint(path, trainer.checkpoint_payload())
    return Seed(path, {"n_train": 24})


SEMANTIC_OPS = ("nan-weight", "inf-optimizer", "weight-shape", "drop-key", "boost-length", "epoch-type",
                "negative-boost", "extra-layer", "config-steps", "valid-edit")


def checkpoint_mutants(seeds: list[Seed], rng, case_dir: Path, foreign: list[bytes]) -> Mutant:
    """Byte mutations of the file (checksum must catch them), and semantic edits saved with a valid checksum
    (the payload checks must catch them, or the result must still be a consistent checkpoint)."""
    import torch

    from hm2bp.train.checkpoint import REQUIRED, load_checkpoint, save_checkpoint

    seed = seeds[0]
    if rng.random() < 0.6:
        m = byte_mutants([seed], rng, case_dir, foreign)
        m.op = f"bytes:{m.op}"
        return m
    data = {k: v for k, v in load_checkpoint(seed.path).items() if k not in ("format", "format_version")}
    op = str(rng.choice(SEMANTIC_OPS))
    w = data["weights"]["hidden"]
    if op == "nan-weight":
        w[int(rng.integers(w.shape[0])), int(rng.integers(w.shape[1]))] = float("nan")
    elif op == "inf-optimizer":
        data["optimizer"]["m"]["output"][0, 0] = float("inf")
    elif op == "weight-shape":
        data["weights"]["hidden"] = torch.zeros(w.shape[0], w.shape[1] + 1)
    elif op == "drop-key":
        data.pop(str(rng.choice(list(REQUIRED))))
    elif op == "boost-length":
        data["boost"] = torch.ones(len(data["boost"]) + int(rng.integers(1, 5)), dtype=torch.float64)
    elif op == "epoch-type":
        data["epoch"] = "0"
    elif op == "negative-boost":
        data["boost"][0] = -1.0
    elif op == "extra-layer":
        data["weights"]["ghost"] = torch.zeros(2, 2)
    elif op == "config-steps":
        data["config"]["steps"] = -5
    else:  # a consistent checkpoint with other values (must load)
        data["weights"]["hidden"] = w * 0.5
    path = case_dir / "last.pt"
    save_checkpoint(path, data)
    return Mutant(path, seed, f"semantic:{op}")


@functools.lru_cache(maxsize=2)
def _pristine_checkpoint(seed: str) -> dict:
    from hm2bp.train.checkpoint import load_checkpoint

    return load_checkpoint(seed)


def _same(a, b) -> bool:
    import torch

    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and a.dtype == b.dtype and \
            a.shape == b.shape and bool(torch.equal(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return a == b


def check_checkpoint(path: Path, seed: Path, context: dict, op: str) -> str:
    """Load as `hm2bp eval` / `--resume` do: checksum, payload, network rebuilt, shapes and boost length."""
    from hm2bp.train.checkpoint import check_against_network, load_checkpoint
    from hm2bp.train.evaluate import load_network_from_checkpoint

    data = load_checkpoint(path)
    net = load_network_from_checkpoint(data, "cpu", path)
    check_against_network(data, path, net.weights(), n_train=context["n_train"])
    if op.startswith("bytes:") and op != "bytes:foreign":  # a foreign file may be another valid checkpoint
        assert _same(data, _pristine_checkpoint(str(seed))), "a damaged checkpoint loaded with other content"
    return f"epoch {data['epoch']}, layers {list(data['weights'])}"


# ------------------------------------------------------------------------------------------ network configs


def preset_seeds(folder: Path) -> list[Seed]:
    from hm2bp.presets import PRESET_DIR

    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for src in sorted(PRESET_DIR.glob("*.toml")):
        dst = folder / src.name
        shutil.copyfile(src, dst)
        text = src.read_text()
        conv = 'type = "conv"' in text or 'type = "pool"' in text
        out.append(Seed(dst, {"inputs": 784, "input_shape": [1, 28, 28] if conv else None}))
    return out


_NUMBER = re.compile(rb"(?<![\w.])-?\d+(\.\d+)?(e-?\d+)?(?![\w.])")


def config_mutants(seeds: list[Seed], rng, case_dir: Path, foreign: list[bytes]) -> Mutant:
    """Byte mutations, and token edits: a number replaced by an extreme or wrong-typed value, a line deleted or
    duplicated."""
    seed = seeds[int(rng.integers(len(seeds)))]
    text = seed.path.read_bytes()
    kind = rng.random()
    path = case_dir / seed.path.name
    if kind < 0.5:
        numbers = list(_NUMBER.finditer(text))
        m = numbers[int(rng.integers(len(numbers)))]
        value = [b"0", b"-1", b"1e9", b"100000000", b"1e300", b"nan", b"inf", b"\"x\"", b"3.5", b"1099511627776",
                 b"true", b"[]"][int(rng.integers(12))]
        path.write_bytes(text[: m.start()] + value + text[m.end():])
        return Mutant(path, seed, f"number:{value.decode()}")
    if kind < 0.65:
        lines = text.splitlines(keepends=True)
        i = int(rng.integers(len(lines)))
        lines = lines[:i] + lines[i + 1:] if rng.random() < 0.5 else lines[: i + 1] + lines[i:]
        path.write_bytes(b"".join(lines))
        return Mutant(path, seed, "line")
    m = byte_mutants([seed], rng, case_dir, foreign)
    return m


def check_config(path: Path, seed: Path, context: dict, op: str) -> str:
    """Load the config as `hm2bp fit --config` does and build its network (memory estimated first)."""
    from hm2bp import Network
    from hm2bp.presets import load_config_file

    cfg, meta = load_config_file(path)
    inputs = int(meta.get("inputs", context["inputs"]))
    shape = context.get("input_shape")
    if shape is not None and int(np.prod(shape)) != inputs:
        shape = None
    net = Network.from_config(cfg, inputs, tuple(shape) if shape else None)
    return f"{len(net.layer_names)} layers"


def names_config(message: str, path: Path) -> bool:
    """A config error names the file, or (network construction) the key path `layers...` it is about."""
    return str(path) in message or message.startswith(("layers", "layer "))


# ------------------------------------------------------------------------------------------ audio


def check_audio(path: Path, seed: Path, context: dict, op: str) -> str:
    """Read an audio file as the speech encoders do; the header must agree with the samples returned."""
    import numpy as np

    from spikedata.io.audio import probe_audio, read_audio_with_info

    header = probe_audio(path)
    samples, info = read_audio_with_info(path, mono=False)
    frames = samples.shape[0]
    channels = samples.shape[1] if samples.ndim == 2 else 1
    assert (info.sample_rate, info.channels, info.frames) == (header.sample_rate, header.channels, header.frames)
    assert frames == info.frames >= 1 and channels == info.channels >= 1, "samples disagree with the header"
    assert 1000 <= info.sample_rate <= 768_000, f"implausible sample rate {info.sample_rate}"
    assert np.isfinite(samples).all(), "non-finite samples"
    return f"{info.format} {info.sample_rate} Hz x {info.channels}, {info.frames} frames"


def write_sphere(folder: Path) -> Seed:
    from tests.writers import sphere_bytes

    rng = np.random.default_rng(13)
    path = folder / "written.sph"
    path.write_bytes(sphere_bytes(rng.integers(-3000, 3000, 4000)))
    return Seed(path, {})


def write_sphere_big_endian(folder: Path) -> Seed:
    from tests.writers import sphere_bytes

    rng = np.random.default_rng(14)
    path = folder / "written_be.wav"  # TI46's CD copies: SPHERE behind a .wav suffix
    path.write_bytes(sphere_bytes(rng.integers(-3000, 3000, 3000), byte_format="10"))
    return Seed(path, {})


def write_wav(folder: Path) -> Seed:
    import soundfile

    rng = np.random.default_rng(15)
    path = folder / "written_pcm16.wav"
    soundfile.write(path, (rng.standard_normal(4000) * 0.1).astype(np.float32), 8000, subtype="PCM_16")
    return Seed(path, {})


# ------------------------------------------------------------------------------------------ Heidelberg HDF5


def check_heidelberg(path: Path, seed: Path, context: dict, op: str) -> str:
    """Vet the file in a child process (libhdf5 may crash on damaged files), then bin every sample as
    `spikedata encode shd` does; every spike lands inside the raster."""
    from spikedata.datasets.shared.heidelberg import probe_heidelberg, unpacked, vet_file
    from spikedata.datasets.shared.heidelberg_encoding import HeidelbergRange

    info = probe_heidelberg(path)
    with unpacked(path) as plain:
        vet_file(plain, str(path), timeout_s=10)  # the harness gives a case 30 s
        block = HeidelbergRange(str(plain), str(path), 1000, 1400, 20, info.has_speaker)(0, info.n_samples)
    assert len(block.labels) == info.n_samples and block.indptr[-1] == len(block.times) == len(block.units)
    assert (np.asarray(block.times) < 1400).all() and (np.asarray(block.units) < 700).all(), "spike outside"
    return f"{info.n_samples} samples, {int(block.indptr[-1])} spikes"


def write_shd(folder: Path) -> Seed:
    from tests.writers import make_samples, write_heidelberg

    times, units, labels, speakers = make_samples(12, seed=3)
    return Seed(write_heidelberg(folder / "shd_train.h5", times, units, labels, speakers), {})


def write_shd_gz(folder: Path) -> Seed:
    from tests.writers import make_samples, write_heidelberg

    times, units, labels, speakers = make_samples(8, seed=4)
    return Seed(write_heidelberg(folder / "shd_test.h5.gz", times, units, labels, speakers, gz=True), {})


# ------------------------------------------------------------------------------------------ the table

_TABLE = [
    Format("atis40", _both(_written(write_atis), _real(("nmnist/tonic_sample_nmnist.bin", {"sensor_size": [34, 34]}),
                                                       ("nmnist/slayer_NMNIST_1.bs2", {"sensor_size": [34, 34]}),
                                                       ("dvs/gesture_1.bs2", {"sensor_size": [128, 128]}))),
           check_event_file, notes="N-MNIST / gesture .bin, .bs2; sensor from the encoder"),
    Format("aedat2", _both(_written(write_aedat2, write_aedat2_davis),
                           _real(("dvs/TranslatingBarY_synthesized.aedat", {}), ("dvs/sample_aedat_header.aedat", {}))),
           check_event_file),
    Format("aedat3", _written(write_aedat31, write_aedat31_large), check_event_file, notes="AEDAT 3.1"),
    Format("aedat4", _real(("dvs/sample.aedat4", {})), check_event_file, needs_sample_data=True,
           notes="the aedat decoder behind the structure check"),
    Format("evt2", _real(("dvs/prophesee_evt2_sample.raw", {})), check_event_file, needs_sample_data=True,
           notes="Prophesee EVT 2.0 .raw"),
    Format("evt3", _real(("dvs/prophesee_evt3_sample.raw", {})), check_event_file, needs_sample_data=True,
           notes="Prophesee EVT 3.0 .raw"),
    Format("dat", _real(("dvs/ncars_sample.dat", {"sensor_size": [120, 100]})), check_event_file,
           needs_sample_data=True, notes="Prophesee DAT (N-CARS); sensor from the encoder"),
    Format("evt21", _written(write_evt21), check_event_file, notes="Prophesee EVT 2.1 written"),
    Format("dat-cd", _written(write_dat_cd), check_event_file, notes="Prophesee DAT, CD events (type 12) written"),
    Format("hdf5-ecf", _written(write_prophesee_hdf5), check_event_file,
           notes="Prophesee HDF5, ECF chunks decoded by our codec"),
    Format("hdf5-dsec", _written(write_dsec), check_event_file, notes="DSEC events/{x,y,p,t} + ms_to_idx"),
    Format("text", _written(write_csv, write_txt_seconds), check_event_file, notes="CSV (µs) and text (s)"),
    Format("sphere", _written(write_sphere, write_sphere_big_endian), check_audio, notes="NIST SPHERE (TI46)"),
    Format("wav", _both(_written(write_wav), _real(("speech/fsdd/0_george_0.wav", {}))), check_audio,
           notes="soundfile behind the header checks"),
    Format("shd", _written(write_shd, write_shd_gz), check_heidelberg,
           notes="HDF5 (h5py), plain and gzipped; read vetted in a child process"),
    Format("idx-gz", _both(_written(write_idx_gz), _real(("mnist/t10k-labels-idx1-ubyte.gz", {}),
                                                         ("mnist/t10k-images-idx3-ubyte.gz", {}))),
           check_idx, mutants=idx_gz_mutants, notes="incl. decompression bombs"),
    Format("idx-raw", _both(_written(write_idx_raw), _real(
        ("emnist/derived_idx/emnist-balanced-test-18496to18799-images-idx3-ubyte", {}),
        ("emnist/derived_idx/emnist-balanced-test-18496to18799-labels-idx1-ubyte", {}))), check_idx),
    Format("store", _written(write_store), check_store, mutants=store_mutants,
           notes="must fail or read identical to the original"),
    Format("checkpoint", _written(write_checkpoint), check_checkpoint, mutants=checkpoint_mutants),
    Format("config", preset_seeds, check_config, mutants=config_mutants, names_input=names_config,
           notes="network TOML (presets) + network construction"),
]
FORMATS: list[Format] = [Format(**{**f.__dict__, "index": i}) for i, f in enumerate(_TABLE)]
BY_NAME = {f.name: f for f in FORMATS}


def foreign_samples(workdir: Path) -> list[bytes]:
    """One pristine seed of every format, as 'foreign file' mutants for the others (stores excluded)."""
    out = []
    for f in FORMATS:
        if f.name in ("store",):
            continue
        seeds = f.seeds(workdir / "foreign" / f.name)
        if seeds:
            out.append(seeds[0].path.read_bytes()[:200_000])
    return out


def warm_up() -> None:
    """Import every reader and compile its numba kernels (the child does this before its memory limit)."""
    import hm2bp.model.network  # noqa: F401
    import hm2bp.train.trainer  # noqa: F401
    import spikedata.io.aedat2  # noqa: F401
    import spikedata.io.aedat3  # noqa: F401
    import spikedata.io.aedat4  # noqa: F401
    import spikedata.io.atis  # noqa: F401
    import spikedata.io.evt21  # noqa: F401
    import spikedata.io.hdf5_events  # noqa: F401
    import spikedata.io.idx  # noqa: F401
    import spikedata.io.text_events  # noqa: F401
    import spikedata.store.reader  # noqa: F401
    import spikedata.store.writer  # noqa: F401


__all__ = ["FORMATS", "BY_NAME", "Format", "Seed", "field"]
