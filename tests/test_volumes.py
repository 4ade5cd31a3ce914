"""3D volumes through the whole portal: zip of slices and DICOM series upload → worker → 3D OME-Zarr; CLI too."""

import io
import zipfile
from pathlib import Path

import numpy
import zarr
from click.testing import CliRunner

from portal.cli import main
from tests.conftest import csrf_token, post_multipart, run_worker_burst
from tiler.synthetic_dicom import write_synthetic_dicom_series
from tiler.synthetic_volume import synthetic_volume, write_synthetic_zip_stack


def new_project(client) -> int:
    return client.post("/api/v1/projects", json={"name": "CT"}, headers={"X-CSRFToken": csrf_token(client, "/")}).json["id"]


def upload(client, project_id, data: bytes, filename: str):
    return post_multipart(client, f"/api/v1/projects/{project_id}/datasets", {"file": (io.BytesIO(data), filename)},
                          {"X-CSRFToken": csrf_token(client, "/")})


def test_a_zip_of_slices_becomes_a_3d_pyramid(settings, logged_in, tmp_path):
    archive = write_synthetic_zip_stack(tmp_path / "stack.zip", (40, 96, 80), "uint16", fmt="png")
    project_id = new_project(logged_in)
    response = upload(logged_in, project_id, archive.read_bytes(), "stack.zip")
    assert response.status_code == 202, response.json
    assert response.json["format"] == "ZIP-STACK"
    run_worker_burst(settings)
    dataset = logged_in.get(f"/api/v1/datasets/{response.json['id']}").json
    assert dataset["status"] == "ready", dataset
    assert (dataset["width"], dataset["height"], dataset["depth"]) == (80, 96, 40)
    group = zarr.open_group(str(settings.data_path / "pyramids" / f"{dataset['id']}.ome.zarr"), mode="r")
    assert group.attrs["ome"]["multiscales"][0]["axes"][1]["name"] == "z"
    assert numpy.array_equal(group["0"][:], synthetic_volume((40, 96, 80), "uint16"))
    page = logged_in.get(f"/datasets/{dataset['id']}").get_data(as_text=True)
    assert "80 × 96 × 40" in page and "Voxels" in page


def test_a_zipped_dicom_series_keeps_its_spacing_and_metadata(settings, logged_in, tmp_path):
    files = write_synthetic_dicom_series(tmp_path / "series", (12, 64, 48))
    archive = tmp_path / "series.zip"
    with zipfile.ZipFile(archive, "w") as bundle:
        for path in files:
            bundle.write(path, f"CT/{path.name}")
    project_id = new_project(logged_in)
    response = upload(logged_in, project_id, archive.read_bytes(), "series.zip")
    assert response.status_code == 202 and response.json["format"] == "DICOM", response.json
    run_worker_burst(settings)
    dataset = logged_in.get(f"/api/v1/datasets/{response.json['id']}").json
    assert dataset["status"] == "ready", dataset
    assert (dataset["width"], dataset["height"], dataset["depth"]) == (48, 64, 12)
    assert dataset["z_spacing"] and dataset["pixel_size"]
    assert dataset["source_metadata"].get("Modality") == "CT"
    assert "Modality" in logged_in.get(f"/datasets/{dataset['id']}").get_data(as_text=True)


def test_a_zip_escaping_its_folder_fails_with_a_reason_and_is_kept(settings, logged_in, tmp_path):
    archive = tmp_path / "evil.zip"
    with zipfile.ZipFile(archive, "w") as bundle:
        bundle.writestr("../../etc/slice1.png", b"\x89PNG\r\n\x1a\n" + b"0" * 100)
    project_id = new_project(logged_in)
    response = upload(logged_in, project_id, archive.read_bytes(), "evil.zip")
    assert response.status_code == 202, response.json
    run_worker_burst(settings)
    dataset = logged_in.get(f"/api/v1/datasets/{response.json['id']}").json
    assert dataset["status"] == "failed" and ".." in dataset["status_reason"], dataset
    original = settings.data_path / "originals" / dataset["original_sha256"][:2] / dataset["original_sha256"]
    assert original.read_bytes() == archive.read_bytes()
    assert not list(Path("/etc").glob("slice1.png"))


def test_cli_converts_a_folder_of_dicom_files(tmp_path):
    write_synthetic_dicom_series(tmp_path / "series", (8, 32, 32))
    result = CliRunner().invoke(main, ["convert", str(tmp_path / "series"), str(tmp_path / "ct.ome.zarr")])
    assert result.exit_code == 0, result.output
    assert "32 × 32 × 8" in result.output
    assert zarr.open_group(str(tmp_path / "ct.ome.zarr"), mode="r")["0"].shape == (1, 8, 32, 32)
