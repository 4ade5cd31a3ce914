"""IIIF Image API 3.0 and Deep Zoom endpoints over HTTP: info, every parameter, bad requests, access."""

import io
import xml.etree.ElementTree as ET

import numpy
import pytest
import zarr
from PIL import Image

from tests.conftest import log_in


def image(response) -> Image.Image:
    assert response.status_code == 200, response.get_data(as_text=True)
    return Image.open(io.BytesIO(response.data))


def test_info_json_describes_sizes_tiles_and_features(logged_in, ready_dataset):
    response = logged_in.get(f"/iiif/3/{ready_dataset}/info.json")
    info = response.json
    assert info["@context"] == "http://iiif.io/api/image/3/context.json" and info["type"] == "ImageService3"
    assert info["id"].endswith(f"/iiif/3/{ready_dataset}")
    assert (info["width"], info["height"], info["profile"]) == (1000, 700, "level2")
    assert info["tiles"] == [{"width": 256, "scaleFactors": [1, 2, 4]}]
    assert info["sizes"][-1] == {"width": 1000, "height": 700}
    assert response.headers["Access-Control-Allow-Origin"] == "*"
    assert "Access-Control-Allow-Credentials" not in response.headers  # cookies never travel cross-origin
    assert 'level2.json' in response.headers["Link"]
    ld = logged_in.get(f"/iiif/3/{ready_dataset}/info.json", headers={"Accept": "application/ld+json"})
    assert ld.headers["Content-Type"].startswith("application/ld+json")


def test_base_uri_redirects_to_info(logged_in, ready_dataset):
    response = logged_in.get(f"/iiif/3/{ready_dataset}")
    assert response.status_code == 303 and response.headers["Location"].endswith("/info.json")


def test_full_max_is_the_whole_image_pixel_exact(logged_in, ready_dataset, settings):
    level0 = zarr.open_group(str(settings.data_path / "pyramids" / f"{ready_dataset}.ome.zarr"), mode="r")["0"][0]
    got = numpy.asarray(image(logged_in.get(f"/iiif/3/{ready_dataset}/full/max/0/default.png")))
    assert got.shape == (700, 1000)
    window = logged_in.get(f"/api/v1/datasets/{ready_dataset}/info").json["windows"][0]
    expected = numpy.clip((level0.astype(numpy.float32) - window[0]) * 255 / (window[1] - window[0]), 0, 255)
    assert numpy.abs(got.astype(int) - numpy.rint(expected).astype(int)).max() <= 1


@pytest.mark.parametrize("region,size,expected", [
    ("0,0,256,256", "max", (256, 256)),
    ("900,600,500,500", "max", (100, 100)),  # clipped at the edge
    ("square", "max", (700, 700)),
    ("pct:50,50,50,50", "max", (500, 350)),
    ("full", "500,", (500, 350)),
    ("full", ",70", (100, 70)),
    ("full", "pct:10", (100, 70)),
    ("full", "!200,200", (200, 140)),
    ("full", "300,50", (300, 50)),
    ("0,0,100,100", "^200,", (200, 200)),
    ("0,0,512,512", "256,", (256, 256)),  # a scale-factor-2 tile, read from level 1
])
def test_regions_and_sizes(logged_in, ready_dataset, region, size, expected):
    assert image(logged_in.get(f"/iiif/3/{ready_dataset}/{region}/{size}/0/default.jpg")).size == expected


def test_rotation_mirroring_quality_and_formats(logged_in, ready_dataset):
    base = f"/iiif/3/{ready_dataset}/0,0,200,100/max"
    assert image(logged_in.get(f"{base}/90/default.png")).size == (100, 200)
    plain = numpy.asarray(image(logged_in.get(f"{base}/0/default.png")))
    mirrored = numpy.asarray(image(logged_in.get(f"{base}/!0/default.png")))
    assert numpy.array_equal(mirrored, plain[:, ::-1])
    assert numpy.array_equal(numpy.asarray(image(logged_in.get(f"{base}/180/default.png"))), plain[::-1, ::-1])
    bitonal = numpy.asarray(image(logged_in.get(f"{base}/0/bitonal.png")))
    assert set(numpy.unique(bitonal)) <= {0, 255}
    assert image(logged_in.get(f"{base}/0/gray.webp")).format == "WEBP"
    assert image(logged_in.get(f"{base}/0/color.jpg")).format == "JPEG"


@pytest.mark.parametrize("path,fragment", [
    ("full/max/0/default.gif", "unsupported format"),
    ("full/max/0/sepia.jpg", "unsupported quality"),
    ("full/max/45/default.jpg", "rotation"),
    ("nonsense/max/0/default.jpg", "invalid region"),
    ("5000,5000,10,10/max/0/default.jpg", "outside"),
    ("0,0,0,10/max/0/default.jpg", "positive"),
    ("full/2000,/0/default.jpg", "prefix it with ^"),
    ("full/^100000,100000/0/default.jpg", "exceeds the limit"),
    ("full/abc/0/default.jpg", "invalid size"),
    ("1,1,1" + "0" * 400 + ",5/max/0/default.jpg", "invalid region"),
    ("full/^pct:1" + "0" * 400 + "/0/default.jpg", "invalid size"),
    ("full/" + "9" * 5000 + ",/0/default.jpg", "invalid size"),
])
def test_bad_requests_get_a_400_with_a_reason(logged_in, ready_dataset, path, fragment):
    response = logged_in.get(f"/iiif/3/{ready_dataset}/{path}")
    assert response.status_code == 400
    assert fragment in response.json["error"]


def test_deep_zoom_descriptor_and_tiles(logged_in, ready_dataset):
    xml = ET.fromstring(logged_in.get(f"/dzi/{ready_dataset}.dzi").data)
    assert xml.get("TileSize") == "256" and xml.get("Overlap") == "0"
    size = xml.find("{http://schemas.microsoft.com/deepzoom/2008}Size")
    assert (size.get("Width"), size.get("Height")) == ("1000", "700")
    top = 10  # ceil(log2(1000))
    assert image(logged_in.get(f"/dzi/{ready_dataset}_files/{top}/0_0.jpg")).size == (256, 256)
    assert image(logged_in.get(f"/dzi/{ready_dataset}_files/{top}/3_2.jpg")).size == (1000 - 768, 700 - 512)
    assert image(logged_in.get(f"/dzi/{ready_dataset}_files/{top - 2}/0_0.jpg")).size == (250, 175)
    assert image(logged_in.get(f"/dzi/{ready_dataset}_files/1/0_0.jpg")).size == (2, 2)
    assert image(logged_in.get(f"/dzi/{ready_dataset}_files/0/0_0.jpg")).size == (1, 1)
    assert logged_in.get(f"/dzi/{ready_dataset}_files/{top + 1}/0_0.jpg").status_code == 404
    assert logged_in.get(f"/dzi/{ready_dataset}_files/{top}/9_9.jpg").status_code == 404


def test_iiif_and_dzi_check_access(app, ready_dataset, make_user):
    anonymous = app.test_client()
    response = anonymous.get(f"/iiif/3/{ready_dataset}/info.json")
    assert response.status_code == 401 and response.json["error"] == "login required"
    assert anonymous.get(f"/dzi/{ready_dataset}.dzi").status_code == 401
    make_user("eve@example.org")
    eve = app.test_client()
    log_in(eve, "eve@example.org")
    assert eve.get(f"/iiif/3/{ready_dataset}/info.json").status_code == 404
    assert eve.get(f"/iiif/3/{ready_dataset}/full/max/0/default.jpg").status_code == 404
    assert eve.get(f"/dzi/{ready_dataset}_files/10/0_0.jpg").status_code == 404
