"""A throwaway PostgreSQL server for the ledger tests: Debian's binaries, a cluster in a temp dir, loopback only.

initdb and postgres refuse to run as root, so as root they run as the ``postgres``
OS user that Debian's package creates, in a directory that user owns.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path

from voicemesh.process import free_port

USER = "voicemesh"
PASSWORD = "ledger-pw-4f2a"  # a password the tests look for in logs and output


def binaries() -> Path | None:
    """The bin folder of the newest PostgreSQL under /usr/lib/postgresql, or None."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parent.parent.name))
    return Path(found[-1]).parent if found else None


class PostgresServer:
    """``initdb`` + ``pg_ctl start`` on a free loopback port; ``stop`` removes the cluster."""

    def __init__(self, bin_dir: Path):
        self.bin_dir = bin_dir
        self.root = Path(tempfile.mkdtemp(prefix="voicemesh-pg-"))
        self.port = free_port()
        self.as_owner: list[str] = []
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres", "postgres")
            self.as_owner = ["runuser", "-u", "postgres", "--"]
        self.data, self.log = self.root / "data", self.root / "server.log"

    def _run(self, tool: str, *args: str) -> None:
        result = subprocess.run([*self.as_owner, str(self.bin_dir / tool), *args], capture_output=True, text=True)
        if result.returncode != 0:
            log = self.log.read_text() if self.log.exists() else ""
            raise RuntimeError(f"{tool} failed ({result.returncode}): {result.stdout}{result.stderr}{log}")

    def start(self) -> PostgresServer:
        password_file = self.root / "password"
        password_file.write_text(PASSWORD + "\n")
        if self.as_owner:
            shutil.chown(password_file, "postgres", "postgres")
        # Password (SCRAM) over TCP, so the URLs the tests use carry a password as a deployment's do.
        self._run("initdb", "-D", str(self.data), "-U", USER, f"--pwfile={password_file}", "--auth-host=scram-sha-256",
                  "--auth-local=trust", "-E", "UTF8", "--no-locale", "--no-instructions")
        options = f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.root} -c fsync=off"
        self._run("pg_ctl", "start", "-D", str(self.data), "-l", str(self.log), "-o", options, "-w", "-t", "120")
        return self

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{USER}:{PASSWORD}@127.0.0.1:{self.port}/{database}"

    def create_database(self) -> str:
        """A new empty database; returns its URL."""
        import psycopg

        name = f"ledger_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.url(), autocommit=True) as admin:
            admin.execute(f"CREATE DATABASE {name}")
        return self.url(name)

    def stop(self) -> None:
        try:
            if (self.data / "postmaster.pid").exists():
                self._run("pg_ctl", "stop", "-D", str(self.data), "-m", "fast", "-w", "-t", "60")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)
