"""`workers: auto`: the rule that sizes the local pool from the cores, the memory and each engine's figure.

The machine is described, not measured (a :class:`Machine` of a given core count, memory and
CUDA); everything else — the config, the engines' memory figures, a model file on disk — is real.
"""

from __future__ import annotations

import os

from hushdrop.pipeline.config import parse_config
from hushdrop.pipeline.engines import ENGINES
from hushdrop.pipeline.watch.sizing import WATCHER_RESERVE_BYTES, Machine, resolve_workers

GB = 10**9


def machine(cores: int, memory_gb: float, cuda: bool = False) -> Machine:
    return Machine(cores=cores, available_memory=int(memory_gb * GB), cuda=cuda)


def auto_settings(tmp_path, **profile):
    return parse_config({"workers": "auto", "profiles": {"default": profile}}, tmp_path / "c.yaml")


def whisper_base_bytes() -> int:
    return ENGINES["whisper"].worker_memory("base")


def test_auto_on_cpu_gives_one_single_threaded_worker_per_core(tmp_path):
    plan = resolve_workers(auto_settings(tmp_path), machine(cores=2, memory_gb=8))
    assert (plan.count, plan.threads) == (2, 1)
    fits = (8 * GB - WATCHER_RESERVE_BYTES) // whisper_base_bytes()
    assert plan.describe() == (
        f"workers: auto → 2 (2 cores; memory for {fits} (8.0 GB available, "
        f"~{whisper_base_bytes() / GB:.2f} GB per worker); 1 thread each)"
    )
    plan = resolve_workers(auto_settings(tmp_path), machine(cores=6, memory_gb=64))
    assert (plan.count, plan.threads) == (6, 1)


def test_auto_is_bounded_by_memory_and_shares_the_cores(tmp_path):
    two_fit = (WATCHER_RESERVE_BYTES + 2.5 * whisper_base_bytes()) / GB  # room for two workers and a half
    plan = resolve_workers(auto_settings(tmp_path), machine(cores=8, memory_gb=two_fit))
    assert (plan.count, plan.threads) == (2, 4)
    assert f"8 cores, but memory for 2 ({two_fit:.1f} GB available" in plan.describe()
    assert plan.describe().endswith("; 4 threads each)")
    none_fit = (WATCHER_RESERVE_BYTES + 0.5 * whisper_base_bytes()) / GB  # not even one: one anyway, with every core
    plan = resolve_workers(auto_settings(tmp_path), machine(cores=4, memory_gb=none_fit))
    assert (plan.count, plan.threads) == (1, 4)
    assert "memory for 0" in plan.describe() and "one anyway" in plan.describe()


def test_auto_on_cuda_is_one_worker(tmp_path):
    gpu = machine(cores=16, memory_gb=64, cuda=True)
    plan = resolve_workers(auto_settings(tmp_path), gpu)
    assert (plan.count, plan.threads) == (1, None)
    assert plan.describe() == "workers: auto → 1 (the model runs on CUDA: one worker per GPU)"
    # a profile forced onto the CPU on a machine with a GPU: the CPU rule
    cpu = auto_settings(tmp_path, chain=["resample", {"transcribe": {"device": "cpu"}}])
    assert resolve_workers(cpu, gpu).count == 16


def test_auto_counts_each_engines_model_once_per_worker(tmp_path):
    own = tmp_path / "my-model"
    own.mkdir()
    with open(own / "model.bin", "wb") as f:  # a sparse 1.5 GB model
        f.truncate(int(1.5 * GB))
    per_worker = ENGINES["whisper"].worker_memory(str(own))
    assert per_worker > int(1.5 * GB), "a model of one's own counts its model.bin on top of the runtime"
    settings = auto_settings(tmp_path, chain=["resample", {"transcribe": {"model": str(own)}}])
    memory_gb = (WATCHER_RESERVE_BYTES + 3.5 * per_worker) / GB
    assert resolve_workers(settings, machine(cores=8, memory_gb=memory_gb)).count == 3
    # a second profile with another engine: each worker holds both models
    both = parse_config(
        {"workers": "auto", "profiles": {
            "default": {},
            "same-model": {"language": "de"},  # the same model again: counted once
            "qwen": {"chain": ["resample", {"transcribe": {"engine": "qwen3-asr", "model": str(own)}}]},
        }},
        tmp_path / "c.yaml",
    )
    both_bytes = whisper_base_bytes() + ENGINES["qwen3-asr"].worker_memory(str(own))
    memory_gb = (WATCHER_RESERVE_BYTES + 1.5 * both_bytes) / GB
    plan = resolve_workers(both, machine(cores=8, memory_gb=memory_gb))
    assert plan.count == 1
    assert f"~{both_bytes / GB:.2f} GB per worker" in plan.describe()


def test_a_number_stays_as_configured(tmp_path):
    settings = parse_config({"workers": 3}, tmp_path / "c.yaml")
    plan = resolve_workers(settings, machine(cores=2, memory_gb=8))
    assert (plan.count, plan.threads, plan.describe()) == (3, None, "workers: 3 (as configured)")
    assert plan.apply(settings).profile("default").transcribe_options().cpu_threads == 0


def test_auto_gives_threads_only_where_the_profile_left_them_to_the_library(tmp_path):
    settings = parse_config(
        {"workers": "auto", "profiles": {"default": {}, "mine": {"chain": ["resample", {"transcribe": {"cpu_threads": 3}}]}}},
        tmp_path / "c.yaml",
    )
    memory_gb = (WATCHER_RESERVE_BYTES + 2.5 * whisper_base_bytes()) / GB
    resolved = resolve_workers(settings, machine(cores=8, memory_gb=memory_gb)).apply(settings)
    assert resolved.workers == 2
    # each worker's 4 cores: 4 pieces of a long recording at once, one thread each …
    default = resolved.profile("default").transcribe_options()
    assert (default.concurrent_pieces, default.cpu_threads) == (4, 1)
    # … or, where the profile chose 3 threads, one piece on them
    mine = resolved.profile("mine").transcribe_options()
    assert (mine.concurrent_pieces, mine.cpu_threads) == (1, 3)
    assert settings.workers == "auto" and settings.profile("default").transcribe_options().cpu_threads == 0


def sized(tmp_path, workers, cores: int, cuda: bool = False, **transcribe):
    settings = parse_config(
        {"workers": workers, "profiles": {"default": {"chain": ["resample", {"transcribe": transcribe}]}}}, tmp_path / "c.yaml"
    )
    plan = resolve_workers(settings, machine(cores=cores, memory_gb=64, cuda=cuda))
    options = plan.apply(settings).profile("default").transcribe_options()
    return (options.concurrent_pieces, options.cpu_threads), plan.describe_pieces(settings)


def test_pieces_share_each_workers_cores_and_never_oversubscribe(tmp_path):
    assert sized(tmp_path, 1, cores=2)[0] == (2, 1)  # the shipped config on this machine
    assert sized(tmp_path, 1, cores=2)[1] == (
        "a long recording: up to 2 pieces at once per worker, 1 thread each (transcribe: concurrent_pieces)"
    )
    assert sized(tmp_path, 2, cores=2) == ((1, 0), "a long recording: one piece at a time")  # threads as before
    assert sized(tmp_path, 2, cores=8)[0] == (4, 1)
    assert sized(tmp_path, 1, cores=8, concurrent_pieces=2)[0] == (2, 4)
    assert sized(tmp_path, 1, cores=8, cpu_threads=2)[0] == (4, 2)
    for workers, cores in ((1, 2), (2, 8), (3, 16), (4, 6)):
        (pieces, threads), _ = sized(tmp_path, workers, cores=cores)
        assert workers * pieces * max(1, threads) <= cores


def test_pieces_are_a_cpu_measure_of_engines_that_can(tmp_path):
    assert sized(tmp_path, 1, cores=8, cuda=True)[0] == (1, 0)  # a GPU runs one call on all its cores
    assert sized(tmp_path, 1, cores=8, cuda=True, device="cpu")[0] == (8, 1)
    assert sized(tmp_path, 1, cores=8, engine="qwen3-asr", model="qwen3-asr-0.6b")[0] == (1, 0)  # it batches instead


def test_this_machine_is_measured():
    here = Machine.here()
    assert 1 <= here.cores <= (os.cpu_count() or 1)
    assert here.available_memory > 0
    assert isinstance(here.cuda, bool)


def test_config_check_shows_what_auto_resolves_to(tmp_path, monkeypatch, capsys):
    from hushdrop.pipeline import cli

    monkeypatch.setattr(Machine, "here", classmethod(lambda cls: machine(cores=4, memory_gb=16)))
    path = tmp_path / "config.yaml"
    path.write_text("workers: auto\n")
    assert cli.main(["--config", str(path), "config", "check"]) == 0
    fits = (16 * GB - WATCHER_RESERVE_BYTES) // whisper_base_bytes()
    out = capsys.readouterr().out
    assert f"workers: auto → 4 (4 cores; memory for {fits} (16.0 GB available" in out
    assert "a long recording: one piece at a time" in out  # 4 workers on 4 cores: one core each
    path.write_text("workers: 2\n")
    assert cli.main(["--config", str(path), "config", "check"]) == 0
    assert "workers: 2 (as configured)" in capsys.readouterr().out



def test_a_process_that_runs_one_recording_gives_it_every_core(tmp_path):
    """`hushdrop run` and a remote `hushdrop worker` (to the profile the coordinator sends, too)."""
    from hushdrop.pipeline.config import profile_document, profile_from_document
    from hushdrop.pipeline.watch.sizing import one_process, one_process_plan

    settings = parse_config({"workers": 3, "profiles": {"default": {}}}, tmp_path / "c.yaml")
    options = one_process(settings, machine(cores=4, memory_gb=8)).profile("default").transcribe_options()
    assert (options.concurrent_pieces, options.cpu_threads) == (4, 1)
    sent = profile_from_document(profile_document(settings.profile("default")))  # as a task carries it: auto
    assert sent.transcribe_options().concurrent_pieces == "auto"
    mine = one_process_plan(settings, machine(cores=6, memory_gb=8)).apply_profile(sent).transcribe_options()
    assert (mine.concurrent_pieces, mine.cpu_threads) == (6, 1)
