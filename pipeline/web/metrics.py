"""``/metrics``: what the ledger and the catalog know, in Prometheus's text format.

Every figure is read when Prometheus asks (a custom collector), so the web server and the
watcher need not share memory, and the numbers survive restarts: rows are never deleted
from the ledger. No label carries a file name.

- ``hushdrop_jobs_total{outcome}``: finished jobs — ``done`` (transcribed), ``duplicate``
  (same content as an earlier job), ``quarantined``, ``abandoned``;
- ``hushdrop_job_duration_seconds``: histogram of done jobs' processing time (a worker
  taking it → outputs committed and original retired);
- ``hushdrop_stage_duration_seconds{stage}``: histogram of each stage's seconds, from the
  JSON outputs (``decode`` is the fused ffmpeg run);
- ``hushdrop_audio_seconds_total``: audio transcribed, in seconds;
- ``hushdrop_queue_jobs{state}``: jobs in each unfinished state;
- ``hushdrop_oldest_queued_job_age_seconds``: how long the oldest waiting job has waited;
- ``hushdrop_workers``: worker processes ready (0 when the watcher is not running);
- ``hushdrop_quarantine_bytes`` / ``hushdrop_quarantine_files``: what quarantine holds
  (bytes of recordings and notes; recordings), read from the folder;
- ``hushdrop_build_info{version,python}``: 1.
"""

from __future__ import annotations

import platform
import time
from typing import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

from hushdrop.pipeline.config import Settings
from hushdrop.pipeline.logs import log
from hushdrop.pipeline.watch import quarantine
from hushdrop.pipeline.watch.ledger import Ledger, State
from hushdrop.pipeline.job import hushdrop_version
from hushdrop.pipeline.web.catalog import Catalog, CatalogUnavailable

JOB_BUCKETS = (1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0)
STAGE_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0)
QUEUE_STATES = (State.SEEN, State.CLAIMED, State.PROCESSING, State.COMMITTED, State.FAILED)


def watcher_running(settings: Settings, service: dict) -> bool:
    beat = service.get("heartbeat_at")
    return bool(beat) and not service.get("stopped_at") and time.time() - beat < 3 * settings.heartbeat_seconds + 2


class LedgerCollector(Collector):
    def __init__(self, settings: Settings, ledger: Ledger, catalog: Catalog):
        self.settings = settings
        self.ledger = ledger
        self.catalog = catalog

    def collect(self) -> Iterator:
        ledger = self.ledger
        counts = ledger.counts()
        try:  # a damaged catalog heals itself; one that is busy or unwritable leaves out its two figures
            self.catalog.sync(ledger)
            stage_figures = self.catalog.stage_histogram(STAGE_BUCKETS)
            audio_seconds: float | None = self.catalog.audio_seconds()
        except CatalogUnavailable as exc:
            log().warning("/metrics without stage and audio figures: %s", exc)
            stage_figures, audio_seconds = {}, None

        outcomes = CounterMetricFamily("hushdrop_jobs", "Finished jobs by outcome", labels=["outcome"])
        duplicates = int(ledger._read("SELECT COUNT(*) FROM jobs WHERE state = ? AND duplicate_of IS NOT NULL", (State.DONE,))[0][0])
        outcomes.add_metric(["done"], counts.get(State.DONE, 0) - duplicates)
        outcomes.add_metric(["duplicate"], duplicates)
        outcomes.add_metric(["quarantined"], counts.get(State.QUARANTINED, 0))
        outcomes.add_metric(["abandoned"], counts.get(State.ABANDONED, 0))
        yield outcomes

        columns = ", ".join(f"SUM(d <= {b!r})" for b in JOB_BUCKETS)
        row = ledger._read(
            f"SELECT {columns}, COUNT(*), COALESCE(SUM(d), 0) FROM (SELECT finished_at - started_at AS d FROM jobs"
            " WHERE state = ? AND duplicate_of IS NULL AND started_at IS NOT NULL AND finished_at IS NOT NULL)",
            (State.DONE,),
        )[0]
        count, total = int(row[-2]), float(row[-1])
        buckets = [(str(b), int(v or 0)) for b, v in zip(JOB_BUCKETS, row[: len(JOB_BUCKETS)], strict=True)] + [("+Inf", count)]
        jobs = HistogramMetricFamily("hushdrop_job_duration_seconds", "Processing time of done jobs, seconds")
        jobs.add_metric([], buckets, total)
        yield jobs

        stages = HistogramMetricFamily(
            "hushdrop_stage_duration_seconds", "Seconds each stage took per job", labels=["stage"]
        )
        for stage, (cumulative, n, seconds) in stage_figures.items():
            stages.add_metric(
                [stage], [(str(b), c) for b, c in zip(STAGE_BUCKETS, cumulative, strict=True)] + [("+Inf", n)], seconds
            )
        yield stages

        if audio_seconds is not None:
            audio = CounterMetricFamily("hushdrop_audio_seconds", "Audio transcribed, seconds")
            audio.add_metric([], audio_seconds)
            yield audio

        queue = GaugeMetricFamily("hushdrop_queue_jobs", "Unfinished jobs by state", labels=["state"])
        for state in QUEUE_STATES:
            queue.add_metric([state], counts.get(state, 0))
        yield queue

        oldest = ledger._read("SELECT MIN(created_at) FROM jobs WHERE state IN (?, ?)", (State.CLAIMED, State.FAILED))[0][0]
        yield GaugeMetricFamily(
            "hushdrop_oldest_queued_job_age_seconds", "Age of the oldest job waiting for a worker, seconds",
            value=max(0.0, time.time() - oldest) if oldest else 0.0,
        )

        service = ledger.facts.all()
        ready = [w for w in service.get("workers") or [] if w.get("ready")] if watcher_running(self.settings, service) else []
        yield GaugeMetricFamily("hushdrop_workers", "Worker processes ready to transcribe", value=len(ready))

        try:
            held = quarantine.usage(self.settings)
        except OSError as exc:
            log().warning("/metrics cannot read the quarantine folder: %s", exc.strerror or exc)
        else:
            yield GaugeMetricFamily("hushdrop_quarantine_bytes", "Bytes in quarantine (recordings and their notes)", value=held.bytes)
            yield GaugeMetricFamily("hushdrop_quarantine_files", "Recordings in quarantine", value=held.files)

        info = GaugeMetricFamily("hushdrop_build_info", "hushdrop's version", labels=["version", "python"])
        info.add_metric([hushdrop_version(), platform.python_version()], 1)
        yield info
