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
    assert resolved.profile("default").transcribe_options().cpu_threads == 4
    assert resolved.profile("mine").transcribe_options().cpu_threads == 3
    assert settings.workers == "auto" and settings.profile("default").transcribe_options().cpu_threads == 0


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
    assert f"workers: auto → 4 (4 cores; memory for {fits} (16.0 GB available" in capsys.readouterr().out
    path.write_text("workers: 2\n")
    assert cli.main(["--config", str(path), "config", "check"]) == 0
    assert "workers: 2 (as configured)" in capsys.readouterr().out

