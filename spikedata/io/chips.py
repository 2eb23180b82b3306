"""Sensor size of the DVS / DAVIS chips that AEDAT headers name (jAER's `AEChip` class, DV's source name)."""

from __future__ import annotations

#: (name fragment, (width, height)) of the chips, matched on the lower-cased chip / source name; more specific first.
CHIP_SIZES = (
    ("dvxplorer", (640, 480)),
    ("davis640", (640, 480)),
    ("rgbw640", (640, 480)),
    ("davis346", (346, 260)),
    ("davis240", (240, 180)),
    ("dvs240", (240, 180)),
    ("davis208", (208, 192)),
    ("davis128", (128, 128)),
    ("dvs128", (128, 128)),
    ("tmpdiff128", (128, 128)),
    ("edvs", (128, 128)),
)


def chip_sensor_size(chip: str | None) -> tuple[int, int] | None:
    """(width, height) of a DVS / DAVIS chip from its class or source name (e.g. 'Davis346red'), else None."""
    if not chip:
        return None
    name = chip.lower().replace("_", "").replace("-", "")
    for key, size in CHIP_SIZES:
        if key in name:
            return size
    return None
