"""One settings object, read once from TILESCOPE_* environment variables, each with a default and help."""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass, field, fields
from pathlib import Path

ENV_PREFIX = "TILESCOPE_"


def setting(default, help: str, *, parse=str):
    """Declare a setting: its default, one line of help, and how to parse the environment string."""
    return field(default=default, metadata={"help": help, "parse": parse})


def parse_bool(text: str) -> bool:
    value = text.strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off", ""}:
        return False
    raise ValueError(f"expected a boolean (true/false), got {text!r}")


def parse_size(text: str) -> int:
    """Parse a byte count such as 2048, 512M, 4G or 1T."""
    units = {"K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}
    text = text.strip().upper().removesuffix("B")
    if text and text[-1] in units:
        return int(float(text[:-1]) * units[text[-1]])
    return int(text)


@dataclass(frozen=True)
class Settings:
    """Everything configurable about a Tilescope deployment."""

    data_dir: Path = setting(Path("var"), "Data folder: database, originals, pyramids, uploads, outbox.", parse=Path)
    storage_url: str = setting("", "Where originals, pyramids and results live: empty means <data_dir>; file:///path, or s3://bucket/prefix for an S3-compatible store.")
    s3_endpoint_url: str = setting("", "Endpoint of the S3-compatible store (e.g. http://minio:9000); empty means AWS.")
    s3_access_key_id: str = setting("", "S3 access key id (empty: the usual AWS credential chain).")
    s3_secret_access_key: str = setting("", "S3 secret access key.")
    s3_region: str = setting("", "S3 region (empty: the store's default).")
    dask_scheduler: str = setting("", "dask.distributed scheduler address (tcp://host:8786) that runs conversion and segmentation blocks; empty: the job's own processes.")
    database_url: str = setting("", "SQLAlchemy URL; empty means SQLite at <data_dir>/tilescope.db.")
    redis_url: str = setting("", "Redis URL for the job queue; empty means `tilescope up` starts an embedded redis-server.")
    secret_key: str = setting("", "Key signing sessions and CSRF tokens; empty means one generated once into <data_dir>/secret_key.")
    base_url: str = setting("http://127.0.0.1:8000", "Public URL of the portal, used in printed and mailed links.")
    host: str = setting("127.0.0.1", "Address `tilescope up` binds the web server to.")
    port: int = setting(8000, "Port `tilescope up` binds the web server to.", parse=int)
    web_workers: int = setting(2, "Gunicorn worker processes started by `tilescope up`.", parse=int)
    secure_cookies: bool = setting(False, "Send session cookies only over HTTPS (set to true behind TLS).", parse=parse_bool)
    admin_email: str = setting("admin@localhost", "Login of the first admin account `tilescope up` creates on an empty database.")
    max_upload_bytes: int = setting(parse_size("64G"), "Largest accepted upload, e.g. 64G.", parse=parse_size)
    max_image_pixels: int = setting(2**34, "Decompression-bomb guard: largest pixel count a PNG/JPEG/TIFF may declare.", parse=int)
    max_region_pixels: int = setting(4096 * 4096, "Largest output (width × height) of one IIIF or region request.", parse=int)
    volume_memory_budget: int = setting(parse_size("1G"), "Memory a 3D conversion may use, e.g. 1G.", parse=parse_size)
    chunk_cache_bytes: int = setting(parse_size("256M"), "Decoded-chunk cache per web process, e.g. 256M (0: off).", parse=parse_size)
    tile_cache_bytes: int = setting(parse_size("64M"), "Encoded-tile cache per web process, e.g. 64M (0: off).", parse=parse_size)
    local_cache_bytes: int = setting(parse_size("5G"), "Most bytes of result files fetched from S3 kept in <data_dir>/cache on each host (least recently used go first), e.g. 5G.", parse=parse_size)
    tile_size: int = setting(256, "Tile and chunk edge of new pyramids, in pixels.", parse=int)
    convert_timeout: int = setting(6 * 3600, "Seconds a conversion job may run before it is stopped.", parse=int)
    analysis_timeout: int = setting(12 * 3600, "Seconds an analysis job may run before it is stopped.", parse=int)
    analysis_memory_budget: int = setting(parse_size("1G"), "Memory one analysis job may use for its blocks, e.g. 1G.", parse=parse_size)
    analysis_processes: int = setting(0, "Processes one analysis job uses for its blocks; 0 means one per CPU core.", parse=int)
    job_attempts: int = setting(2, "Times a job is started in all when the worker running it dies (1: never retried).", parse=int)
    job_heartbeat_seconds: int = setting(10, "How often a running job tells the database it is alive.", parse=int)
    job_stale_seconds: int = setting(60, "A running job silent this long is taken as lost (its worker died) and retried or failed.", parse=int)
    session_idle_days: int = setting(14, "Days a login session may go unused before it ends and its user must log in again (0: never).", parse=int)
    share_link_days: int = setting(14, "Days an emailed or created share link stays valid.", parse=int)
    smtp_host: str = setting("", "SMTP server for mail; empty means mail is written as .eml files to <data_dir>/outbox.")
    smtp_port: int = setting(587, "SMTP server port.", parse=int)
    smtp_user: str = setting("", "SMTP user name (empty: no login).")
    smtp_password: str = setting("", "SMTP password.")
    smtp_starttls: bool = setting(True, "Use STARTTLS on the SMTP connection.", parse=parse_bool)
    smtp_tls: bool = setting(False, "Use implicit TLS (SMTPS, usually port 465) instead of STARTTLS.", parse=parse_bool)
    mail_from: str = setting("tilescope@localhost", "Sender address of mail from Tilescope.")
    metrics_token: str = setting("", "Bearer token /metrics asks for; empty means /metrics answers anyone (keep it inside the cluster).")
    log_level: str = setting("INFO", "Log level of web, worker and CLI: DEBUG, INFO, WARNING, ERROR.")
    log_format: str = setting("text", "Log line format of the web processes: text, or json (one JSON object a line).")

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None, **overrides) -> "Settings":
        """Read every setting from the environment (TILESCOPE_<NAME>), then apply keyword overrides."""
        environ = os.environ if environ is None else environ
        values = {}
        for f in fields(cls):
            key = ENV_PREFIX + f.name.upper()
            if key in environ:
                try:
                    values[f.name] = f.metadata["parse"](environ[key])
                except ValueError as exc:
                    raise ValueError(f"{key}: {exc}") from None
        values.update(overrides)
        return cls(**values)

    @classmethod
    def documentation(cls) -> list[tuple[str, str, str]]:
        """(environment variable, default, help) for every setting, for the README and `tilescope settings`."""
        rows = []
        for f in fields(cls):
            default = f.default
            if isinstance(default, bool):
                default = str(default).lower()
            rows.append((ENV_PREFIX + f.name.upper(), str(default), f.metadata["help"]))
        return rows

    # -- derived locations -------------------------------------------------------------------
    @property
    def data_path(self) -> Path:
        return self.data_dir.resolve()

    def storage_dir(self, area: str) -> Path:
        """One of the storage areas of the layout: originals, pyramids, results, uploads, outbox."""
        path = self.data_path / area
        path.mkdir(parents=True, exist_ok=True)
        return path

    @property
    def sqlalchemy_url(self) -> str:
        if self.database_url:
            return normalise_database_url(self.database_url)
        self.data_path.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{self.data_path / 'tilescope.db'}"

    def signing_key(self) -> str:
        """The configured secret key, or one generated on first use and kept in the data folder."""
        if self.secret_key:
            return self.secret_key
        key_file = self.data_path / "secret_key"
        if not key_file.exists():
            self.data_path.mkdir(parents=True, exist_ok=True)
            tmp = key_file.with_name(f".secret_key.{os.getpid()}")
            tmp.write_text(secrets.token_urlsafe(48))
            tmp.chmod(0o600)
            try:
                os.link(tmp, key_file)  # atomic; the first process to get here wins
            except FileExistsError:
                pass
            finally:
                tmp.unlink()
        return key_file.read_text().strip()


def normalise_database_url(url: str) -> str:
    """Use the psycopg 3 driver for plain postgres:// and postgresql:// URLs."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    return url
