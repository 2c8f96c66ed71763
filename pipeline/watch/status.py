"""``hushdrop status``: what the watcher is doing, read from the ledger (never from the process).

The watcher writes a heartbeat into the ledger every ``heartbeat_seconds``; a
heartbeat older than three periods means it is not running (or hung).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from typing import Any

from hushdrop.pipeline.config import Settings
from hushdrop.pipeline.retention import retention_words
from hushdrop.pipeline.text import terminal_text
from hushdrop.pipeline.watch.ledger import WAITING, Ledger, State


def gpu_memory() -> list[dict[str, Any]]:
    """Used / total memory per GPU from nvidia-smi; empty where there is no NVIDIA GPU."""
    exe = shutil.which("nvidia-smi")
    if not exe:
        return []
    try:
        out = subprocess.run(
            [exe, "--query-gpu=index,name,memory.used,memory.total", "--format=csv,noheader,nounits"],
            capture_output=True, text=True, timeout=10, check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    gpus = []
    for line in out.strip().splitlines():
        index, name, used, total = [part.strip() for part in line.split(",")]
        gpus.append({"index": int(index), "name": name, "used_mib": int(used), "total_mib": int(total)})
    return gpus


def still_there(problems: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The intake problems the watcher last wrote, less those whose file or folder is gone since
    (the list is a snapshot: it outlives the files, and the watcher, when it stops)."""
    return [p for p in problems if isinstance(p, dict) and p.get("path") and os.path.lexists(p["path"])]


def quarantine_facts(settings: Settings) -> dict[str, Any] | None:
    """Bytes and recordings in quarantine, and its limits; None where the folder cannot be read."""
    from hushdrop.pipeline.watch.quarantine import describe, usage

    try:
        held = usage(settings)
    except OSError:
        return None
    return {"bytes": held.bytes, "files": held.files, "max_gb": settings.quarantine_max_gb,
            "max_days": settings.quarantine_max_days, "line": describe(settings, held)}


def collect(settings: Settings, recent: int = 5) -> dict[str, Any]:
    if not settings.ledger_path.exists():
        return {"running": False, "ledger": str(settings.ledger_path), "note": "no ledger yet: `hushdrop watch` has never run here"}
    ledger = Ledger(settings.ledger_path, readonly=True)
    try:
        service = ledger.facts.all()
        counts = ledger.counts()
        now = time.time()
        beat = service.get("heartbeat_at")
        running = bool(beat) and not service.get("stopped_at") and now - beat < 3 * settings.heartbeat_seconds + 2
        in_flight = [
            {
                "job": r.id, "name": r.name, "profile": r.profile, "stage": r.stage, "progress": r.chain_progress(),
                "worker": r.worker, "attempt": r.attempts, "seconds": round(now - (r.started_at or now), 1),
            }
            for r in ledger.in_state(State.PROCESSING)
        ]
        done = [
            {"job": r.id, "name": r.name, "profile": r.profile, "outputs": [str(p) for p in r.outputs],
             "duplicate_of": r.duplicate_of, "finished_at": r.finished_at, "original": retention_words(r.retention)}
            for r in ledger.in_state(State.DONE, limit=recent, newest_first=True)
        ]
        failed = [
            {"job": r.id, "name": r.name, "profile": r.profile, "state": r.state, "stage": r.error_stage,
             "error": r.error, "attempts": r.attempts, "quarantine": str(r.quarantine_path) if r.quarantine_path else None,
             "next_attempt_at": r.next_attempt_at, "environment": bool(r.env_failures) and r.state == State.FAILED}
            for r in ledger.in_state(State.FAILED, State.QUARANTINED, limit=recent, newest_first=True)
        ]
        waiting_on_environment = [
            {"job": r.id, "name": r.name, "stage": r.error_stage, "error": r.error, "failures": r.env_failures,
             "since": r.env_since, "next_attempt_at": r.next_attempt_at}
            for r in ledger.in_state(State.FAILED) if r.env_failures
        ]
    finally:
        ledger.close()
    workers = service.get("workers") or []
    for worker in workers:
        if worker.get("remote") and worker.get("t"):
            worker["heartbeat_age_s"] = round(now - worker["t"], 1)  # the worker's own presence beat
    devices = {w.get("device") for w in workers if w.get("device")}
    return {
        "running": running,
        "pid": service.get("pid") if running else None,
        "heartbeat_age_s": round(now - beat, 1) if beat else None,
        "watch_mode": service.get("watch_mode"),
        "inbox": service.get("inbox") or str(settings.inbox),
        "queue_depth": sum(counts.get(s, 0) for s in WAITING),
        "waiting_in_inbox": service.get("pending_in_inbox", 0),
        "intake_paused": service.get("intake_paused", False),
        "counts": counts,
        "workers": workers,
        "in_flight": in_flight,
        "recent_done": done,
        "recent_failed": failed,
        "waiting_on_environment": waiting_on_environment,
        "intake_problems": still_there(service.get("intake_problems") or []),
        "quarantine": quarantine_facts(settings),
        "gpu": gpu_memory() if "cuda" in devices else [],
    }


def render(status: dict[str, Any], console) -> None:
    """``status`` as lines for a person. Every value read from the ledger (names, errors,
    paths, worker names) is shown with its control and bidi characters as visible escapes
    and its markup escaped (:func:`pipeline.cli.shown`), so a recording's name cannot clear,
    retitle or reorder the admin's terminal."""
    from rich.table import Table

    from hushdrop.pipeline.cli import shown

    if "note" in status:
        console.print(status["note"])
        return
    if status["running"]:
        console.print(f"[green]●[/] watching {shown(status['inbox'])} ({shown(status['watch_mode'])}), pid {status['pid']}, "
                      f"heartbeat {status['heartbeat_age_s']} s ago")
    else:
        age = f"last heartbeat {status['heartbeat_age_s']} s ago" if status["heartbeat_age_s"] is not None else "never ran"
        console.print(f"[red]○[/] not running ({age})")
    counts = status["counts"]
    console.print(
        f"queue: {status['queue_depth']} waiting"
        + (f", {status['waiting_in_inbox']} settling in the inbox" if status["waiting_in_inbox"] else "")
        + (" (intake paused: queue full)" if status["intake_paused"] else "")
        + f" · done {counts.get('done', 0)} · quarantined {counts.get('quarantined', 0)} · failed (retrying) {counts.get('failed', 0)}"
    )
    if status.get("quarantine"):
        console.print(terminal_text(status["quarantine"]["line"]), markup=False)
    for worker in status["workers"]:
        model = f"{worker.get('engine', '?')} {worker.get('model', '?')} on {worker.get('device', '?')} ({worker.get('compute_type', '?')})"
        if worker.get("remote"):
            doing = f"job {worker['job']} ({worker.get('stage') or 'starting'})" if worker.get("job") else "idle"
            console.print(terminal_text(
                f"  {worker['name']} on {worker.get('host', '?')}, queues {','.join(worker.get('queues', []))}: {doing}; "
                f"{model}; heartbeat {worker.get('heartbeat_age_s', '?')} s ago"), markup=False,
            )
            continue
        console.print(f"  {shown(worker['name'])} pid {shown(worker['pid'])}: {shown(model) if worker.get('ready') else 'loading…'}")
    for gpu in status["gpu"]:
        console.print(f"  GPU {gpu['index']} {shown(gpu['name'])}: {gpu['used_mib']} / {gpu['total_mib']} MiB")
    if status["in_flight"]:
        table = Table("job", "file", "profile", "stage", "progress", "running")
        for j in status["in_flight"]:
            table.add_row(str(j["job"]), shown(j["name"]), shown(j["profile"]), shown(j["stage"] or "starting"),
                          f"{(j['progress'] or 0):.0%}", f"{j['seconds']} s")
        console.print(table)
    if status["recent_done"]:
        console.print("recently done:")
        for j in status["recent_done"]:
            dup = f" (same content as job {j['duplicate_of']})" if j["duplicate_of"] else ""
            first = j["outputs"][0] if j["outputs"] else ""
            console.print(f"  {j['job']} {shown(j['name'])} → {shown(first)}{dup}")
    if status["waiting_on_environment"]:
        console.print("[red]waiting on the machine[/] (not the recordings' fault; see `hushdrop doctor`):")
        for j in status["waiting_on_environment"]:
            console.print(terminal_text(f"  {j['job']} {j['name']}: {j['stage']}: {j['error']} (failed {j['failures']} time(s))"),
                          markup=False)
    if status["intake_problems"]:
        console.print("[yellow]left in the inbox[/]:")
        for problem in status["intake_problems"]:
            console.print(terminal_text(f"  {problem['path']}: {problem['reason']}"), markup=False)
    if status["recent_failed"]:
        console.print("recently failed:")
        for j in status["recent_failed"]:
            if j["quarantine"]:
                where = f" → {shown(j['quarantine'])}"
            elif j["state"] == State.QUARANTINED:
                where = " (set aside; its recording has since been deleted or sent back to the inbox)"
            else:
                where = " (will retry)"
            console.print(f"  {j['job']} {shown(j['name'])}: {shown(j['stage'])}: {shown(j['error'])}{where}")
