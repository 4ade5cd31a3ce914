"""The tilescope command: users, migrations, settings and conversion without the portal."""

import numpy
import zarr
from click.testing import CliRunner
from sqlalchemy import select

from portal.cli import main
from portal.db import session_scope
from portal.models import User
from tiler.synthetic import synthetic_image, write_synthetic_tiff


def env_for(settings):
    return {"TILESCOPE_DATA_DIR": str(settings.data_dir), "TILESCOPE_DATABASE_URL": settings.database_url}


def test_create_user_and_set_password(settings):
    runner = CliRunner()
    result = runner.invoke(main, ["create-user", "Boss@Example.org", "--admin", "--password", "s3cret-pass"], env=env_for(settings))
    assert result.exit_code == 0, result.output
    assert "created admin user boss@example.org" in result.output
    again = runner.invoke(main, ["create-user", "boss@example.org", "--password", "s3cret-pass"], env=env_for(settings))
    assert again.exit_code != 0 and "already exists" in again.output
    short = runner.invoke(main, ["create-user", "x@example.org", "--password", "short"], env=env_for(settings))
    assert short.exit_code != 0 and "at least 8" in short.output
    changed = runner.invoke(main, ["set-password", "boss@example.org", "--password", "another-pass"], env=env_for(settings))
    assert changed.exit_code == 0, changed.output
    with session_scope(settings.sqlalchemy_url) as session:
        user = session.scalar(select(User).where(User.email == "boss@example.org"))
        assert user.is_admin and user.check_password("another-pass")


def test_db_upgrade_is_idempotent(settings):
    result = CliRunner().invoke(main, ["db", "upgrade"], env=env_for(settings))
    assert result.exit_code == 0, result.output
    assert "revision head" in result.output


def test_settings_command_lists_every_setting():
    result = CliRunner().invoke(main, ["settings"])
    assert result.exit_code == 0 and "TILESCOPE_DATA_DIR" in result.output and "TILESCOPE_REDIS_URL" in result.output


def test_convert_writes_a_pyramid_like_vips(tmp_path):
    source = write_synthetic_tiff(tmp_path / "in.tif", (700, 500), "uint8", tile=None)
    result = CliRunner().invoke(main, ["convert", str(source), str(tmp_path / "out.ome.zarr")])
    assert result.exit_code == 0, result.output
    assert "500 × 700" in result.output
    level0 = zarr.open_group(str(tmp_path / "out.ome.zarr"), mode="r")["0"][:]
    assert numpy.array_equal(level0, synthetic_image((700, 500), "uint8"))
    existing = CliRunner().invoke(main, ["convert", str(source), str(tmp_path / "out.ome.zarr")])
    assert existing.exit_code != 0


def test_convert_reports_a_bad_input_clearly(tmp_path):
    bad = tmp_path / "notes.tif"
    bad.write_text("hello")
    result = CliRunner().invoke(main, ["convert", str(bad), str(tmp_path / "out.ome.zarr")])
    assert result.exit_code == 1 and "not a TIFF" in result.output
    assert not (tmp_path / "out.ome.zarr").exists()
