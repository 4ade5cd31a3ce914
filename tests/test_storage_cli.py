"""`tilescope storage copy` moves a lab's data from a local folder to S3 (resumably); `storage check` finds gaps."""

from __future__ import annotations

from dataclasses import replace

import s3fs
from click.testing import CliRunner

from portal.cli import main
from tests.conftest import log_in, settings_env


def test_a_local_installation_moves_to_s3_and_keeps_serving(settings, logged_in, analysed, disks_dataset, s3_server,
                                                            make_user):
    bucket = s3_server.new_bucket()
    url = f"s3://{bucket}/lab"
    env = {**settings_env(settings), **s3_server.env()}
    from portal.storage import Storage

    stand_in = settings.data_path / "stand-in"  # the fixture's dataset records no real original; give it one
    stand_in.write_bytes(b"original bytes")
    Storage(settings).publish_original(stand_in, "0" * 64)
    runner = CliRunner()
    checked = runner.invoke(main, ["storage", "check"], env=env)
    assert checked.exit_code == 0, checked.output
    assert "present" in checked.output

    copied = runner.invoke(main, ["storage", "copy", url], env=env)
    assert copied.exit_code == 0, copied.output
    assert "files copied" in copied.output and "0 already there" in copied.output
    again = runner.invoke(main, ["storage", "copy", url], env=env)
    assert again.exit_code == 0 and "0 files copied" in again.output, again.output

    on_s3 = {**env, "TILESCOPE_STORAGE_URL": url}
    checked = runner.invoke(main, ["storage", "check"], env=on_s3)
    assert checked.exit_code == 0, checked.output

    from portal.app import create_app

    moved = replace(settings, storage_url=url, s3_endpoint_url=s3_server.endpoint,
                    s3_access_key_id=s3_server.options()["key"], s3_secret_access_key=s3_server.options()["secret"],
                    s3_region="us-east-1")
    client = create_app(moved).test_client()
    log_in(client)
    tile = client.get(f"/api/v1/datasets/{disks_dataset}/tiles/0/0/0.png")
    assert tile.status_code == 200 and tile.data == logged_in.get(f"/api/v1/datasets/{disks_dataset}/tiles/0/0/0.png").data
    labels = f"/api/v1/results/{analysed}/labels/tiles/0/0/0.png"
    assert client.get(labels).data == logged_in.get(labels).data

    fs = s3fs.S3FileSystem(**s3_server.options())
    fs.rm(f"{bucket}/lab/pyramids/{disks_dataset}.ome.zarr", recursive=True)
    checked = runner.invoke(main, ["storage", "check"], env=on_s3)
    assert checked.exit_code == 1 and f"pyramid of dataset {disks_dataset}" in checked.output, checked.output

    same = runner.invoke(main, ["storage", "copy", url], env=on_s3)
    assert same.exit_code != 0 and "current storage" in same.output
