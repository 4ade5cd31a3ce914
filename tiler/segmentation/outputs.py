"""The table and summary files of a segmentation: measurements.csv, objects.npy, summary.json."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy

from tiler.segmentation.measure import unit_suffix

__all__ = ["HISTOGRAM_BINS", "column_names", "diameter_stats", "histograms", "write_csv",
           "write_json", "write_objects"]

#: Bins of the size (equivalent diameter, log-spaced) and intensity histograms of the summary.
HISTOGRAM_BINS = 20
#: Rows formatted at a time while writing the CSV.
CSV_ROWS_AT_ONCE = 1024


def column_names(fields: tuple[str, ...], unit: str | None) -> dict[str, str]:
    """CSV header of each objects.npy field: lengths, areas and volumes carry their unit
    (area_um2, volume_um3, equivalent_diameter_um, centroid_x_um; _px when unknown)."""
    suffix = unit_suffix(unit)
    names = {}
    for field in fields:
        if field == "area":
            names[field] = f"area_{suffix}2"
        elif field == "volume":
            names[field] = f"volume_{suffix}3"
        elif field == "equivalent_diameter" or field.startswith("centroid_"):
            names[field] = f"{field}_{suffix}"
        else:
            names[field] = field
    return names


def write_objects(path: Path, table: numpy.ndarray) -> None:
    """objects.npy: the structured table, row i = label i + 1."""
    with open(path, "wb") as handle:
        numpy.save(handle, table, allow_pickle=False)


def write_csv(path: Path, table: numpy.ndarray, unit: str | None) -> None:
    """measurements.csv: a header, then one row per object; floats as Python's shortest
    exact repr, booleans as true/false."""
    fields = table.dtype.names
    header = column_names(fields, unit)
    with open(path, "w", encoding="utf-8", newline="") as handle:
        handle.write(",".join(header[field] for field in fields) + "\n")
        for start in range(0, len(table), CSV_ROWS_AT_ONCE):
            part = table[start:start + CSV_ROWS_AT_ONCE]
            columns = [_formatted(part[field]) for field in fields]
            handle.writelines(",".join(row) + "\n" for row in zip(*columns, strict=True))


def _formatted(column: numpy.ndarray) -> list[str]:
    if column.dtype.kind == "b":
        return ["true" if value else "false" for value in column.tolist()]
    return [repr(value) for value in column.tolist()]


def histograms(table: numpy.ndarray) -> dict[str, dict[str, list]]:
    """size_histogram (log-spaced bins of equivalent diameter) and intensity_histogram
    (linear bins of object mean intensities): {edges, counts} each, empty with no objects."""
    return {"size_histogram": _histogram(table["equivalent_diameter"], log=True),
            "intensity_histogram": _histogram(table["mean_intensity"], log=False)}


def _histogram(values: numpy.ndarray, *, log: bool) -> dict[str, list]:
    values = values[numpy.isfinite(values) & ((values > 0) if log else True)]
    if values.size == 0:
        return {"edges": [], "counts": []}
    low, high = float(values.min()), float(values.max())
    if high <= low:
        high = low * 1.5 if log else low + 1.0
    edges = (numpy.geomspace(low, high, HISTOGRAM_BINS + 1) if log
             else numpy.linspace(low, high, HISTOGRAM_BINS + 1))
    edges[0], edges[-1] = low, high
    counts, _ = numpy.histogram(values, bins=edges)
    return {"edges": [float(edge) for edge in edges], "counts": [int(c) for c in counts]}


def diameter_stats(table: numpy.ndarray) -> dict[str, float | None]:
    """Mean and median equivalent diameter of the objects (None without objects)."""
    diameters = table["equivalent_diameter"]
    if diameters.size == 0:
        return {"mean_equivalent_diameter": None, "median_equivalent_diameter": None}
    return {"mean_equivalent_diameter": float(diameters.mean()),
            "median_equivalent_diameter": float(numpy.median(diameters))}


def write_json(path: Path, data: dict[str, Any]) -> dict[str, Any]:
    """Write ``data`` as sorted, indented JSON (numpy values made plain, non-finite floats
    null); return what was written, as json.load would read it back."""
    text = json.dumps(_plain(data), indent=2, sort_keys=True, allow_nan=False)
    path.write_text(text + "\n", encoding="utf-8")
    return json.loads(text)


def _plain(value: Any) -> Any:
    """``value`` with numpy scalars and tuples made plain JSON values, non-finite floats None."""
    if isinstance(value, dict):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    if isinstance(value, numpy.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
