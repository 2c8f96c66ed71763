"""``workers: auto``: how many local worker processes this machine can run, and why.

On CUDA one worker: a second would hold a second copy of the model in the same GPU's
memory and compete for the same GPU. On CPU as many workers as there are cores, each
single-threaded (for many short recordings that beats one worker using every core:
docs/benchmarks.md), but no more than the available memory holds after a reserve for
the watcher, and at least one. What one worker holds is each engine's own figure
(``EngineEntry.worker_memory``), summed over the distinct models of every profile,
since a worker loads each of them once.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict

from hushdrop.pipeline.config import MAX_WORKERS, Settings, StageSpec
from hushdrop.pipeline.engines import engine_for

WATCHER_RESERVE_BYTES = 500 * 10**6  # the watcher itself and some room for the rest of the machine


@dataclass(frozen=True)
class Machine:
    """What the sizing rule asks of the machine it runs on."""

    cores: int  # the cores this process may run on
    available_memory: int  # bytes that new processes may take without swapping
    cuda: bool  # whether a model left on ``device: auto`` would run on CUDA

    @classmethod
    def here(cls) -> "Machine":
        """This machine: its CPU affinity (so a container's or taskset's limit counts), psutil's
        ``available`` memory, and whether CTranslate2 sees a CUDA device."""
        import psutil

        from hushdrop.pipeline.engines.whisper import cuda_available

        try:
            cores = max(1, len(os.sched_getaffinity(0)))
        except (AttributeError, OSError):
            cores = max(1, os.cpu_count() or 1)
        return cls(cores=cores, available_memory=int(psutil.virtual_memory().available), cuda=cuda_available())


class WorkerPlan(BaseModel):
    """How many local worker processes `watch` starts, and why (``workers`` or ``workers: auto``)."""

    model_config = ConfigDict(frozen=True)

    count: int
    auto: bool
    reason: str
    threads: int | None = None  # auto on CPU: cpu_threads each worker's engine gets where a profile leaves it at 0

    def describe(self) -> str:
        if not self.auto:
            return f"workers: {self.count} (as configured)"
        return f"workers: auto → {self.count} ({self.reason})"

    def apply(self, settings: Settings) -> Settings:
        """``settings`` with ``workers`` set to the number, and each transcribe stage that leaves
        ``cpu_threads`` at 0 (the library's choice) given this plan's share of the cores."""
        profiles = settings.profiles
        if self.threads:
            profiles = {}
            for name, profile in settings.profiles.items():
                chain = [
                    StageSpec(name=s.name, options=s.options.model_copy(update={"cpu_threads": self.threads}))
                    if s.name == "transcribe" and getattr(s.options, "cpu_threads", None) == 0 else s
                    for s in profile.chain
                ]
                profiles[name] = profile.model_copy(update={"chain": chain})
        return settings.model_copy(update={"workers": self.count, "profiles": profiles})


def worker_memory(settings: Settings, machine: Machine) -> tuple[int, bool]:
    """Bytes one worker holds once it has run every profile's chain (each distinct model is
    loaded once per worker), and whether any of those models runs on CUDA."""
    total, on_cuda, seen = 0, False, set()
    for profile in settings.profiles.values():
        o = profile.transcribe_options()
        key = (o.engine, o.model, o.device, o.compute_type)
        if key in seen:
            continue
        seen.add(key)
        if o.device == "cuda" or (o.device == "auto" and machine.cuda):
            on_cuda = True
        total += engine_for(o.engine).worker_memory(o.model)
    return total, on_cuda


def resolve_workers(settings: Settings, machine: Machine | None = None) -> WorkerPlan:
    """``workers`` as a number, with the reason when it is ``auto`` (``machine``: this one by default)."""
    if settings.workers != "auto":
        return WorkerPlan(count=int(settings.workers), auto=False, reason="as configured")
    machine = machine or Machine.here()
    per_worker, on_cuda = worker_memory(settings, machine)
    if on_cuda:
        return WorkerPlan(count=1, auto=True, reason="the model runs on CUDA: one worker per GPU")
    cores, available = machine.cores, machine.available_memory
    by_memory = max(0, (available - WATCHER_RESERVE_BYTES) // per_worker)
    count = max(1, min(cores, by_memory, MAX_WORKERS))
    threads = max(1, cores // count)
    memory = f"memory for {by_memory} ({available / 1e9:.1f} GB available, ~{per_worker / 1e9:.2f} GB per worker)"
    if count < cores and by_memory < cores:
        why = f"{cores} cores, but {memory}"
        if by_memory == 0:
            why += "; one anyway"
    else:
        why = f"{cores} cores; {memory}"
    why += f"; {threads} thread{'s' if threads > 1 else ''} each"
    return WorkerPlan(count=count, auto=True, reason=why, threads=threads)
