"""``workers: auto``: how many local worker processes this machine can run, and why.

On CUDA one worker: a second would hold a second copy of the model in the same GPU's
memory and compete for the same GPU. On CPU as many workers as there are cores, each
single-threaded (for many short recordings that beats one worker using every core:
docs/benchmarks.md), but no more than the available memory holds after a reserve for
the watcher, and at least one. What one worker holds is each engine's own figure
(``EngineEntry.worker_memory``), summed over the distinct models of every profile,
since a worker loads each of them once.

Within a worker, its share of the cores goes to pieces of one long recording decoded at
once on the one loaded model (``concurrent_pieces: auto``, where the engine can: on a CPU),
one thread each, so that one recording uses every core a worker has (docs/benchmarks.md).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict

from hushdrop.pipeline.config import MAX_WORKERS, Profile, Settings, StageSpec
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
    """How many local worker processes `watch` starts, and why (``workers`` or ``workers: auto``);
    and how each worker shares its cores between pieces of one long recording."""

    model_config = ConfigDict(frozen=True)

    count: int
    auto: bool
    reason: str
    threads: int | None = None  # auto on CPU: cpu_threads each worker's engine gets where a profile leaves it at 0
    cores: int = 1  # the machine's cores this plan shares out
    cuda: bool = False

    @property
    def cores_each(self) -> int:
        return max(1, self.cores // self.count)

    def describe(self) -> str:
        if not self.auto:
            return f"workers: {self.count} (as configured)"
        return f"workers: auto → {self.count} ({self.reason})"

    def pieces_for(self, options) -> tuple[int, int]:
        """(pieces at once, cpu_threads) for a transcribe stage's options under this plan.

        ``concurrent_pieces: auto`` gives each worker's share of the cores to pieces of a long
        recording, one thread each, where the engine can decode pieces side by side on a CPU;
        elsewhere one piece, and the threads as before. workers × pieces × threads ≤ cores.
        """
        on_cpu = options.device == "cpu" or (options.device == "auto" and not self.cuda)
        if options.concurrent_pieces != "auto":
            pieces = options.concurrent_pieces
        elif on_cpu and engine_for(options.engine).concurrent_pieces:
            pieces = max(1, self.cores_each // max(1, options.cpu_threads))
        else:
            pieces = 1
        if options.cpu_threads:
            return pieces, options.cpu_threads
        if pieces > 1:
            return pieces, max(1, self.cores_each // pieces)
        return pieces, self.threads or 0

    def describe_pieces(self, settings: Settings) -> str:
        """What the default profile's engine does with a long recording under this plan."""
        profile = settings.profiles.get("default") or next(iter(settings.profiles.values()))
        pieces, threads = self.pieces_for(profile.transcribe_options())
        if pieces == 1:
            return "a long recording: one piece at a time"
        each = f"{threads} thread{'s' if threads > 1 else ''} each" if threads else "the library's threads each"
        return f"a long recording: up to {pieces} pieces at once per worker, {each} (transcribe: concurrent_pieces)"

    def apply_profile(self, profile: Profile) -> Profile:
        """``profile`` with its transcribe stage's ``concurrent_pieces: auto`` and ``cpu_threads: 0``
        (the library's choice) given this plan's share of the cores."""
        chain = []
        for s in profile.chain:
            if s.name == "transcribe":
                pieces, threads = self.pieces_for(s.options)
                s = StageSpec(name=s.name, options=s.options.model_copy(update={"concurrent_pieces": pieces, "cpu_threads": threads}))
            chain.append(s)
        return profile.model_copy(update={"chain": chain})

    def apply(self, settings: Settings) -> Settings:
        """``settings`` with ``workers`` set to the number, and every profile as :meth:`apply_profile` has it."""
        profiles = {name: self.apply_profile(profile) for name, profile in settings.profiles.items()}
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
    machine = machine or Machine.here()
    if settings.workers != "auto":
        return WorkerPlan(count=int(settings.workers), auto=False, reason="as configured", cores=machine.cores, cuda=machine.cuda)
    per_worker, on_cuda = worker_memory(settings, machine)
    if on_cuda:
        return WorkerPlan(count=1, auto=True, reason="the model runs on CUDA: one worker per GPU", cores=machine.cores, cuda=True)
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
    return WorkerPlan(count=count, auto=True, reason=why, threads=threads, cores=cores, cuda=machine.cuda)


def one_process_plan(settings: Settings, machine: Machine | None = None) -> WorkerPlan:
    """The plan of a process that runs one recording at a time itself (`hushdrop run`, a remote
    `hushdrop worker`, the benchmarks): one worker, so every core goes to pieces of the recording."""
    return resolve_workers(settings.model_copy(update={"workers": 1}), machine)


def one_process(settings: Settings, machine: Machine | None = None) -> Settings:
    """``settings`` as :func:`one_process_plan` shares the cores out."""
    return one_process_plan(settings, machine).apply(settings)
