"""A real S3-compatible server on loopback for tests: moto's standalone server in its own process."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass

import requests

ACCESS_KEY, SECRET_KEY, REGION = "tilescope-test", "tilescope-test-secret", "us-east-1"


@dataclass
class S3Server:
    """A running `moto_server` process and how to reach it."""

    endpoint: str
    process: subprocess.Popen

    def env(self) -> dict[str, str]:
        """TILESCOPE_* variables pointing storage at this server (without the URL)."""
        return {"TILESCOPE_S3_ENDPOINT_URL": self.endpoint, "TILESCOPE_S3_ACCESS_KEY_ID": ACCESS_KEY,
                "TILESCOPE_S3_SECRET_ACCESS_KEY": SECRET_KEY, "TILESCOPE_S3_REGION": REGION}

    def options(self) -> dict:
        """s3fs options for this server."""
        return {"endpoint_url": self.endpoint, "key": ACCESS_KEY, "secret": SECRET_KEY,
                "client_kwargs": {"region_name": REGION}}

    def new_bucket(self) -> str:
        """A fresh empty bucket's name."""
        import boto3

        name = f"ts-{uuid.uuid4().hex[:16]}"
        boto3.client("s3", endpoint_url=self.endpoint, aws_access_key_id=ACCESS_KEY,
                     aws_secret_access_key=SECRET_KEY, region_name=REGION).create_bucket(Bucket=name)
        return name

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def start_s3_server(timeout: float = 90.0) -> S3Server:
    """Start moto's S3 server on a free loopback port and wait until it answers."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"moto_server exited with {process.returncode}")
        try:
            requests.get(endpoint, timeout=5)
            return S3Server(endpoint, process)
        except requests.RequestException:  # not listening yet, or still importing on a busy machine
            time.sleep(0.1)
    process.kill()
    raise RuntimeError(f"moto_server did not answer on {endpoint} within {timeout} s")
