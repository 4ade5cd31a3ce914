"""Contract suite run against every reader: shape, dtype, metadata and regions match the source."""

from __future__ import annotations

import numpy
import pytest

from tiler.errors import OutOfRange
from tiler.readers import READERS, open_image
from tiler.readers.base import ImageSource


def assert_pixels_match(actual: numpy.ndarray, expected: numpy.ndarray, tolerance: float) -> None:
    assert actual.shape == expected.shape
    assert actual.dtype == expected.dtype
    if tolerance:
        error = numpy.abs(actual.astype(numpy.float64) - expected.astype(numpy.float64))
        assert error.mean() <= tolerance, f"mean error {error.mean():.2f} > {tolerance}"
    else:
        numpy.testing.assert_array_equal(actual, expected)


def test_metadata(sample_file) -> None:
    with open_image(sample_file.path) as source:
        assert isinstance(source, ImageSource)
        assert source.format_name == sample_file.format_name
        assert source.shape == sample_file.expected.shape
        assert source.dtype == sample_file.expected.dtype
        assert len(source.channel_names) == source.shape[0]
        assert all(isinstance(name, str) and name for name in source.channel_names)
        if source.shape[0] == 3 and source.dtype == numpy.uint8:
            assert source.channel_names == ["red", "green", "blue"]
        assert source.pixel_size is None or len(source.pixel_size) == 2
        assert type(source).__name__ in repr(source)


def test_whole_image(sample_file) -> None:
    _, height, width = sample_file.expected.shape
    with open_image(sample_file.path) as source:
        pixels = source.read_region(0, height, 0, width)
    assert_pixels_match(pixels, sample_file.expected, sample_file.tolerance)


@pytest.mark.parametrize(
    "region",
    [
        (37, 211, 101, 333),  # inside, crossing tile/strip boundaries
        (0, 1, 0, 1),  # one pixel
        (299, 300, 0, 437),  # last row
        (0, 300, 436, 437),  # last column
        (250, 300, 400, 437),  # bottom-right corner (partial edge tile)
        (64, 128, 256, 384),  # exactly one interior tile-aligned block
    ],
)
def test_partial_regions(sample_file, region) -> None:
    y0, y1, x0, x1 = region
    with open_image(sample_file.path) as source:
        pixels = source.read_region(y0, y1, x0, x1)
    expected = sample_file.expected[:, y0:y1, x0:x1]
    assert_pixels_match(pixels, expected, sample_file.tolerance * 2)


@pytest.mark.parametrize(
    "region", [(0, 301, 0, 10), (0, 10, 0, 438), (-1, 10, 0, 10), (10, 10, 0, 10), (5, 4, 0, 10)]
)
def test_regions_outside_the_image_are_rejected(sample_file, region) -> None:
    with open_image(sample_file.path) as source, pytest.raises(OutOfRange, match="valid"):
        source.read_region(*region)


def test_repeated_reads_are_independent(sample_file) -> None:
    with open_image(sample_file.path) as source:
        first = source.read_region(10, 20, 10, 20)
        first[...] = 0
        second = source.read_region(10, 20, 10, 20)
    assert_pixels_match(second, sample_file.expected[:, 10:20, 10:20], sample_file.tolerance * 4)


def test_every_registered_reader_is_covered(covered_formats) -> None:
    assert {reader.format_name for reader in READERS} <= covered_formats
