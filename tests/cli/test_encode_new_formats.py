"""`spikedata encode events` on a folder of the newly read formats (EVT 2.1, CD DAT, Prophesee HDF5 with ECF,
DSEC HDF5, CSV), written here from the real EVT 3.0 sample's events: one store whose samples bin exactly what
`read_events` returns; a damaged file is one error line naming it."""

from __future__ import annotations

import numpy as np
from typer.testing import CliRunner

from spikedata import open_store
from spikedata.cli import app as spikedata_app
from spikedata.encoders.event_binning import BinningOptions, bin_events
from spikedata.io.events import read_events
from tests.spikedata.test_dat_cd import dat_cd_file
from tests.spikedata.test_evt21 import evt21_file, evt21_words
from tests.spikedata.test_hdf5_events import write_dsec, write_prophesee_hdf5

runner = CliRunner()


def test_encode_events_of_new_formats(shared_data, tmp_path):
    ev = read_events(shared_data / "dvs/prophesee_evt3_sample.raw")
    ev = ev[np.lexsort((ev["x"], ev["p"], ev["y"], ev["t"]))][:30_000]
    src = tmp_path / "src"
    for d in ("a", "b"):
        (src / d).mkdir(parents=True)
    (src / "a" / "one.raw").write_bytes(evt21_file(evt21_words(ev)))
    write_prophesee_hdf5(src / "a" / "two.hdf5", ev)
    write_dsec(src / "b" / "three.h5", ev)
    small = ev.copy()
    small["x"] //= 4
    small["y"] //= 4  # within a 320 x 180 crop, to fit the DAT writer's 14-bit fields and a stated geometry
    (src / "b" / "four.dat").write_bytes(dat_cd_file(small, header=b"% Data file containing CD events.\n"
                                                                   b"% Version 2\n% Width 1280\n% Height 720\n"))
    rows = "".join(f"{t},{x},{y},{p}\n" for t, x, y, p in zip(*(ev[k].tolist() for k in "txyp"), strict=True))
    (src / "b" / "five.csv").write_text("t,x@1280,y@720,on\n" + rows)
    out = tmp_path / "s.zarr"
    args = ["encode", "events", "--source", str(src), "--out", str(out), "--quiet", "--steps", "10", "--dt-us",
            "1000", "--extensions", ".raw,.hdf5,.h5,.dat,.csv", "--downsample", "8"]  # fmt: skip
    r = runner.invoke(spikedata_app, args)
    assert r.exit_code == 0, r.output
    split = open_store(out)["train"]
    assert len(split) == 5 and split.unit_shape == (2, 90, 160)
    options = BinningOptions(sensor_size=(1280, 720), dt_us=1000, n_steps=10, t_start_us=None, downsample=(8, 8))
    order = ["one.raw", "two.hdf5", "five.csv", "four.dat", "three.h5"]  # class a, then b, natural file order
    files = {"one.raw": "a", "two.hdf5": "a", "five.csv": "b", "four.dat": "b", "three.h5": "b"}
    for i, name in enumerate(sorted(order, key=lambda f: (files[f], f))):
        expect = bin_events(read_events(src / files[name] / name), options)
        times, units = split.events(i)
        assert np.array_equal(times, expect.times) and np.array_equal(units, expect.units), name
    # a truncated HDF5 file among them: one line naming it
    data = (src / "a" / "two.hdf5").read_bytes()
    (src / "a" / "two.hdf5").write_bytes(data[: len(data) * 2 // 3])
    r = runner.invoke(spikedata_app, [*args, "--overwrite"])
    lines = [line for line in r.output.splitlines() if not line.startswith("note:")]
    assert r.exit_code == 1 and len(lines) <= 3 and "two.hdf5" in r.output and "Traceback" not in r.output, r.output
