"""Model load and first result: `hushdrop watch` start → ready, copy end → transcript of a 10 s
clip (settle separate), the per-job overhead outside the chain, and `hushdrop run` start-up.

    .venv/bin/python -m bench.first_result --samples 5 --startup 3

Watch (``tests/harness.WatchRun``: the real ``hushdrop watch`` subprocess, ``workers: 1``, the
``default`` chain, JSON logs so every line has a millisecond time stamp):

- **start → ready**: from just before the process is started to the log lines that say the
  watcher is watching and the worker has loaded the model.
- **first result**: a 10 s English clip (tests/data/speech_en.wav, one sample nudged so every
  copy is new) is copied into the inbox in 64 KiB writes; from the end of the copy to the moment
  every output (txt, srt, vtt, json, md) is in the outbox, split by the ledger's time stamps and
  the job's stage records into: settle + claim (copy end → ``claimed_at``), claim → worker start
  (``started_at``), the chain (sum of the job's stage records), worker start + chain end →
  outputs committed (the newest output file's mtime), and retiring the original after that
  (→ ``finished_at``). **Overhead outside the chain** = claim → outputs committed − the chain.
  The first copy after start is reported apart (a fresh worker's first decode), the rest as a
  median.

Start-up: fresh processes, each running what ``hushdrop run`` runs on a 2 s clip, with time
stamps: interpreter start, imports (the CLI module and the processor), build + open the chain
(model load), the job, exit; and the plain ``hushdrop run`` command timed from outside.
``--importtime`` adds ``python -X importtime``'s import seconds summed per top-level package.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tests.harness import FORMATS, WatchRun, base_config, speech_clip, wait_for  # noqa: E402

CHILD = r"""
import json, sys, time
t_python = time.time()
from pathlib import Path
from hushdrop.pipeline.cli import stay_offline
stay_offline()
from hushdrop.pipeline.config import load_config
from hushdrop.pipeline.process import Processor
t_imports = time.time()
settings = load_config(sys.argv[1])
profile = settings.profile("default")
processor = Processor(settings)
processor.chain(profile)
t_loaded = time.time()
processor.process(Path(sys.argv[2]), profile)
t_job = time.time()
processor.close()
print("RESULT " + json.dumps({"python": t_python, "imports": t_imports, "loaded": t_loaded, "job": t_job}), flush=True)
"""


def log_times(run: WatchRun) -> dict[str, float]:
    """Time stamps of the start-up lines of a JSON log."""
    found: dict[str, float] = {}
    for line in run.log_text().splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        msg = rec.get("msg", "")
        found.setdefault("first_line", rec["ts"])
        if msg.startswith("workers:"):
            found.setdefault("workers_line", rec["ts"])
        if msg.startswith("hushdrop is watching"):
            found.setdefault("watching", rec["ts"])
        if " ready: " in msg:
            found.setdefault("worker_ready", rec["ts"])
    return found


def copy_in(data: bytes, target: Path) -> float:
    with open(target, "wb") as f:
        for k in range(0, len(data), 65536):
            f.write(data[k:k + 65536])
    return time.time()


def watch_run(samples: int, settle: float, root: Path) -> dict:
    run = WatchRun(root, base_config(workers=1, profile={"settle_seconds": settle}))
    spawned = time.time()
    run.start("--log-format", "json")
    wait_for(lambda: "worker_ready" in log_times(run), 120, "the worker's ready line")
    marks = log_times(run)
    startup = {k: round(v - spawned, 3) for k, v in marks.items()}
    jobs = []
    for i in range(samples):
        data = speech_clip(700 + i, 10.0)
        name = f"clip-{i}.wav"
        copy_end = copy_in(data, run.inbox / name)
        stem = Path(name).stem
        wait_for(lambda: run.output_sets().get(stem) == set(FORMATS), 120, f"the outputs of {name}", interval=0.01)
        seen_all = time.time()
        wait_for(lambda: name in run.done_names(), 60, f"{name} done", interval=0.05)
        job = next(j for j in run.jobs() if j["name"] == name)
        outputs = [run.outbox / "default" / f"{stem}.{fmt}" for fmt in FORMATS]
        committed = max(p.stat().st_mtime for p in outputs)
        doc = json.loads((run.outbox / "default" / f"{stem}.json").read_text())
        chain = sum(s["seconds"] for s in doc["stages"])
        jobs.append({
            "copy_end_to_outputs_s": round(committed - copy_end, 3),
            "copy_end_to_seen_s": round(seen_all - copy_end, 3),  # when this script saw them (10 ms polls)
            "settle_and_claim_s": round(job["claimed_at"] - copy_end, 3),
            "claim_to_worker_s": round(job["started_at"] - job["claimed_at"], 3),
            "chain_s": round(chain, 3),
            "stages_s": {s["name"]: round(s["seconds"], 3) for s in doc["stages"]},
            "worker_start_to_outputs_minus_chain_s": round(committed - job["started_at"] - chain, 3),
            "overhead_outside_chain_s": round(committed - job["claimed_at"] - chain, 3),
            "retire_original_s": round(job["finished_at"] - committed, 3),
        })
        print(json.dumps(jobs[-1]), flush=True)
        time.sleep(0.5)
    run.stop()
    return {"settle_seconds": settle, "startup_s": startup, "jobs": jobs}


def startup_runs(repeats: int, folder: Path, importtime: bool) -> dict:
    folder.mkdir(parents=True, exist_ok=True)
    config = folder / "config.yaml"
    config.write_text("profiles:\n  default:\n    originals: keep\n")
    clip = folder / "tiny.wav"
    clip.write_bytes(speech_clip(9, 2.0))
    phases, commands = [], []
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    for _ in range(repeats):
        t0 = time.time()
        proc = subprocess.run([sys.executable, "-c", CHILD, str(config), str(clip)], cwd=REPO, capture_output=True, text=True, env=env)
        t_end = time.time()
        line = next((x for x in proc.stdout.splitlines() if x.startswith("RESULT ")), None)
        if line is None:
            raise RuntimeError(proc.stderr[-3000:])
        t = json.loads(line[7:])
        phases.append({
            "interpreter_s": t["python"] - t0, "imports_s": t["imports"] - t["python"],
            "model_load_s": t["loaded"] - t["imports"], "startup_and_load_s": t["loaded"] - t0,
            "job_s": t["job"] - t["loaded"], "exit_s": t_end - t["job"], "process_s": t_end - t0,
        })
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "hushdrop.pipeline.cli", "--config", str(config), "run", str(clip)],
                       cwd=REPO, capture_output=True, text=True, env=env, check=True)
        commands.append(time.perf_counter() - t0)
    out = {
        "phases_median_s": {k: round(statistics.median(p[k] for p in phases), 3) for k in phases[0]},
        "phases": [{k: round(v, 3) for k, v in p.items()} for p in phases],
        "hushdrop_run_s": [round(x, 3) for x in commands],
    }
    if importtime:
        proc = subprocess.run([sys.executable, "-X", "importtime", "-c", CHILD, str(config), str(clip)],
                              cwd=REPO, capture_output=True, text=True, env=env)
        by_package: dict[str, float] = {}
        for line in proc.stderr.splitlines():
            if not line.startswith("import time:") or "cumulative" in line:
                continue
            own, _, name = line.removeprefix("import time:").split("|")
            top = name.strip().split(".")[0]
            by_package[top] = by_package.get(top, 0.0) + int(own) / 1e6
        out["imports_by_package_s"] = [[n, round(s, 3)] for n, s in sorted(by_package.items(), key=lambda x: -x[1])[:12]]
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--samples", type=int, default=5, help="10 s clips copied in, one after another")
    p.add_argument("--settle", type=float, default=1.0, help="settle_seconds (5 = the shipped default)")
    p.add_argument("--startup", type=int, default=3, help="fresh `hushdrop run` processes timed (0: skip)")
    p.add_argument("--importtime", action="store_true", help="also list the largest imports (python -X importtime)")
    args = p.parse_args(argv)
    results: dict = {"load_avg_start": os.getloadavg()}
    with tempfile.TemporaryDirectory(prefix="hushdrop-first-") as tmp:
        if args.samples:
            results["watch"] = watch_run(args.samples, args.settle, Path(tmp) / "watch")
            w = results["watch"]
            print("watch start-up (s after the process was started):", w["startup_s"], flush=True)
            first, rest = w["jobs"][0], w["jobs"][1:] or w["jobs"]
            for label, rows in (("first copy after start", [first]), (f"median of the next {len(rest)}", rest)):
                keys = [k for k in first if k != "stages_s"]
                print(label + ":", {k: round(statistics.median(r[k] for r in rows), 3) for k in keys}, flush=True)
        if args.startup:
            results["startup"] = startup_runs(args.startup, Path(tmp) / "startup", args.importtime)
            print("start-up, median:", results["startup"]["phases_median_s"], flush=True)
            print("`hushdrop run` on a 2 s clip, wall s:", results["startup"]["hushdrop_run_s"], flush=True)
            if "imports_by_package_s" in results["startup"]:
                print("import time by package (own s, summed):", results["startup"]["imports_by_package_s"], flush=True)
    results["load_avg_end"] = os.getloadavg()
    (REPO / "bench" / "results").mkdir(exist_ok=True)
    (REPO / "bench" / "results" / "first_result.json").write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
