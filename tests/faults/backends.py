"""Backends the fault suite owns, so it can restart them without harming anyone else:
a private PostgreSQL (initdb + pg_ctl in a temp dir, on a free port), moto's S3 server,
and a Tansu broker that keeps its data in that S3 bucket (so it survives a restart)."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from tests.backends import free_port, tansu_binary, wait_for_port

PG_BIN = Path(os.environ.get("RAPPORT_PG_BIN", "/usr/lib/postgresql/15/bin"))


def _as_postgres(args: list[str]) -> list[str]:
    """initdb and postgres refuse to run as root: run them as the postgres user then."""
    return ["runuser", "-u", "postgres", "--", *args] if os.geteuid() == 0 else args


class PrivatePostgres:
    """A PostgreSQL server of our own; `restart()` crashes it (immediate stop, WAL recovery)."""

    def __init__(self):
        self.dir = Path(tempfile.mkdtemp(prefix="rapport-pg-"))
        self.port, self.data = free_port(), self.dir / "data"
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres", "postgres")
        subprocess.run(_as_postgres([str(PG_BIN / "initdb"), "-D", str(self.data), "-U", "postgres",
                                     "--auth=trust", "-E", "UTF8"]),
                       check=True, capture_output=True, timeout=120)

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    @staticmethod
    def available() -> bool:
        return (PG_BIN / "initdb").exists()

    def _ctl(self, *args: str) -> None:
        subprocess.run(_as_postgres([str(PG_BIN / "pg_ctl"), "-D", str(self.data), *args]),
                       check=True, capture_output=True, timeout=120)

    def start(self) -> None:
        options = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c max_connections=200"
        self._ctl("-o", options, "-l", str(self.dir / "server.log"), "-w", "start")

    def restart(self) -> None:
        self._ctl("-m", "immediate", "-w", "stop")
        self.start()

    def close(self, keep: bool = False) -> None:
        """Stop; the data directory stays with `keep` (start it again with pg_ctl to look)."""
        try:
            self._ctl("-m", "fast", "-w", "stop")
        finally:
            if not keep:
                shutil.rmtree(self.dir, ignore_errors=True)


class S3Server:
    """moto's S3 server (PyPI moto[server]) with one bucket."""

    BUCKET = "tansu"

    def __init__(self):
        self.port = free_port()
        self.log = tempfile.NamedTemporaryFile(prefix="moto-", suffix=".log", delete=False)
        self.process = subprocess.Popen([sys.executable, "-m", "moto.server", "-p", str(self.port)],
                                        stdout=self.log, stderr=subprocess.STDOUT)
        if not wait_for_port(self.port, 30):
            self.close()
            raise RuntimeError(f"moto did not listen; log: {self.log.name}")
        import boto3

        boto3.client("s3", endpoint_url=self.endpoint, region_name="us-east-1",
                     aws_access_key_id="test", aws_secret_access_key="test").create_bucket(Bucket=self.BUCKET)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def broker_env(self) -> dict[str, str]:
        return {"AWS_ENDPOINT": self.endpoint, "AWS_ALLOW_HTTP": "true", "AWS_ACCESS_KEY_ID": "test",
                "AWS_SECRET_ACCESS_KEY": "test", "AWS_DEFAULT_REGION": "us-east-1"}

    def close(self) -> None:
        self.process.kill()
        self.process.wait()


def s3_available() -> bool:
    try:
        import moto.server  # noqa: F401
    except ImportError:
        return False
    return tansu_binary() is not None
