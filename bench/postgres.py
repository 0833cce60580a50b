"""A private PostgreSQL cluster for DBOS's Postgres rows, from Debian's
``postgresql`` package when it is installed (``/usr/lib/postgresql/*/bin``).

The cluster lives in a temporary folder, listens on a free loopback port
(and a socket in the same folder), trusts local connections, and keeps
Postgres's durability defaults (``fsync=on``, ``synchronous_commit=on``:
every commit is flushed before it is acknowledged), which is what the rows
compare with Redis ``appendfsync always`` and ZooKeeper. The server may not
run as root; when the bench is root it runs as the package's ``postgres``
user. Not part of CI: without the package the rows are skipped with a note.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from flowbaton.testing.servers import free_port

__all__ = ["PACKAGE", "PostgresCluster", "PostgresError", "binaries"]

PACKAGE = "postgresql"  # the Debian package that provides the binaries


class PostgresError(RuntimeError):
    """The cluster could not be created or started (the message says why)."""


def binaries() -> Path | None:
    """The newest installed ``bin`` folder with ``initdb`` and ``pg_ctl``."""
    found = [path.parent for path in Path("/usr/lib/postgresql").glob("*/bin/initdb")
             if (path.parent / "pg_ctl").exists()]
    return max(found, key=lambda path: int(path.parent.name) if path.parent.name.isdigit() else 0,
               default=None)


class PostgresCluster:
    """One ``initdb`` + ``pg_ctl start``; ``close`` stops it and removes it."""

    def __init__(self, bin_dir: Path) -> None:
        self.bin_dir = bin_dir
        self.port = free_port()
        # Not under the bench's own temp folder: that one is private to root,
        # and the server may have to run as another user.
        self.root = Path(tempfile.mkdtemp(prefix="flowbaton-bench-pg-"))
        self.data = self.root / "data"
        self._as_user: list[str] = []
        if os.geteuid() == 0:
            self._as_user = ["runuser", "-u", "postgres", "--"]
            shutil.chown(self.root, user="postgres")

    def _run(self, *argv: str) -> None:
        done = subprocess.run([*self._as_user, *argv], capture_output=True, text=True, timeout=120, check=False)
        if done.returncode != 0:
            raise PostgresError(f"{Path(argv[0]).name}: exit {done.returncode}: {done.stderr.strip()[-500:]}")

    def start(self) -> None:
        self._run(str(self.bin_dir / "initdb"), "-D", str(self.data), "-U", "postgres", "-A", "trust",
                  "--no-sync")  # the empty cluster need not be flushed; fsync stays on for the server
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=on"
        self._run(str(self.bin_dir / "pg_ctl"), "-D", str(self.data), "-l", str(self.root / "server.log"),
                  "-o", options, "-w", "-t", "60", "start")

    def url(self, database: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def version(self) -> str:
        done = subprocess.run([str(self.bin_dir / "postgres"), "--version"], capture_output=True, text=True,
                              check=False)
        found = re.search(r"\d+(\.\d+)+", done.stdout)
        return found.group(0) if found else "unknown"

    def close(self) -> None:
        if (self.data / "postmaster.pid").exists():
            # If it will not stop, removing the folder below is all that is left to do.
            with contextlib.suppress(PostgresError, subprocess.TimeoutExpired):
                self._run(str(self.bin_dir / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> PostgresCluster:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
