"""What a user installs: a runtime without torch, exact pins, a license, a systemd unit.

The default whisper path must run where neither torch nor transformers is installed
(`make run` installs neither; they are the `qwen3` extra). The test venv has both, so
these tests check the runtime path in a subprocess that cannot import them.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tomllib
import wave
from importlib import metadata
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
LOCK = REPO / "constraints.txt"
UNIT = REPO / "contrib" / "hushdrop.service"
SPEECH_EN = REPO / "tests" / "data" / "speech_en.wav"
HEAVY = ("torch", "transformers")


def _name(requirement: str) -> str:
    """The normalised project name of a requirement string (PEP 503)."""
    match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement)
    assert match, requirement
    return re.sub(r"[-_.]+", "-", match.group(1)).lower()


def _lock() -> dict[str, str]:
    pins: dict[str, str] = {}
    for line in LOCK.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        match = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)==([A-Za-z0-9.!+_-]+)", line)
        assert match, f"constraints.txt: {line!r} is not an exact `name==version` pin"
        pins[_name(match.group(1))] = match.group(2)
    return pins


def _python(code: str, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        cwd=REPO, capture_output=True, text=True, timeout=timeout,
        env={**os.environ, "COLUMNS": "200"},
    )


# --------------------------------------------------------------------------- dependencies


def test_runtime_dependencies_leave_torch_and_transformers_to_the_qwen3_extra():
    runtime = {_name(r) for r in PYPROJECT["project"]["dependencies"]}
    extras = PYPROJECT["project"]["optional-dependencies"]
    assert not runtime & set(HEAVY), "the default whisper path needs neither torch nor transformers"
    assert {_name(r) for r in extras["qwen3"]} >= set(HEAVY)


def test_every_declared_dependency_is_pinned_exactly_in_the_lock():
    pins = _lock()
    declared = list(PYPROJECT["project"]["dependencies"])
    for requirements in PYPROJECT["project"]["optional-dependencies"].values():
        declared += requirements
    missing = sorted({_name(r) for r in declared} - set(pins))
    assert not missing, f"constraints.txt lacks {missing}: run `make lock` after changing pyproject.toml"
    assert "+" not in pins["torch"], "torch is pinned without a local label, so the CPU and CUDA builds both match"


def test_installed_versions_are_the_locked_ones():
    """What `make test` (and CI) installed is what constraints.txt says, so users get what was tested."""
    pins = _lock()
    wrong = []
    for dist in metadata.distributions():
        name = _name(dist.metadata["Name"])
        if name in pins and dist.version.split("+")[0] != pins[name]:
            wrong.append(f"{name} {dist.version} (locked {pins[name]})")
    assert not wrong, f"installed versions differ from constraints.txt: {wrong}; `make test` reinstalls from the lock"


def test_every_package_folder_is_installed_under_the_hushdrop_name():
    """pipeline/ and stages/ install as hushdrop.pipeline / hushdrop.stages, each listed by hand."""
    setuptools = PYPROJECT["tool"]["setuptools"]
    folders = {
        "hushdrop." + ".".join(init.parent.relative_to(REPO).parts)
        for top in ("pipeline", "stages")
        for init in (REPO / top).rglob("__init__.py")
    }
    assert set(setuptools["packages"]) == folders
    assert setuptools["package-dir"] == {"hushdrop.pipeline": "pipeline", "hushdrop.stages": "stages"}
    assert PYPROJECT["project"]["scripts"]["hushdrop"].startswith("hushdrop.pipeline.")


def test_a_bare_top_level_pipeline_or_stages_is_refused():
    """Importing the folders as bare `pipeline`/`stages` would load a second copy of every module."""
    for bare in ("pipeline", "stages"):
        proc = subprocess.run([sys.executable, "-c", f"import {bare}"], cwd=REPO, capture_output=True, text=True)
        assert proc.returncode != 0
        assert f"imported as hushdrop.{bare}" in proc.stderr, proc.stderr


def test_make_run_installs_no_torch():
    make = shutil.which("make")
    if make is None:
        pytest.skip("make is not installed")
    dry = subprocess.run(
        [make, "-n", "-B", "install", "VENV=/nonexistent/venv"], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert dry.returncode == 0, dry.stderr
    assert "--constraint constraints.txt" in dry.stdout
    assert "torch" not in dry.stdout and "qwen3" not in dry.stdout, dry.stdout
    dry = subprocess.run(
        [make, "-n", "-B", "install-test", "VENV=/nonexistent/venv"], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert dry.returncode == 0, dry.stderr
    assert "torch==" in dry.stdout and ".[qwen3,test]" in dry.stdout, dry.stdout


# --------------------------------------------------------------------------- the runtime path

# What `hushdrop run` and `hushdrop watch` import with the shipped config.yaml (whisper
# chain), up to a loaded model: none of it may import torch or transformers, even where
# they are installed.
_IMPORTS = """
import sys
from hushdrop.pipeline.cli import main, stay_offline
stay_offline()
import hushdrop.stages  # noqa: F401  (the registry, as the CLI loads it)
from hushdrop.pipeline.config import load_config
from hushdrop.pipeline.process import Processor
from hushdrop.pipeline.watch import service, executor, scheduler, watcher
from hushdrop.pipeline.chain import Chain
settings = load_config("config.yaml")
for profile in settings.profiles.values():
    chain = Chain([spec.build() for spec in profile.chain])
chain = Chain([spec.build() for spec in settings.profile("default").chain])
chain.open()  # loads the bundled Whisper model
chain.close()
heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "transformers"))
print("HEAVY", heavy[:5])
"""


def test_the_default_whisper_path_imports_neither_torch_nor_transformers():
    proc = _python(_IMPORTS)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "HEAVY []" in proc.stdout, proc.stdout + proc.stderr[-3000:]


# The same interpreter with torch and transformers made unimportable, as in a runtime-only
# install: `hushdrop run` transcribes through the whole default chain, denoise included
# (denoise's gate needs neither).
_BLOCKED_RUN = """
import sys


class NotInstalled:
    \"\"\"`import torch` fails as where it is not installed (ModuleNotFoundError), and leaves no trace in sys.modules.\"\"\"

    @staticmethod
    def find_spec(name, path=None, target=None):
        if name.split(".")[0] in ("torch", "transformers"):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None


sys.meta_path.insert(0, NotInstalled)
from hushdrop.pipeline.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_hushdrop_run_transcribes_with_torch_and_transformers_absent(tmp_path):
    clip = tmp_path / "clip.wav"
    with wave.open(str(SPEECH_EN)) as src, wave.open(str(clip), "wb") as dst:
        dst.setparams(src.getparams())
        dst.writeframes(src.readframes(src.getframerate() * 8))  # "Good morning everyone. ..."
    with (REPO / "config.yaml").open() as f:
        chain = yaml.safe_load(f)["profiles"]["default"]["chain"]
    chain = [{"denoise": {"mode": "always"}} if "denoise" in (s if isinstance(s, dict) else {s: None}) else s for s in chain]
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"profiles": {"default": {"chain": chain, "language": "en", "originals": "keep"}}}))
    proc = _python(_BLOCKED_RUN, "--config", str(config), "run", "--keep", str(clip))
    assert proc.returncode == 0, proc.stdout + proc.stderr[-3000:]
    text = (tmp_path / "outbox" / "default" / "clip.txt").read_text().lower()
    assert "morning" in text, text
    assert clip.exists()


# --------------------------------------------------------------------------- license


def test_license_is_the_mit_license_pyproject_declares():
    assert PYPROJECT["project"]["license"] == "MIT"
    text = (REPO / "LICENSE").read_text()
    assert text.startswith("MIT License") and "Permission is hereby granted, free of charge" in text


# --------------------------------------------------------------------------- systemd


def _verify(unit: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["systemd-analyze", "verify", "--man=no", str(unit)], capture_output=True, text=True, timeout=120
    )


def _installed_unit(tmp_path: Path, text: str) -> Path:
    """The unit as shipped, but starting this checkout's hushdrop (verify checks ExecStart= exists)."""
    hushdrop = Path(sys.executable).parent / "hushdrop"
    if not os.access(hushdrop, os.X_OK):
        pytest.skip(f"no hushdrop script beside {sys.executable} (install with `make install`)")
    shipped = "ExecStart=/opt/hushdrop/.venv/bin/hushdrop watch"
    assert shipped in text
    unit = tmp_path / "hushdrop.service"
    unit.write_text(text.replace(shipped, f"ExecStart={hushdrop} watch"))
    return unit


def _complaints(proc: subprocess.CompletedProcess, unit: Path) -> list[str]:
    return [line for line in (proc.stdout + proc.stderr).splitlines() if unit.name in line]


def test_systemd_unit_passes_systemd_analyze_verify(tmp_path):
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed (Debian: apt-get install systemd); the unit is not checked")
    text = UNIT.read_text()
    unit = _installed_unit(tmp_path, text)
    proc = _verify(unit)
    assert proc.returncode == 0 and not _complaints(proc, unit), proc.stdout + proc.stderr
    # the check is real: a misspelt key in the same unit is reported
    bad = tmp_path / "bad" / "hushdrop.service"
    bad.parent.mkdir()
    bad.write_text(unit.read_text().replace("KillMode=", "KillMod="))
    assert _complaints(_verify(bad), bad), "systemd-analyze verify reported nothing for an unknown key"


def test_systemd_unit_and_readme_agree():
    text = UNIT.read_text()
    readme = (REPO / "README.md").read_text()
    assert "## Run as a service (systemd)" in readme
    assert "contrib/hushdrop.service" in readme
    for line in ("ExecStart=/opt/hushdrop/.venv/bin/hushdrop watch", "PrivateNetwork=yes", "RestartPreventExitStatus=2"):
        assert line in text
    # the stop timeout leaves room for the default shutdown grace
    from hushdrop.pipeline.config import Settings

    grace = Settings.model_fields["shutdown_grace_seconds"].default
    stop = int(re.search(r"^TimeoutStopSec=(\d+)$", text, re.M).group(1))
    assert stop > grace + 10
