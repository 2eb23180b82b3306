"""Any folder of event files (`spikedata encode events`): labels from class sub-folders or a CSV, the format of
each file detected from its content (ATIS .bin, AEDAT 2 / 3.1 / 4, Prophesee EVT 2 / EVT 3 / DAT), the sensor size
as the files state it or as given. Layouts: `spikedata.datasets.shared.event_folder`."""

from __future__ import annotations

from pathlib import Path

from spikedata.datasets.shared.declaration import REQUIRED, Dataset, EncodeRun, Option
from spikedata.datasets.shared.event_folder import EVENT_EXTENSIONS, scan_folder
from spikedata.datasets.shared.options import (
    BINNING,
    CHUNK,
    DT_US,
    EVENT_CHECKS,
    SEEDED_SPLIT,
    SENSOR_SIZE,
    SOURCE,
    STEPS_KEPT,
    EventChecks,
    SplitSelection,
    parse_ints,
)
from spikedata.errors import DatasetError

#: Time origin of a sample: its first event, or the file's time 0.
T_STARTS = ("first", "zero")


def encode(dataset: Dataset, run: EncodeRun, source: Path, labels: Path | None, sensor_size: str | None,
           t_start: str, extensions: str, binning: dict, events: EventChecks, splits: SplitSelection,
           chunk: int) -> Path:
    """Bin every event file under `source` (labelled by folders or by the CSV `labels`)."""
    from spikedata.datasets.shared.event_encoding import encode_event_folder, probe_sensor_size
    from spikedata.encoders.event_binning import BinningOptions

    endings = tuple(e.strip().lower() for e in extensions.split(",") if e.strip())
    folder = scan_folder(source, extensions=endings, labels_csv=labels)
    size = parse_ints(sensor_size, 2, "sensor_size")
    if size is None:
        size, fmt = probe_sensor_size(folder)
        if size is None:
            raise DatasetError(f"{fmt} files do not state the sensor size; pass `sensor_size` WIDTH,HEIGHT")
    base = BinningOptions(sensor_size=size, t_start_us=None if t_start == "first" else 0)
    return encode_event_folder(dataset, run, folder, size, base, binning, events, splits, chunk)


DATASET = Dataset(
    "events",
    "A generic folder of event files (ATIS .bin, AEDAT 2/3.1/4, Prophesee EVT2/EVT3/DAT), labels from sub-folders "
    "or a CSV.",
    encode,
    options=(
        SOURCE.but(help="Folder of event files: <class>/<file> or <split>/<class>/<file>, or any layout with "
                   "--labels."),
        Option("labels", Path, None, "CSV with columns file,label[,split] (paths relative to --source)."),
        SENSOR_SIZE.but(help="WIDTH,HEIGHT (default: as the files state)."),
        Option("t_start", str, "first", "Time origin: 'first' (each sample's first event) or 'zero' (the file's "
               "time 0).", choices=T_STARTS),
        Option("extensions", str, ",".join(EVENT_EXTENSIONS), "File name endings to read (comma separated)."),
        BINNING.but(dt_us=DT_US.but(default=1000), steps=STEPS_KEPT.but(default=REQUIRED)),
        EVENT_CHECKS, SEEDED_SPLIT, CHUNK,
    ),
    reader=scan_folder,
)
