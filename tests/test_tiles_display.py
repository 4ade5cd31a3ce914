"""Native tiles with display parameters, histograms, and planes of volumes over HTTP."""

import io

import numpy
import pytest
from PIL import Image
from tests.conftest import add_converted_dataset
from tiler.synthetic_volume import write_synthetic_zip_stack


def pixels(response) -> numpy.ndarray:
    assert response.status_code == 200, response.get_data(as_text=True)
    return numpy.asarray(Image.open(io.BytesIO(response.data)))


def test_display_parameters_change_the_pixels_and_the_etag(logged_in, ready_dataset):
    base = f"/api/v1/datasets/{ready_dataset}/tiles/0/0/0.png"
    plain = logged_in.get(base)
    inverted = logged_in.get(f"{base}?invert=1")
    assert numpy.array_equal(pixels(inverted), 255 - pixels(plain))
    assert inverted.headers["ETag"] != plain.headers["ETag"]
    wide = pixels(logged_in.get(f"{base}?w=0:1000"))
    assert wide.max() < pixels(plain).max()
    coloured = pixels(logged_in.get(f"{base}?color=FF0000"))
    assert coloured.ndim == 3 and coloured[..., 1:].max() == 0
    assert pixels(logged_in.get(f"{base}?cmap=viridis")).ndim == 3
    assert pixels(logged_in.get(f"{base}?c=")).max() == 0  # every channel off: black


@pytest.mark.parametrize("query,fragment", [("gamma=0", "gamma"), ("w=a:b", "window"), ("color=XYZ", "colo"),
                                            ("c=5", "channel"), ("plane=xz", "3D"), ("slice=-1", "whole number"),
                                            ("slice=%C2%B2", "whole number"), ("slice=" + "9" * 5000, "whole number"),
                                            ("w=-1e308:1e308", "window"), ("w=0:1e-320", "window")])
def test_bad_display_parameters_get_a_400(logged_in, ready_dataset, query, fragment):
    response = logged_in.get(f"/api/v1/datasets/{ready_dataset}/tiles/0/0/0.png?{query}")
    assert response.status_code == 400, response.get_data(as_text=True)
    assert fragment in response.json["error"]


def test_histogram_per_channel(logged_in, ready_dataset):
    [channel] = logged_in.get(f"/api/v1/datasets/{ready_dataset}/histogram").json["channels"]
    assert sum(channel["counts"]) > 0 and len(channel["edges"]) == len(channel["counts"]) + 1


@pytest.fixture
def ready_volume(settings, logged_in, tmp_path):
    """A converted 30×96×80 uint16 volume with 2:1 anisotropic voxels, in a project of the logged-in user."""
    archive = write_synthetic_zip_stack(tmp_path / "stack.zip", (30, 96, 80), "uint16", fmt="tiff")
    return add_converted_dataset(settings, archive, name="vol", voxel_size=(2.0, 1.0, 1.0))


def test_volume_info_and_planes(logged_in, ready_volume):
    info = logged_in.get(f"/api/v1/datasets/{ready_volume}/info").json
    assert info["ndim"] == 3 and info["depth"] == 30 and info["levels"][0] == [30, 96, 80]
    assert info["plane_sizes"] == {"xy": [96, 80], "xz": [60, 80], "yz": [60, 96]}
    base = f"/api/v1/datasets/{ready_volume}/tiles/0/0/0.png"
    assert pixels(logged_in.get(f"{base}?plane=xy&slice=3")).shape == (96, 80)
    assert pixels(logged_in.get(f"{base}?plane=xz&slice=50")).shape == (60, 80)
    assert pixels(logged_in.get(f"{base}?plane=yz&slice=79")).shape == (60, 96)
    first, other = pixels(logged_in.get(f"{base}?slice=0")), pixels(logged_in.get(f"{base}?slice=29"))
    assert not numpy.array_equal(first, other), "different slices look different"
    assert logged_in.get(f"{base}?plane=yz&slice=80").status_code == 404
    assert logged_in.get(f"/iiif/3/{ready_volume}/full/max/0/default.png?slice=5").status_code == 200
