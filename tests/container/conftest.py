"""The image, built for real and run with podman: the session builds it once (container/build.sh,
which bootstraps debian:bookworm-slim from the Debian archive where no registry answers), and
the tests run it with temp folders as volumes, owned by a test user that is not root.

Where podman is missing (it is installed by `make test-deps` wherever apt works) or the tests do
not run as root (they chown the volumes to another user), the image tests are skipped, saying so.
The facts the issue asks for (build time, image size, time to the first transcript, memory)
are printed at the end of the run.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
IMAGE = os.environ.get("HUSHDROP_TEST_IMAGE", "localhost/hushdrop:test")
USER = (4321, 4321)  # the PUID/PGID the tests run the service as: no account of this machine
FACTS: dict[str, str] = {}


def wait_for(predicate, timeout: float, what: str, step: float = 0.5):
    """Poll ``predicate`` until it returns something true; fail naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(step)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Podman:
    """podman as these machines need it: runc, and limits it may set (docs/container.md, "Podman")."""

    base: list[str] = field(default_factory=lambda: ["podman"] + (["--runtime", "runc"] if shutil.which("runc") else []))
    limits: tuple[str, ...] = ("--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024")

    def __call__(self, *args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
        done = subprocess.run([*self.base, *args], capture_output=True, text=True, timeout=timeout)
        if check and done.returncode != 0:
            raise AssertionError(f"podman {' '.join(args)} exited {done.returncode}: {done.stderr.strip()[-2000:]}")
        return done


@dataclass
class Volumes:
    root: Path

    def __post_init__(self) -> None:
        for name in ("config", "inbox", "outbox", "data", "models"):
            path = self.root / name
            path.mkdir(parents=True, exist_ok=True)
            os.chown(path, *USER)

    def __getattr__(self, name: str) -> Path:
        if name in ("config", "inbox", "outbox", "data", "models"):
            return self.root / name
        raise AttributeError(name)

    def args(self) -> list[str]:
        out = []
        for name in ("config", "inbox", "outbox", "data", "models"):
            out += ["-v", f"{self.root / name}:/{name}"]
        return out

    def drop(self, source: Path, name: str | None = None) -> Path:
        """Put a recording into the inbox as a copy would: a hidden name (ignored), then a rename."""
        target = self.inbox / (name or source.name)
        temp = self.inbox / f".{target.name}.partial"
        shutil.copyfile(source, temp)
        os.chown(temp, *USER)
        os.rename(temp, target)
        return target


@dataclass
class Container:
    podman: Podman
    name: str
    volumes: Volumes

    def run(self, *extra: str, env: dict[str, str] | None = None, detach: bool = True, command: tuple[str, ...] = (),
            timeout: float = 120) -> subprocess.CompletedProcess:
        envs = []
        for key, value in {"PUID": str(USER[0]), "PGID": str(USER[1]), **(env or {})}.items():
            envs += ["-e", f"{key}={value}"]
        return self.podman(
            "run", *(["-d"] if detach else ["--rm"]), "--name", self.name, *self.podman.limits, *envs,
            *self.volumes.args(), *extra, IMAGE, *command, check=detach, timeout=timeout,
        )

    def logs(self) -> str:
        done = self.podman("logs", self.name, check=False)
        return done.stdout + done.stderr

    def state(self) -> dict:
        import json

        done = self.podman("inspect", self.name, "--format", "json", check=False)
        return json.loads(done.stdout)[0]["State"] if done.returncode == 0 else {}

    def running(self) -> bool:
        return bool(self.state().get("Running"))

    def remove(self) -> None:
        self.podman("rm", "-f", "-t", "2", self.name, check=False)


@pytest.fixture(scope="session")
def podman() -> Podman:
    if shutil.which("podman") is None:
        pytest.skip("podman is not installed: `make test-deps` installs it from Debian where apt works "
                    "(apt-get install podman podman-compose buildah runc debootstrap)")
    if os.geteuid() != 0:
        pytest.skip("the image tests run rootful podman and chown their volumes to a test user: run them as root")
    return Podman()


@pytest.fixture(scope="session")
def image(podman: Podman, tmp_path_factory) -> str:
    """The CPU image, built once per session from this working tree (layers are reused)."""
    log = tmp_path_factory.mktemp("build") / "build.log"
    started = time.monotonic()
    with log.open("w") as out:
        done = subprocess.run(
            [str(REPO / "container" / "build.sh"), "cpu", IMAGE], cwd=REPO, stdout=out, stderr=subprocess.STDOUT,
            env={**os.environ, "CONTAINER_TOOL": "podman"}, timeout=1800,
        )
    if done.returncode != 0:
        pytest.fail(f"container/build.sh failed ({done.returncode}):\n{log.read_text()[-3000:]}")
    FACTS["image build (this run, cached layers reused)"] = f"{time.monotonic() - started:.0f} s"
    size = int(podman("image", "inspect", IMAGE, "--format", "{{.Size}}").stdout.strip())
    FACTS["image size"] = f"{size / 1e6:.0f} MB"
    return IMAGE


@pytest.fixture
def volumes(tmp_path: Path) -> Volumes:
    root = tmp_path / "volumes"
    root.mkdir()
    os.chmod(tmp_path, 0o755)
    return Volumes(root)


@pytest.fixture
def container(podman: Podman, image: str, volumes: Volumes, request):
    box = Container(podman, f"hushdrop-test-{os.getpid()}-{request.node.name[:40].replace('[', '-').replace(']', '')}", volumes)
    box.remove()
    yield box
    box.remove()


def pytest_terminal_summary(terminalreporter) -> None:
    if FACTS:
        terminalreporter.section("hushdrop image")
        for key, value in FACTS.items():
            terminalreporter.write_line(f"{key}: {value}")
