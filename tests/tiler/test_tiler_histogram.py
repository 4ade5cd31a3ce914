"""Channel histograms from the lowest pyramid level: counts, edges, ranges, JSON, 2D and 3D."""

from __future__ import annotations

import json
from pathlib import Path

import numpy
import pytest

from tests.tiler.test_tiler_planes import ArrayVolume
from tiler.errors import InvalidParameter
from tiler.histogram import channel_histograms
from tiler.pyramid import write_pyramid
from tiler.render import Pyramid
from tiler.volume_pyramid import write_volume_pyramid


def test_small_integer_range_gets_a_bin_per_value(tmp_path: Path, array_source) -> None:
    data = numpy.zeros((2, 10, 12), dtype=numpy.uint8)
    data[0, :, :6] = 3
    data[0, :, 6:] = 5
    data[1] = 200
    write_pyramid(array_source(data=data, channel_names=["a", "b"]), tmp_path / "p.ome.zarr")
    first, second = channel_histograms(Pyramid.open(tmp_path / "p.ome.zarr"))
    assert first["channel"] == "a" and (first["min"], first["max"]) == (3.0, 5.0)
    assert first["counts"] == [60, 0, 60] and first["edges"] == [3.0, 4.0, 5.0, 6.0]
    assert second["counts"] == [120] and second["edges"] == [200.0, 201.0]
    assert first["color"] == "00FF00" and len(first["window"]) == 2
    json.dumps([first, second])


def test_wide_range_uses_the_asked_bins(tmp_path: Path, array_source) -> None:
    data = numpy.arange(40 * 50, dtype=numpy.uint16).reshape(1, 40, 50) * 30
    write_pyramid(array_source(data=data), tmp_path / "w.ome.zarr", tile_size=16)
    pyramid = Pyramid.open(tmp_path / "w.ome.zarr")
    lowest = pyramid.read_level(len(pyramid.levels) - 1)
    (histogram,) = channel_histograms(pyramid, bins=64)
    assert len(histogram["counts"]) == 64 and len(histogram["edges"]) == 65
    assert sum(histogram["counts"]) == lowest.size
    assert histogram["min"] == lowest.min() and histogram["max"] == lowest.max()
    assert channel_histograms(pyramid, bins=64) == [histogram]  # cached, and a fresh copy
    with pytest.raises(InvalidParameter, match="use a whole number from 1 to 4096"):
        channel_histograms(pyramid, bins=0)


def test_float_channels_count_finite_values(tmp_path: Path, array_source) -> None:
    data = numpy.linspace(0, 1, 20 * 20, dtype=numpy.float32).reshape(1, 20, 20)
    data[0, 0, :5] = numpy.nan
    write_pyramid(array_source(data=data), tmp_path / "f.ome.zarr")
    (histogram,) = channel_histograms(Pyramid.open(tmp_path / "f.ome.zarr"), bins=10)
    assert sum(histogram["counts"]) == 395 and histogram["max"] == 1.0
    assert histogram["edges"][0] == histogram["min"] > 0


def test_volumes_use_their_lowest_level(tmp_path: Path) -> None:
    data = numpy.random.default_rng(2).integers(0, 60000, (2, 30, 40, 40), dtype=numpy.uint16)
    write_volume_pyramid(ArrayVolume(data), tmp_path / "v.ome.zarr", chunk=8)
    pyramid = Pyramid.open(tmp_path / "v.ome.zarr")
    histograms = channel_histograms(pyramid)
    assert [h["channel"] for h in histograms] == ["channel 0", "channel 1"]
    assert sum(histograms[1]["counts"]) == numpy.prod(pyramid.levels[-1])
    json.dumps(histograms)
