"""Raw files -> `spikedata encode` -> store -> `hm2bp fit` / `hm2bp eval`, on the real sample files.

The networks are the shipped presets' shapes with the hidden layer shrunk, so that an epoch takes seconds.
"""

import json

import pytest
from typer.testing import CliRunner

from hm2bp.cli import app as hm2bp_app
from hm2bp.presets import load_preset
from spikedata.cli import app as spikedata_app
from spikedata.store import open_store

runner = CliRunner()


def _reduced_preset(name: str, tmp_path, hidden: int = 24, epochs: int = 1, batch: int = 2) -> str:
    """The preset as TOML with a smaller hidden layer (everything else, T and thresholds included, kept)."""
    config = load_preset(name)
    config["layers"][0]["size"] = hidden
    config["train"].update(epochs=epochs, batch_size=batch)
    path = tmp_path / f"{name}-small.toml"
    path.write_text(_to_toml(config))
    return str(path)


def _to_toml(config: dict) -> str:
    def value(v):
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, str):
            return json.dumps(v)
        if isinstance(v, dict):
            return "{ " + ", ".join(f"{k} = {value(x)}" for k, x in v.items()) + " }"
        return repr(v)

    lines = [f"{k} = {value(v)}" for k, v in config.items() if not isinstance(v, dict | list)]
    for table, body in config.items():
        if isinstance(body, dict):
            lines += [f"[{table}]", *(f"{k} = {value(v)}" for k, v in body.items())]
    for layer in config["layers"]:
        lines += ["[[layers]]", *(f"{k} = {value(v)}" for k, v in layer.items())]
    return "\n".join(lines) + "\n"


def _fit_and_eval(store, config, out):
    r = runner.invoke(hm2bp_app, ["fit", str(store), "--config", config, "--out", str(out), "--device", "cpu",
                                  "--quiet"])  # fmt: skip
    assert r.exit_code == 0, r.output
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert len(metrics) == 1 and 0.0 <= metrics[0]["test_accuracy"] <= 1.0
    r = runner.invoke(hm2bp_app, ["eval", str(store), "--checkpoint", str(out / "last.pt"), "--device", "cpu"])
    assert r.exit_code == 0, r.output
    assert "accuracy" in r.output.lower()
    return metrics[0]


def test_nmnist_files_to_trained_network(shared_data, tmp_path):
    src = tmp_path / "nmnist"
    files = {"0": "nmnist/tonic_sample_nmnist.bin", "5": "nmnist/slayer_NMNIST_1.bs2"}
    for split, n in (("Train", 3), ("Test", 1)):
        for digit, f in files.items():
            for k in range(n):
                (src / split / digit).mkdir(parents=True, exist_ok=True)
                (src / split / digit / f"{k:05d}.bin").symlink_to(shared_data / f)
    store = tmp_path / "nmnist.zarr"
    r = runner.invoke(spikedata_app, ["encode", "nmnist", "--source", str(src), "--out", str(store), "--quiet"])
    assert r.exit_code == 0, r.output
    assert open_store(store)["train"].n_units == 2312
    metrics = _fit_and_eval(store, _reduced_preset("nmnist-mlp", tmp_path), tmp_path / "run")
    assert metrics["epoch"] == 0


def test_fsdd_recordings_to_trained_network(shared_data, tmp_path):
    src = tmp_path / "fsdd"
    src.mkdir()
    for name in ["0_george_1", "0_theo_7", "1_george_9", "1_jackson_12", "0_nicolas_2", "1_theo_3"]:
        (src / f"{name}.wav").symlink_to(shared_data / "speech" / "fsdd" / f"{name}.wav")
    store = tmp_path / "fsdd.zarr"
    r = runner.invoke(spikedata_app, ["encode", "fsdd", "--source", str(src), "--out", str(store), "--quiet"])
    assert r.exit_code == 0, r.output
    split = open_store(store)["train"]
    assert split.n_units == 78 and split.n_steps == 1000 and len(split) == 3  # takes 0-4 are the test split
    _fit_and_eval(store, _reduced_preset("fsdd-mlp", tmp_path), tmp_path / "run")


@pytest.mark.parametrize("preset", ["ti46-mlp", "nmnist-mlp"])
def test_preset_refuses_a_store_of_another_size(shared_data, tmp_path, preset):
    src = tmp_path / "fsdd"
    src.mkdir()
    for name in ["0_george_5", "1_george_6", "1_george_0"]:
        (src / f"{name}.wav").symlink_to(shared_data / "speech" / "fsdd" / f"{name}.wav")
    store = tmp_path / "fsdd.zarr"
    assert runner.invoke(spikedata_app, ["encode", "fsdd", "--source", str(src), "--out", str(store),
                                         "--quiet"]).exit_code == 0  # fmt: skip
    r = runner.invoke(hm2bp_app, ["fit", str(store), "--preset", preset, "--out", str(tmp_path / "r"), "--quiet"])
    assert r.exit_code == 1
    assert "Traceback" not in r.output
    expected = "26 output" if preset == "ti46-mlp" else "expects 2312"
    assert expected in r.output, r.output


def test_shd_file_to_trained_network(tmp_path):
    """SHD-format HDF5 (written here, gzipped as published) -> `encode shd` -> `fit --preset shd-mlp` (one small
    epoch) -> `eval`. Needs no sample data."""
    from tests.writers import make_samples, write_heidelberg

    src = tmp_path / "shd"
    src.mkdir()
    for split, n, seed in (("train", 6, 1), ("test", 4, 2)):
        t, u, lab, spk = make_samples(n, seed=seed)
        write_heidelberg(src / f"shd_{split}.h5.gz", t, u, lab, spk, gz=True)
    store = tmp_path / "shd.zarr"
    r = runner.invoke(spikedata_app, ["encode", "shd", "--source", str(src), "--out", str(store), "--quiet"])
    assert r.exit_code == 0, r.output
    out = tmp_path / "run"
    r = runner.invoke(hm2bp_app, ["fit", str(store), "--preset", "shd-mlp", "--epochs", "1", "--batch-size", "2",
                                  "--out", str(out), "--device", "cpu", "--quiet"])
    assert r.exit_code == 0, r.output
    assert "700 -> " in r.output and "T 1400" in r.output
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert len(metrics) == 1 and 0.0 <= metrics[0]["test_accuracy"] <= 1.0
    r = runner.invoke(hm2bp_app, ["eval", str(store), "--checkpoint", str(out / "last.pt"), "--device", "cpu"])
    assert r.exit_code == 0, r.output
    assert "accuracy" in r.output.lower()


def test_heidelberg_presets_fit_the_default_encoding():
    """shd-mlp / ssc-mlp simulate exactly the steps `spikedata encode shd|ssc` writes by default, on 700 inputs."""
    from hm2bp.config import load_config
    from hm2bp.presets import preset_meta
    from spikedata.datasets.shared.heidelberg import default_steps
    from spikedata.manifest import load_manifest

    for dataset, n_classes in (("shd", 20), ("ssc", 35)):
        cfg = load_config(load_preset(f"{dataset}-mlp"))
        assert preset_meta(f"{dataset}-mlp")["inputs"] == 700
        assert cfg.steps == default_steps(dataset) and [s.size for s in cfg.layers] == [800, n_classes]
        assert load_manifest(dataset).n_classes == n_classes
