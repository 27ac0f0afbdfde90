"""A throwaway PostgreSQL cluster started from the system's binaries.

``initdb`` refuses to run as root, so when the process is root the cluster runs
as the ``postgres`` OS user (or ``nobody``). The server listens on a free loopback
port and a private socket directory, trusts local connections, and is removed
with its data directory on ``stop()``.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from typing import Sequence

__all__ = ["PostgresCluster", "PostgresNotInstalled", "find_bindir", "free_port"]


class PostgresNotInstalled(RuntimeError):
    pass


def find_bindir() -> str:
    """The directory holding initdb and pg_ctl (newest installed major version)."""
    env = os.environ.get("TOKENIZE_PG_BINDIR")
    candidates = [env] if env else []
    candidates += sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(p.split("/")[-2]), reverse=True)
    for found in (shutil.which("initdb"), shutil.which("pg_ctl")):
        if found:
            candidates.append(os.path.dirname(os.path.realpath(found)))
    for d in candidates:
        if d and os.path.exists(os.path.join(d, "initdb")) and os.path.exists(os.path.join(d, "pg_ctl")):
            return d
    raise PostgresNotInstalled(
        "PostgreSQL server binaries (initdb, pg_ctl) not found; install them with "
        "`apt-get install postgresql postgresql-contrib`, or set TOKENIZE_TEST_PG_URL"
    )


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now (it can be taken before it is used)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PostgresCluster:
    """Start with ``start()``, connect with ``url(database)``, remove with ``stop()``."""

    #: Fast and unsafe: a throwaway cluster needs no durability.
    DEFAULT_SETTINGS = ("fsync=off", "synchronous_commit=off", "full_page_writes=off")

    def __init__(self, settings: Sequence[str] = DEFAULT_SETTINGS):
        self.settings = list(settings)
        self.port = free_port()
        self.bindir = find_bindir()
        self.base = tempfile.mkdtemp(prefix="tokenize-pg-")
        self.data = os.path.join(self.base, "data")
        self._user: pwd.struct_passwd | None = None
        if os.geteuid() == 0:
            for name in ("postgres", "nobody"):
                try:
                    self._user = pwd.getpwnam(name)
                    break
                except KeyError:
                    continue
            os.chmod(self.base, 0o755)
            os.chown(self.base, self._user.pw_uid, self._user.pw_gid)  # type: ignore[union-attr]

    def _run(self, *args: str) -> None:
        def demote() -> None:
            if self._user is not None:
                os.setgid(self._user.pw_gid)
                os.setuid(self._user.pw_uid)

        proc = subprocess.run(
            [os.path.join(self.bindir, args[0]), *args[1:]],
            preexec_fn=demote, capture_output=True, text=True, cwd=self.base,
            env={**os.environ, "LC_ALL": "C.UTF-8", "HOME": self.base},
        )
        if proc.returncode != 0:
            raise RuntimeError(f"{args[0]} failed ({proc.returncode}): {proc.stdout}\n{proc.stderr}")

    def start(self) -> "PostgresCluster":
        self._run("initdb", "-D", self.data, "-U", "postgres", "-A", "trust", "-E", "UTF8",
                  "--locale=C.UTF-8", "--no-sync")
        for attempt in range(1, self.START_ATTEMPTS + 1):
            opts = [f"-p {self.port}", f"-k {self.base}", "-c listen_addresses=127.0.0.1"]
            opts += [f"-c {s}" for s in self.settings]
            try:
                self._run("pg_ctl", "-D", self.data, "-l", self.log_path, "-w",
                          "-t", "60", "-o", " ".join(opts), "start")
                return self
            except RuntimeError:
                # The free port was taken between choosing it and the server binding it (another
                # process, e.g. a second test suite starting its own cluster): take another one.
                if attempt == self.START_ATTEMPTS or not self._port_was_taken():
                    raise
                self.port = free_port()
        raise AssertionError("unreachable")

    #: Tries to start the server, each on a new free port when the last one was taken.
    START_ATTEMPTS = 3

    def _port_was_taken(self) -> bool:
        try:
            with open(self.log_path, encoding="utf-8", errors="replace") as f:
                log = f.read()
        except OSError:
            return False
        return "could not bind" in log or "Address already in use" in log

    @property
    def log_path(self) -> str:
        """The server's log file."""
        return os.path.join(self.base, "server.log")

    def url(self, database: str = "postgres", user: str = "postgres") -> str:
        return f"postgresql+psycopg2://{user}@127.0.0.1:{self.port}/{database}"

    def server_url(self) -> str:
        """The URL without a database, as the tokenize config wants it."""
        return f"postgresql+psycopg2://postgres@127.0.0.1:{self.port}"

    def stop(self) -> None:
        try:
            self._run("pg_ctl", "-D", self.data, "-m", "immediate", "-w", "stop")
        except RuntimeError:
            pass
        shutil.rmtree(self.base, ignore_errors=True)

    def __enter__(self) -> "PostgresCluster":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
