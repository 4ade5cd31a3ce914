"""Bad volume inputs: unsafe zips and folders, bombs, mismatched slices or series, wrong sizes."""

from __future__ import annotations

import io
import os
import stat
import zipfile
from pathlib import Path

import numpy
import pytest
import tifffile

from tiler.errors import CorruptImage, ImageTooLarge, TilerError, UnsupportedFormat
from tiler.readers import open_image, open_raw_volume, sniff_format
from tiler.safe_archive import UnsafeArchive
from tiler.synthetic_dicom import write_synthetic_dicom_series
from tiler.synthetic_volume import write_synthetic_raw, write_synthetic_stack


def _png(value: int = 0, shape: tuple[int, int] = (8, 8)) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(numpy.full(shape, value, numpy.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def _zip(path: Path, entries: dict[str, bytes], compression: int = zipfile.ZIP_DEFLATED) -> Path:
    with zipfile.ZipFile(path, "w", compression) as archive:
        for name, data in entries.items():
            archive.writestr(zipfile.ZipInfo(name) if name.endswith("/") else name, data)
    return path


@pytest.mark.parametrize(("name", "message"), [
    ("../escape.png", "outside the archive"),
    ("stack/../../escape.png", "outside the archive"),
    ("/etc/slice.png", "absolute path"),
    ("C:/temp/slice.png", "absolute path"),
])
def test_zip_entries_that_escape(tmp_path: Path, name: str, message: str) -> None:
    path = _zip(tmp_path / "evil.zip", {"slice1.png": _png(), name: _png()})
    with pytest.raises(UnsafeArchive, match=message):
        open_image(path)
    assert sniff_format(path) == "ZIP"  # kept and converted, so the reason reaches the user


def test_zip_with_a_symlink(tmp_path: Path) -> None:
    path = tmp_path / "link.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("slice1.png", _png())
        link = zipfile.ZipInfo("slice2.png")
        link.create_system = 3
        link.external_attr = (stat.S_IFLNK | 0o777) << 16
        archive.writestr(link, "/etc/passwd")
    with pytest.raises(UnsafeArchive, match="symbolic link"):
        open_image(path)


def test_zip_bomb_by_declared_size(tmp_path: Path) -> None:
    path = _zip(tmp_path / "bomb.zip", {"slice1.png": _png(), "slice2.png": bytes(30_000_000)})
    assert path.stat().st_size < 100_000
    with pytest.raises(ImageTooLarge, match="unpacks to 30000000 bytes"):
        open_image(path, max_pixels=100_000)


def test_zip_bomb_by_ratio(tmp_path: Path) -> None:
    path = _zip(tmp_path / "ratio.zip", {"slice1.png": _png(), "slice2.tif": bytes(20_000_000)},
                compression=zipfile.ZIP_BZIP2)
    with pytest.raises(ImageTooLarge, match="zip bomb"):
        open_image(path)


def test_zip_with_overlapping_entries(tmp_path: Path) -> None:
    path = _zip(tmp_path / "overlap.zip", {"a.png": _png(1), "b.png": _png(2)})
    data = bytearray(path.read_bytes())
    first = data.index(b"PK\x01\x02")  # central directory: point b's header at a's
    second = data.index(b"PK\x01\x02", first + 4)
    data[second + 42:second + 46] = data[first + 42:first + 46]
    path.write_bytes(bytes(data))
    with pytest.raises(UnsafeArchive, match="overlaps"):
        open_image(path)


def test_folder_with_a_symlink_leaving_it(tmp_path: Path) -> None:
    write_synthetic_stack(tmp_path / "stack", (3, 8, 8), "uint8", fmt="png")
    (tmp_path / "secret.png").write_bytes(_png(9))
    os.symlink(tmp_path / "secret.png", tmp_path / "stack" / "slice4.png")
    with pytest.raises(UnsafeArchive, match="slice4.png.*outside"):
        open_image(tmp_path / "stack")
    os.unlink(tmp_path / "stack" / "slice4.png")
    os.symlink(tmp_path / "stack" / "slice1.png", tmp_path / "stack" / "slice4.png")
    with open_image(tmp_path / "stack") as source:  # a link inside the folder is fine
        assert source.shape == (1, 4, 8, 8)


def test_stack_slices_of_another_shape_or_type(tmp_path: Path) -> None:
    write_synthetic_stack(tmp_path / "s", (12, 8, 8), "uint8", fmt="png")
    (tmp_path / "s" / "slice7.png").write_bytes(_png(shape=(8, 9)))
    with pytest.raises(CorruptImage, match=r"'slice7.png' is 9 x 8 uint8 but the first slice "
                                           r"'slice1.png' is 8 x 8 uint8"):
        open_image(tmp_path / "s")
    tifffile.imwrite(tmp_path / "s" / "slice7.png", numpy.zeros((8, 8), numpy.uint16))
    with pytest.raises(CorruptImage, match="'slice7.png' is 8 x 8 uint16"):
        open_image(tmp_path / "s")


def test_zip_stack_of_mixed_shapes(tmp_path: Path) -> None:
    path = _zip(tmp_path / "m.zip", {f"s{i}.png": _png(shape=(8, 8 if i != 11 else 7))
                                     for i in range(1, 13)})
    with pytest.raises(CorruptImage, match="'s11.png' is 7 x 8"):
        open_image(path)


@pytest.mark.parametrize("kind", ["folder", "zip"])
def test_empty_folder_and_zip(tmp_path: Path, kind: str) -> None:
    if kind == "folder":
        path = tmp_path / "empty"
        path.mkdir()
        (path / ".DS_Store").write_bytes(b"junk")
    else:
        path = _zip(tmp_path / "empty.zip", {"folder/": b""})
    with pytest.raises(UnsupportedFormat, match=f"the {kind}.* is empty"):
        open_image(path)
    assert sniff_format(path) is None


def test_zip_without_images(tmp_path: Path) -> None:
    path = _zip(tmp_path / "docs.zip", {"report.pdf": b"%PDF-1.7\n", "notes.txt": b"hello"})
    with pytest.raises(UnsupportedFormat, match="holds no TIFF, PNG, JPEG slices"):
        open_image(path)
    assert sniff_format(path) is None


def test_dicom_series_with_mismatched_slice_sizes(tmp_path: Path) -> None:
    write_synthetic_dicom_series(tmp_path / "a", (4, 16, 16), shuffle=False, seed=1)
    odd = write_synthetic_dicom_series(tmp_path / "b", (1, 16, 12), shuffle=False, seed=1)
    odd[0].rename(tmp_path / "a" / "IM9999.dcm")
    with pytest.raises(CorruptImage, match="'IM9999.dcm' has Columns 12 but 'IM0001.dcm' has "
                                           "16; the slices of a series must match"):
        open_image(tmp_path / "a")


def test_dicom_folder_with_two_series(tmp_path: Path) -> None:
    first = write_synthetic_dicom_series(tmp_path / "mixed", (3, 8, 8), seed=1, series_uid="1.2.3")
    write_synthetic_dicom_series(tmp_path / "other", (2, 8, 8), seed=2, series_uid="1.2.4")
    for index, path in enumerate(sorted((tmp_path / "other").iterdir())):
        path.rename(first[0].parent / f"other{index}.dcm")
    with pytest.raises(UnsupportedFormat, match=r"mixes 2 DICOM series: 1\.2\.3 \(3 files\); "
                                                r"1\.2\.4 \(2 files\)"):
        open_image(tmp_path / "mixed")


def test_dicom_slices_at_the_same_position(tmp_path: Path) -> None:
    paths = write_synthetic_dicom_series(tmp_path / "d", (3, 8, 8), shuffle=False,
                                         slice_spacing=0.0)
    with pytest.raises(CorruptImage, match="same position"):
        open_image(paths[0].parent)


def test_dicom_without_a_decoder(tmp_path: Path) -> None:
    import pydicom

    path = write_synthetic_dicom_series(tmp_path / "d", (1, 8, 8))[0]
    dataset = pydicom.dcmread(path)
    dataset.file_meta.TransferSyntaxUID = pydicom.uid.JPEGLSLossless
    dataset.PixelData = pydicom.encaps.encapsulate([b"\xff\xd8\xff\xf7 not really JPEG-LS"])
    dataset["PixelData"].VR = "OB"
    dataset.save_as(path, enforce_file_format=True)
    with pytest.raises(UnsupportedFormat, match="JPEG-LS"):
        open_image(path)


def test_raw_size_must_match_the_declaration(tmp_path: Path) -> None:
    path = write_synthetic_raw(tmp_path / "v.raw", (4, 10, 10), "uint16")
    with pytest.raises(CorruptImage, match="has 800 bytes but 10 x 10 x 5 voxels of uint16 need "
                                           "1000 bytes"):
        open_raw_volume(path, (5, 10, 10), "uint16")
    with pytest.raises(ValueError, match="byteorder"):
        open_raw_volume(path, (4, 10, 10), "uint16", "middle")
    with pytest.raises(UnsupportedFormat, match="complex64"):
        open_raw_volume(path, (4, 10, 5), "complex64")


@pytest.mark.parametrize("imagej", [True, False])
def test_truncated_tiff_stack(tmp_path: Path, imagej: bool) -> None:
    from tiler.readers.tiff_stack import TiffStackReader
    from tiler.synthetic_volume import write_synthetic_tiff_stack

    path = write_synthetic_tiff_stack(tmp_path / "stack.tif", (40, 32, 32), imagej=imagej)
    with open(path, "r+b") as handle:  # ImageJ: directories first, pixels cut; generic: both
        handle.truncate(path.stat().st_size * 3 // 4 if imagej else 20_000)
    with pytest.raises(TilerError) as caught:
        TiffStackReader(path, max_pixels=2**34)
    assert isinstance(caught.value, CorruptImage) and "truncated" in str(caught.value)


def test_volume_plane_limit(tmp_path: Path) -> None:
    write_synthetic_stack(tmp_path / "s", (3, 20, 30), "uint8", fmt="png")
    with pytest.raises(ImageTooLarge, match="600 pixels"):
        open_image(tmp_path / "s", max_pixels=500)


@pytest.mark.timeout(30)
def test_cyclic_tiff_is_not_sniffed_as_a_stack(tmp_path: Path) -> None:
    import struct

    from tiler.readers.tiff_stack import TiffStackReader

    path = tmp_path / "cycle.tif"
    with tifffile.TiffWriter(path) as writer:
        for _ in range(40):
            writer.write(numpy.zeros((4, 4), numpy.uint8), metadata=None)
    with tifffile.TiffFile(path) as tiff:
        offsets = [page.offset for page in tiff.pages]
    data = bytearray(path.read_bytes())
    (count,) = struct.unpack("<H", data[offsets[-1]:offsets[-1] + 2])
    data[offsets[-1] + 2 + 12 * count:offsets[-1] + 6 + 12 * count] = struct.pack("<I", offsets[1])
    path.write_bytes(bytes(data))
    assert TiffStackReader.sniff_path(str(path), bytes(data[:132])) is None
    with pytest.raises(CorruptImage, match="cyclic IFD chain"):
        TiffStackReader(path, max_pixels=2**34)


_OME_PARTS = ('<?xml version="1.0"?>{dtd}<OME xmlns="http://www.openmicroscopy.org/Schemas/OME/'
              '2016-06" UUID="urn:uuid:0"><Image ID="Image:0"><Pixels ID="Pixels:0" '
              'DimensionOrder="XYZCT" Type="uint8" SizeX="16" SizeY="16" SizeC="1" SizeZ="40" '
              'SizeT="1"><Channel ID="Channel:0" SamplesPerPixel="1"/>{data}</Pixels></Image>'
              '</OME>')
_TIFF_DATA = ('<TiffData FirstZ="0" IFD="0" PlaneCount="20"><UUID FileName="stack.ome.tif">'
              'urn:uuid:0</UUID></TiffData><TiffData FirstZ="20" IFD="0" PlaneCount="20">'
              '<UUID FileName="../x.ome.tif">urn:uuid:1</UUID></TiffData>')
_ENTITY = '<!DOCTYPE OME [<!ENTITY e "x">]>'


@pytest.mark.parametrize(("dtd", "data", "error", "message"), [
    ("", _TIFF_DATA, UnsupportedFormat, "spread over 2 files"),  # half its planes elsewhere
    (_ENTITY, "", CorruptImage, "DTDs and entities are not allowed"),
])
def test_ome_tiff_stack_opens_no_other_file(tmp_path: Path, monkeypatch, dtd: str, data: str,
                                            error: type, message: str) -> None:
    """tifffile would open (or zero-fill) files its OME-XML names, and parse unsafe XML."""
    from tiler.readers.tiff_stack import TiffStackReader

    tifffile.imwrite(tmp_path / "x.ome.tif", numpy.full((20, 16, 16), 200, numpy.uint8))
    path = tmp_path / "a" / "stack.ome.tif"
    path.parent.mkdir()
    description = _OME_PARTS.format(dtd=dtd, data=data)
    with tifffile.TiffWriter(path) as writer:
        for z in range(20):
            writer.write(numpy.full((16, 16), z, numpy.uint8), metadata=None,
                         description=description if z == 0 else None)
    opened, original = [], tifffile.TiffFile.__init__

    def spy(self, file, *args, **kwargs) -> None:
        opened.append(os.path.abspath(file))
        original(self, file, *args, **kwargs)

    monkeypatch.setattr(tifffile.TiffFile, "__init__", spy)
    for opener in (open_image, lambda p: TiffStackReader(p, max_pixels=2**30)):
        with pytest.raises(error, match=message):
            opener(path)
    assert opened and set(opened) == {str(path)}
