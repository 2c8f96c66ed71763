"""How long an API request waits, on an idle service and behind a folder backlog, side by side.

One ``hushdrop watch`` (one worker, the bundled model, the shipped default profile's chain) with
the API on. Each sample sends the English clip (tests/data/speech_en.wav) to
``POST /v1/audio/transcriptions`` and times the answer:

- ``idle``: nothing else queued;
- ``backlog``: first ``--backlog`` folder files (the same clip, each a unique hash) are dropped
  into the inbox and the request is sent once one of them runs and the rest wait claimed.

The request's wait behind the backlog is compared with the length of one job run on its own;
with priority it waits for at most the one job already running (plus its own), never the queue.

    .venv/bin/python -m bench.api_latency --samples 3 --backlog 6
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from tests.api.service import start_api_service  # noqa: E402
from tests.harness import speech_variant, wait_for  # noqa: E402
from tests.helpers import SPEECH_EN  # noqa: E402


def ask(service, seed: int) -> float:
    started = time.perf_counter()
    answer = httpx.post(
        service.url + "/v1/audio/transcriptions", headers={"Authorization": f"Bearer {service.token}"},
        data={"model": "whisper-1"}, files={"file": (f"request-{seed}.wav", speech_variant(9000 + seed), "audio/wav")},
        timeout=900,
    )
    answer.raise_for_status()
    return time.perf_counter() - started


def idle(service) -> bool:
    return all(j["state"] in ("done", "quarantined", "abandoned") for j in service.run.jobs())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=3)
    parser.add_argument("--backlog", type=int, default=6)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="hushdrop-api-bench-") as tmp:
        service = start_api_service(Path(tmp) / "site")
        try:
            ask(service, 0)  # warm: the first decode of a worker is slower
            rows = []
            for sample in range(args.samples):
                quiet = ask(service, 1 + 2 * sample)
                names = [f"backlog-{sample}-{n}.wav" for n in range(args.backlog)]
                for n, name in enumerate(names):
                    service.run.drop(name, speech_variant(500 + 100 * sample + n))
                wait_for(lambda: sum(j["state"] == "processing" for j in service.run.jobs()) == 1
                         and sum(j["name"] in names and j["state"] == "claimed" for j in service.run.jobs()) >= args.backlog - 1,
                         120, "a running job and a claimed backlog")
                sent = time.time()
                busy = ask(service, 2 + 2 * sample)
                jobs = service.run.jobs()
                ahead = sum(1 for j in jobs if j["name"] in names and j["finished_at"] and sent < j["finished_at"] < sent + busy)
                wait_for(lambda: idle(service), 900, "the backlog")
                folder_runs = [j["finished_at"] - j["started_at"] for j in service.run.jobs() if j["name"] in names]
                rows.append({"idle_s": round(quiet, 2), "backlog_s": round(busy, 2), "one_job_s": round(statistics.median(folder_runs), 2),
                             "folder_jobs_finished_while_waiting": ahead, "backlog": args.backlog})
                print(json.dumps(rows[-1]), flush=True)
        finally:
            service.stop()
    idle_median = statistics.median(r["idle_s"] for r in rows)
    busy_median = statistics.median(r["backlog_s"] for r in rows)
    one_job = statistics.median(r["one_job_s"] for r in rows)
    print(json.dumps({
        "idle_median_s": round(idle_median, 2), "backlog_median_s": round(busy_median, 2), "one_job_median_s": round(one_job, 2),
        "backlog_over_idle": round(busy_median / idle_median, 2),
        "queue_time_if_fifo_s": round(args.backlog * one_job, 1),
        "max_folder_jobs_finished_while_waiting": max(r["folder_jobs_finished_while_waiting"] for r in rows),
    }, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
