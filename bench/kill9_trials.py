"""kill -9 the watcher at random moments while it works, many times; check nothing is lost or doubled.

Each trial drops new recordings (before and while the watcher runs), starts
``hushdrop watch``, kills it with SIGKILL after a random delay (during start-up,
intake, transcription, commit or shredding — wherever it happens to be), and then:

1. right after the kill: every recording dropped so far is either still waiting
   (byte-identical, in the inbox or the spool) or has a complete output set;
2. after recovery (the first thing ``hushdrop watch`` does on start, run here on its
   own so the check cannot race the next jobs): every recording is either waiting
   or done (complete outputs, original gone); no partial output set, no duplicate
   set ("name (2)"), no temp file, no temp audio, nothing quarantined.

After the last trial a final run drains everything and stops with SIGTERM; then
every recording must have exactly one complete output set and no original may remain.

    .venv/bin/python -m bench.kill9_trials --trials 25
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import struct
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tests.harness import FORMATS, WatchRun, base_config, cheap_wav, wait_for  # noqa: E402

SPEECH = REPO / "tests" / "data" / "speech_en.wav"


def speech_variant(seed: int) -> bytes:
    """The English clip with one sample nudged: real speech, a unique hash."""
    data = bytearray(SPEECH.read_bytes())
    position = 44 + 2 * (1000 + seed)  # inside the PCM data
    data[position] ^= 1
    return bytes(data)


def bulky_wav(seed: int, junk_mib: int = 96) -> bytes:
    """Half a second of quiet audio behind a large RIFF ``JUNK`` chunk (which decoders skip):
    cheap to transcribe, but hashing it at the claim and shredding it take long enough
    for a kill to land inside those steps."""
    wav = cheap_wav(seed)
    fmt_end = 12 + 8 + struct.unpack("<I", wav[16:20])[0]
    junk = b"JUNK" + struct.pack("<I", junk_mib << 20) + os.urandom(16) + bytes((junk_mib << 20) - 16)
    return wav[:4] + struct.pack("<I", len(wav) - 8 + len(junk)) + wav[8:fmt_end] + junk + wav[fmt_end:]


@dataclass
class Report:
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


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def check(run: WatchRun, dropped: dict[str, bytes], strict: bool) -> list[str]:
    """The invariants; ``strict`` after recovery (no partial, no in-between states)."""
    problems = []
    sets = run.output_sets()
    spool = {}
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
    import os

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


def run_trials(trials: int, root: Path, seed: int = 1, per_trial: int = 10, log=print) -> Report:
    rng = random.Random(seed)
    run = WatchRun(root, base_config(queue_limit=8, profile={"settle_seconds": 0.5}))
    report = Report()
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
        problems = [f"trial {trial} after kill: {p}" for p in check(run, dropped, strict=False)]
        recover_now(run)
        problems += [f"trial {trial} after recovery: {p}" for p in check(run, dropped, strict=True)]
        report.problems += problems
        report.trials = trial
        done = sum(1 for s in (j["state"] for j in run.jobs()) if s == "done")
        log(f"trial {trial:2d}: killed after {delay:4.1f} s, {len(dropped)} dropped, {done} done, "
            f"{'OK' if not problems else problems}")
    # drain: everything must end processed exactly once
    run.start()
    wait_for(lambda: sum(1 for j in run.jobs() if j["state"] == "done") >= len(dropped), 900, "the backlog", interval=0.5)
    run.stop()
    final = check(run, dropped, strict=True)
    sets = run.output_sets()
    for name in dropped:
        if Path(name).stem not in sets:
            final.append(f"{name}: no outputs after the final run")
    done_names = [j["name"] for j in run.jobs() if j["state"] == "done"]
    if sorted(done_names) != sorted(dropped):
        final.append(f"done jobs {len(done_names)} != dropped {len(dropped)} (or some twice)")
    leftovers = [p for p in run.inbox.iterdir()] + run.spool_files()
    if leftovers:
        final.append(f"originals left after the final run: {leftovers}")
    quarantined = [j["name"] for j in run.jobs() if j["state"] == "quarantined"]
    if quarantined:
        final.append(f"quarantined: {quarantined}")
    report.problems += [f"final: {p}" for p in final]
    report.files = len(dropped)
    report.seconds = time.monotonic() - started
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=25)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--keep", action="store_true", help="keep the temp folder for inspection")
    args = parser.parse_args(argv)
    root = Path(tempfile.mkdtemp(prefix="hushdrop-kill9-"))
    report = run_trials(args.trials, root / "site", seed=args.seed)
    print(json.dumps(report.as_dict(), indent=2))
    if not args.keep:
        import shutil

        shutil.rmtree(root, ignore_errors=True)
    else:
        print(f"kept {root}")
    return 0 if not report.problems else 1


if __name__ == "__main__":
    sys.exit(main())
