"""Settings: environment parsing, defaults, and the README documenting every one."""

from pathlib import Path

import pytest

from portal.settings import Settings, parse_size

README = Path(__file__).resolve().parent.parent / "README.md"


def test_defaults_use_a_local_data_folder_and_sqlite():
    settings = Settings.from_env({})
    assert settings.data_dir == Path("var")
    assert settings.sqlalchemy_url.startswith("sqlite:///") and settings.sqlalchemy_url.endswith("var/tilescope.db")
    assert settings.redis_url == ""
    assert settings.smtp_host == ""


def test_environment_overrides_are_parsed():
    settings = Settings.from_env({"TILESCOPE_PORT": "9000", "TILESCOPE_SECURE_COOKIES": "yes",
                                  "TILESCOPE_MAX_UPLOAD_BYTES": "2G", "TILESCOPE_DATA_DIR": "/srv/ts"})
    assert settings.port == 9000
    assert settings.secure_cookies is True
    assert settings.max_upload_bytes == 2 * 1024**3
    assert settings.data_dir == Path("/srv/ts")


def test_postgres_urls_use_psycopg3():
    settings = Settings.from_env({"TILESCOPE_DATABASE_URL": "postgresql://u@h/db"})
    assert settings.sqlalchemy_url == "postgresql+psycopg://u@h/db"


@pytest.mark.parametrize("name,value", [("TILESCOPE_PORT", "eighty"), ("TILESCOPE_SECURE_COOKIES", "maybe")])
def test_bad_values_name_the_variable(name, value):
    with pytest.raises(ValueError, match=name):
        Settings.from_env({name: value})


def test_parse_size():
    assert parse_size("512M") == 512 * 1024**2
    assert parse_size("1.5K") == 1536
    assert parse_size("100") == 100


def test_secret_key_is_generated_once_and_kept(tmp_path):
    settings = Settings(data_dir=tmp_path)
    first = settings.signing_key()
    assert len(first) > 40
    assert Settings(data_dir=tmp_path).signing_key() == first
    assert (tmp_path / "secret_key").stat().st_mode & 0o077 == 0


def test_readme_documents_every_setting():
    readme = README.read_text()
    missing = [name for name, _default, _help in Settings.documentation() if f"`{name}`" not in readme]
    assert not missing, f"README.md does not document: {missing}"
