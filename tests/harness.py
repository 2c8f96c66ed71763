"""The shared test harness: real ``hushdrop`` processes on temp configs, and cheap real audio.

Tests and benchmarks both import it from here (never from a conftest or from each other):
``WatchRun`` runs a real ``hushdrop watch`` subprocess on a temp config and reads its
ledger and folders; ``hushdrop()`` runs any other command; ``wait_for`` polls a condition
instead of sleeping a fixed time. ``kill9_trials`` and ``watcher_rss`` are the long
watch-mode checks, shared by tests/integration/test_watch_slow.py and the bench scripts
that print their reports (bench/kill9_trials.py, bench/watch_rss.py).

The direction is one-way: bench imports this module; tests import bench only to test bench's
own code (tests/test_bench_report.py), never for a helper.
"""

from __future__ import annotations

import hashlib
import io
import os
import signal
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import soundfile
import yaml

REPO = Path(__file__).resolve().parents[1]
FORMATS = ("txt", "srt", "vtt", "json", "md")


def wait_for(condition: Callable[[], Any], timeout: float, what: str, interval: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def cheap_wav(seed: int, seconds: float = 0.5) -> bytes:
    """A short, quiet, unique recording: the real chain runs on it in a fraction of a second
    (voice-activity detection finds no speech, so the engine is not even asked)."""
    rng = np.random.default_rng(seed)
    samples = (rng.standard_normal(int(16000 * seconds)) * 1e-4).astype(np.float32)
    buffer = io.BytesIO()
    soundfile.write(buffer, samples, 16000, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class WatchRun:
    """A temp hushdrop installation: config, inbox, outbox, workdir, and its watcher process."""

    def __init__(self, root: Path, config: dict):
        self.root = root
        self.config = config
        self.config_path = root / "config.yaml"
        root.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(yaml.safe_dump(config))
        self.inbox = root / "inbox"
        self.outbox = root / "outbox"
        self.workdir = root / ".hushdrop"
        self.proc: subprocess.Popen | None = None
        self.logs: list[Path] = []

    # -- the process ----------------------------------------------------------------

    def start(self, *extra: str, wait_ready: bool = True) -> "WatchRun":
        log = self.root / f"watch-{len(self.logs) + 1}.log"
        self.logs.append(log)
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        with open(log, "wb") as stream:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "hushdrop.pipeline.cli", "--config", str(self.config_path), "watch", *extra],
                cwd=REPO, stdout=stream, stderr=subprocess.STDOUT, env=env,
            )
        if wait_ready:
            wait_for(lambda: "ready:" in self.log_text() or self._dead(), 90, "the worker to load the model")
            assert self.proc.poll() is None, self.log_text()
        return self

    def _dead(self) -> bool:
        return self.proc is not None and self.proc.poll() is not None

    def log_text(self) -> str:
        return self.logs[-1].read_text(errors="replace") if self.logs else ""

    def all_logs(self) -> str:
        return "\n".join(p.read_text(errors="replace") for p in self.logs)

    def stop(self, timeout: float = 60) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout)
        self.wait_children_gone()
        return code

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(10)
        self.wait_children_gone()

    def wait_children_gone(self) -> None:
        """Workers die with the watcher (PR_SET_PDEATHSIG); make sure before the next start."""
        pid = self.proc.pid if self.proc else None
        if pid is None:
            return

        def gone() -> bool:
            for entry in Path("/proc").iterdir():
                if entry.name.isdigit():
                    try:
                        status = (entry / "status").read_text()
                    except OSError:
                        continue
                    if f"\nPPid:\t{pid}\n" in status and "State:\tZ" not in status:
                        return False
            return True

        wait_for(gone, 20, "worker processes to exit")

    # -- what is on disk ---------------------------------------------------------------

    def jobs(self) -> list[dict]:
        path = self.workdir / "ledger.sqlite3"
        if not path.exists():
            return []
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
        db.row_factory = sqlite3.Row
        try:
            # names and paths are stored as the filesystem's bytes
            return [
                {k: os.fsdecode(v) if isinstance(v, bytes) else v for k, v in dict(r).items()}
                for r in db.execute("SELECT * FROM jobs ORDER BY id")
            ]
        except sqlite3.OperationalError:
            return []
        finally:
            db.close()

    def service(self) -> dict:
        import json

        path = self.workdir / "ledger.sqlite3"
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
        try:
            return {k: json.loads(v) for k, v in db.execute("SELECT key, value FROM service")}
        except sqlite3.OperationalError:
            return {}
        finally:
            db.close()

    def done_names(self, profile: str | None = None) -> list[str]:
        return [j["name"] for j in self.jobs() if j["state"] == "done" and (profile is None or j["profile"] == profile)]

    def outputs(self, profile: str = "default") -> list[Path]:
        folder = self.outbox / profile
        return sorted(folder.iterdir()) if folder.is_dir() else []

    def output_sets(self, profile: str = "default") -> dict[str, set[str]]:
        """stem → formats present (visible files only)."""
        sets: dict[str, set[str]] = {}
        for path in self.outputs(profile):
            if path.name.startswith("."):
                continue
            stem, _, fmt = path.name.rpartition(".")
            sets.setdefault(stem, set()).add(fmt)
        return sets

    def temp_files(self) -> list[Path]:
        found = []
        for base in (self.outbox, self.workdir / "quarantine", self.workdir / "tmp", self.workdir / "spool"):
            if base.is_dir():
                found += [p for p in base.rglob("*") if p.name.startswith(".") or p.parent.name.startswith("job-")]
        return found

    def spool_files(self) -> list[Path]:
        spool = self.workdir / "spool"
        return [p for p in spool.rglob("*") if p.is_file()] if spool.is_dir() else []

    def drop(self, name: str, data: bytes, folder: str = "") -> Path:
        target = self.inbox / folder / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        return target


def base_config(**top: Any) -> dict:
    profile = top.pop("profile", {})
    profiles = top.pop("profiles", {})
    return {
        "workers": 1,
        "poll_seconds": 0.5,
        "rescan_seconds": 30,
        "heartbeat_seconds": 1,
        "retry_backoff_seconds": 0.5,
        "shutdown_grace_seconds": 30,
        **top,
        "profiles": {"default": {"settle_seconds": 1, "originals": "shred", **profile}, **profiles},
    }


def make_config(root: Path, originals: str = "shred") -> Path:
    config = root / "config.yaml"
    config.write_text(yaml.safe_dump({"profiles": {"default": {"originals": originals}}}))
    return config


def hushdrop(
    config: Path, *args: str, prefix: tuple[str, ...] = (), timeout: float = 600, env: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess:
    """Run the real ``hushdrop`` CLI with ``config`` (``env``: the whole environment, default this one's)."""
    env = {**(os.environ if env is None else env), "COLUMNS": "200"}
    return subprocess.run(
        [*prefix, sys.executable, "-m", "hushdrop.pipeline.cli", "--config", str(config), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        cwd=REPO,
    )


# A `hushdrop` whose sockets refuse to connect and count every attempt (it prints
# NETWORK_ATTEMPTS n on stderr): proof that a command makes no network connection.
NO_NETWORK = """
import socket, sys
attempts = []
def refuse(*args, **kwargs):
    attempts.append(args)
    raise OSError("network use is forbidden in this test")
socket.socket.connect = refuse
socket.socket.connect_ex = refuse
socket.create_connection = refuse
socket.getaddrinfo = refuse
from hushdrop.pipeline.cli import main
code = main(sys.argv[1:])
print("NETWORK_ATTEMPTS", len(attempts), file=sys.stderr)
sys.exit(code)
"""


def hushdrop_offline(config: Path, *args: str, env: Mapping[str, str], timeout: float = 600) -> subprocess.CompletedProcess:
    """``hushdrop --config CONFIG ARGS`` under :data:`NO_NETWORK`, with exactly ``env``."""
    return subprocess.run(
        [sys.executable, "-c", NO_NETWORK, "--config", str(config), *args],
        capture_output=True, text=True, timeout=timeout, env=dict(env), cwd=REPO,
    )


# -- long watch-mode trials: kill -9 at random moments, memory over many files -----------
# tests/integration/test_watch_slow.py asserts on them; bench/kill9_trials.py and
# bench/watch_rss.py are their command lines, so the notes and the tests share one code path.

SPEECH = REPO / "tests" / "data" / "speech_en.wav"


def speech_variant(seed: int) -> bytes:
    """The English clip with one sample nudged: real speech, a unique hash."""
    data = bytearray(SPEECH.read_bytes())
    position = 44 + 2 * (1000 + seed)  # inside the PCM data
    data[position] ^= 1
    return bytes(data)


def speech_clip(seed: int, seconds: float) -> bytes:
    """The first ``seconds`` of the English clip with one sample nudged: real speech, a unique hash.
    Longer than the clip (32 s), the clip is said again and again to fill them."""
    samples, rate = soundfile.read(SPEECH, dtype="int16")
    wanted = int(seconds * rate)
    samples = np.tile(samples, -(-wanted // len(samples)))[:wanted].copy()
    samples[seed % len(samples)] ^= 1
    buffer = io.BytesIO()
    soundfile.write(buffer, samples, rate, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


def bulky_wav(seed: int, junk_mib: int = 96) -> bytes:
    """Half a second of quiet audio behind a large RIFF ``JUNK`` chunk (which decoders skip):
    cheap to transcribe, but hashing it at the claim and shredding it take long enough
    for a kill to land inside those steps."""
    import struct

    wav = cheap_wav(seed)
    fmt_end = 12 + 8 + struct.unpack("<I", wav[16:20])[0]
    junk = b"JUNK" + struct.pack("<I", junk_mib << 20) + os.urandom(16) + bytes((junk_mib << 20) - 16)
    return wav[:4] + struct.pack("<I", len(wav) - 8 + len(junk)) + wav[8:fmt_end] + junk + wav[fmt_end:]


@dataclass
class TrialReport:
    trials: int = 0
    files: int = 0
    problems: list[str] = field(default_factory=list)
    kill_states: dict[str, int] = field(default_factory=dict)  # what the ledger said at each kill
    caught: dict[str, int] = field(default_factory=dict)  # half-done work found right after kills
    seconds: float = 0.0

    def as_dict(self) -> dict:
        return {
            "trials": self.trials, "files": self.files, "problems": self.problems,
            "jobs_by_state_at_kills": self.kill_states, "found_after_kills": self.caught,
            "seconds": round(self.seconds, 1),
        }


def check_nothing_lost(run: WatchRun, dropped: dict[str, bytes], strict: bool) -> list[str]:
    """What breaks the kill -9 invariants; ``strict`` after recovery (no partial, no in-between states).

    Every recording dropped is either still waiting (byte-identical, in the inbox or the
    spool) or has a complete output set; no output set is doubled ("name (2)").
    """
    problems = []
    sets = run.output_sets()
    spool: dict[str, list[bytes]] = {}
    for path in run.spool_files():
        if not path.name.startswith("."):
            spool.setdefault(path.name, []).append(path.read_bytes())
    for stem, formats in sets.items():
        if strict and formats != set(FORMATS):
            problems.append(f"partial output set {stem}: {sorted(formats)}")
        if " (" in stem:
            problems.append(f"duplicate output set {stem}")
    for name, data in dropped.items():
        stem = Path(name).stem
        waiting = (run.inbox / name).exists() and (run.inbox / name).read_bytes() == data
        waiting |= data in spool.get(name, [])
        complete = sets.get(stem) == set(FORMATS)
        if not waiting and not complete:
            problems.append(f"{name}: neither waiting nor complete outputs (LOST)")
        if strict and complete and (waiting or name in spool):
            problems.append(f"{name}: outputs complete but the original is still there after recovery")
    if strict:
        temps = run.temp_files()
        if temps:
            problems.append(f"temp files left: {[str(p) for p in temps]}")
        states = {j["state"] for j in run.jobs()}
        if states - {"claimed", "done", "abandoned", "failed"}:
            problems.append(f"jobs in unexpected states after recovery: {states}")
    return problems


def recover_now(run: WatchRun) -> None:
    """Exactly what ``hushdrop watch`` runs first on start, holding the same workdir lock."""
    from hushdrop.pipeline.config import load_config
    from hushdrop.pipeline.watch.ledger import Ledger
    from hushdrop.pipeline.watch.recovery import recover
    from hushdrop.pipeline.watch.service import lock_workdir

    settings = load_config(run.config_path)
    fd = lock_workdir(settings)
    try:
        ledger = Ledger(settings.ledger_path)
        recover(settings, ledger)
        ledger.close()
    finally:
        os.close(fd)


def kill9_trials(trials: int, root: Path, seed: int = 1, per_trial: int = 10, log: Callable[[str], Any] = print) -> TrialReport:
    """Start ``hushdrop watch``, drop recordings, SIGKILL it after a random delay, check, recover, check; repeat.

    After the last trial a final run drains everything and stops with SIGTERM; then every
    recording must have exactly one complete output set and no original may remain.
    """
    import random

    rng = random.Random(seed)
    run = WatchRun(root, base_config(queue_limit=8, profile={"settle_seconds": 0.5}))
    report = TrialReport()
    dropped: dict[str, bytes] = {}
    serial = 0
    started = time.monotonic()

    def drop_some(count: int) -> None:
        nonlocal serial
        for _ in range(count):
            serial += 1
            name = f"rec-{serial:04d}.wav"
            if serial % 20 == 0:
                data = speech_variant(serial)  # a real transcription to interrupt
            elif serial % 3 == 0:
                data = bulky_wav(serial)  # long claim hash and long shred to interrupt
            else:
                data = cheap_wav(serial)
            run.drop(name, data)
            dropped[name] = data

    for trial in range(1, trials + 1):
        drop_some(per_trial // 2)
        run.start(wait_ready=False)
        # the kill lands wherever the watcher happens to be: a random moment is the point
        delay = rng.uniform(1.0, 15.0)
        time.sleep(delay / 2)
        drop_some(per_trial - per_trial // 2)
        time.sleep(delay / 2)
        run.kill9()
        states = [j["state"] for j in run.jobs()]
        for state in states:
            report.kill_states[state] = report.kill_states.get(state, 0) + 1
        found = {
            "partial_output_sets": sum(1 for f in run.output_sets().values() if f != set(FORMATS)),
            "temp_files": len(run.temp_files()),
            "interrupted_claims": states.count("seen"),
            "committed_not_retired": states.count("committed"),
            "running_jobs": states.count("processing"),
        }
        for key, value in found.items():
            report.caught[key] = report.caught.get(key, 0) + value
        problems = [f"trial {trial} after kill: {p}" for p in check_nothing_lost(run, dropped, strict=False)]
        recover_now(run)
        problems += [f"trial {trial} after recovery: {p}" for p in check_nothing_lost(run, dropped, strict=True)]
        report.problems += problems
        report.trials = trial
        done = sum(1 for s in (j["state"] for j in run.jobs()) if s == "done")
        log(f"trial {trial:2d}: killed after {delay:4.1f} s, {len(dropped)} dropped, {done} done, "
            f"{'OK' if not problems else problems}")
    # drain: everything must end processed exactly once
    run.start()
    wait_for(lambda: sum(1 for j in run.jobs() if j["state"] == "done") >= len(dropped), 900, "the backlog", interval=0.5)
    run.stop()
    final = check_nothing_lost(run, dropped, strict=True)
    sets = run.output_sets()
    for name in dropped:
        if Path(name).stem not in sets:
            final.append(f"{name}: no outputs after the final run")
    done_names = [j["name"] for j in run.jobs() if j["state"] == "done"]
    if sorted(done_names) != sorted(dropped):
        final.append(f"done jobs {len(done_names)} != dropped {len(dropped)} (or some twice)")
    leftovers = list(run.inbox.iterdir()) + run.spool_files()
    if leftovers:
        final.append(f"originals left after the final run: {leftovers}")
    quarantined = [j["name"] for j in run.jobs() if j["state"] == "quarantined"]
    if quarantined:
        final.append(f"quarantined: {quarantined}")
    report.problems += [f"final: {p}" for p in final]
    report.files = len(dropped)
    report.seconds = time.monotonic() - started
    return report


def rss_mib(pid: int) -> float:
    import psutil

    return psutil.Process(pid).memory_info().rss / 2**20


def worker_rss_mib(pid: int) -> float:
    """The summed RSS of the watcher's worker processes (multiprocessing's spawn children)."""
    import psutil

    return sum(c.memory_info().rss for c in psutil.Process(pid).children() if "spawn_main" in " ".join(c.cmdline())) / 2**20


def watcher_rss(files: int, root: Path, warmup: int = 30, log: Callable[[str], Any] = print) -> dict:
    """RSS of a real watcher process after ``warmup`` small files and again after ``files`` more."""
    run = WatchRun(root, base_config(queue_limit=64, profile={"settle_seconds": 0.5}))
    run.start()
    pid = run.proc.pid

    def idle(count: int) -> Callable[[], bool]:
        # every file done (its original retired) and nothing left in the spool or temp folders
        return lambda: len(run.done_names()) == count and not run.spool_files() and not run.temp_files()

    for i in range(warmup):
        run.drop(f"warm-{i:03d}.wav", cheap_wav(100_000 + i))
    wait_for(idle(warmup), 300, "the warm-up files", interval=0.5)
    before, worker_before = rss_mib(pid), worker_rss_mib(pid)
    log(f"after {warmup} warm-up files: watcher {before:.1f} MiB, worker {worker_before:.1f} MiB")
    started = time.monotonic()
    for i in range(files):
        run.drop(f"small-{i:04d}.wav", cheap_wav(i))
    samples: list[float] = []
    marks: dict[int, float] = {}

    def finished() -> bool:
        samples.append(rss_mib(pid))
        done = len(run.done_names()) - warmup
        marks.setdefault(done // 100 * 100, samples[-1])
        return done == files

    wait_for(finished, 3600, f"{files} files", interval=1.0)
    seconds = time.monotonic() - started
    wait_for(idle(warmup + files), 60, "the last originals to be retired", interval=0.5)
    after, worker_after = rss_mib(pid), worker_rss_mib(pid)
    log(f"after {files} more files ({seconds:.0f} s): watcher {after:.1f} MiB (peak {max(samples):.1f}), worker {worker_after:.1f} MiB")
    run.stop()
    return {
        "files": files, "seconds": round(seconds, 1),
        "watcher_rss_mib_before": round(before, 1), "watcher_rss_mib_after": round(after, 1),
        "watcher_rss_mib_peak": round(max(samples), 1),
        "worker_rss_mib_before": round(worker_before, 1), "worker_rss_mib_after": round(worker_after, 1),
        "watcher_rss_mib_by_files_done": {k: round(v, 1) for k, v in sorted(marks.items())},
        "done": len(run.done_names()),
    }
