"""Plain helpers the tests share: real audio made with real ffmpeg, real configs.

Test modules import them from here; tests/conftest.py holds the fixtures (and uses these).
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import numpy as np
import soundfile

from hushdrop.pipeline.audio import ffmpeg_exe
from hushdrop.pipeline.config import Settings, parse_config

DATA = Path(__file__).parent / "data"
SPEECH_EN = DATA / "speech_en.wav"
SPEECH_EN_TEXT = (DATA / "speech_en.txt").read_text()
SPEECH_DE = DATA / "speech_de.wav"  # German speech (speech_de.txt)

# words of speech_de.txt that no English sentence has, and English words a translation of it is
# bound to hold some of (Whisper base gets several of them right, not all)
GERMAN_ONLY = {"und", "ist", "ich", "mit", "wir", "meine", "meinem", "heute", "zusammen", "kaufe", "gehe", "das", "eine"}
ENGLISH_CONTENT = {
    "morning", "today", "weather", "warm", "nice", "park", "dog", "bread", "milk", "apples", "apple",
    "supermarket", "sister", "evening", "eat", "dinner", "cook", "soup", "potatoes", "carrots",
}


def lower_words(text: str) -> set[str]:
    """The distinct words of ``text``, lower-cased, German letters included."""
    return set(re.findall(r"[a-zäöüß]+", text.lower()))


def words(text: str) -> list[str]:
    return re.sub(r"[^a-z' ]", " ", text.lower()).split()


def wer(reference: str, hypothesis: str) -> float:
    """Word error rate after lower-casing and dropping punctuation."""
    import jiwer

    return jiwer.wer(" ".join(words(reference)), " ".join(words(hypothesis)))


def ffmpeg(*args: str) -> None:
    """Run the same ffmpeg hushdrop uses; fail the test with its message if it fails."""
    proc = subprocess.run([ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y", *args], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def write_wav(path: Path, samples: np.ndarray, rate: int) -> Path:
    soundfile.write(path, np.asarray(samples, dtype=np.float32), rate, subtype="FLOAT")
    return path


def tone(freq: float, seconds: float, rate: int = 48000, amplitude: float = 0.3) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def load_speech(rate: int = 16000) -> np.ndarray:
    samples, sr = soundfile.read(SPEECH_EN, dtype="float32")
    assert sr == rate, "speech_en.wav is 16 kHz; resample in the test if you need another rate"
    return samples


def make_settings(root: Path, **profile_overrides) -> Settings:
    """A real config rooted in ``root`` (inbox/, outbox/, .hushdrop/), parsed like config.yaml."""
    profile = {"originals": "shred", **profile_overrides}
    return parse_config({"profiles": {"default": profile}}, root / "config.yaml")


def fake_ffmpeg(tmp_path: Path, body: str, name: str = "fake-ffmpeg") -> str:
    """A shell script standing in for a broken or limited ffmpeg; ``$REAL`` runs the real one."""
    import stat

    script = tmp_path / name
    script.write_text(f"#!/bin/sh\nREAL='{ffmpeg_exe()}'\n{body}\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return str(script)


def run_chain(path: Path, rate: int, stages, tmp_path: Path):
    """Run ``stages`` on ``path`` with real ffmpeg; returns (samples, rate, job)."""
    from hushdrop.pipeline.audio import Audio
    from hushdrop.pipeline.job import Job
    from hushdrop.pipeline.chain import Chain

    work = tmp_path / "work"
    work.mkdir(exist_ok=True)
    job = Job(source=path)
    job.audio = Audio(source=path, workdir=work, source_rate=rate)
    Chain(stages).run(job)
    samples, out_rate = job.audio.samples()
    return np.array(samples), out_rate, job


def snr_against(clean: np.ndarray, processed: np.ndarray) -> float:
    return 10 * np.log10(np.sum(clean.astype(np.float64) ** 2) / np.sum((processed - clean).astype(np.float64) ** 2))


def import_graph() -> dict[str, set[str]]:
    """Every module of hushdrop (``hushdrop.pipeline…``, ``hushdrop.stages…``) and the hushdrop
    modules it imports anywhere in its file, inside functions too: a late import that dodges a
    circle is still a circle."""
    import ast

    root = Path(__file__).resolve().parent.parent
    files = {}
    for top in ("pipeline", "stages"):
        for path in (root / top).rglob("*.py"):
            parts = path.relative_to(root).with_suffix("").parts
            files[".".join(("hushdrop", *(parts[:-1] if parts[-1] == "__init__" else parts)))] = path
    graph: dict[str, set[str]] = {}
    for module, path in files.items():
        imported = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                names = [f"{node.module}.{alias.name}" for alias in node.names]
            else:
                continue
            for name in names:
                while name and name not in files:
                    name = name.rpartition(".")[0]
                if name and name != module:
                    imported.add(name)
        graph[module] = imported
    return graph


def reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    """The modules ``start`` imports, directly or through others."""
    seen: set[str] = set()
    todo = [start]
    while todo:
        for name in graph[todo.pop()] - seen:
            seen.add(name)
            todo.append(name)
    return seen
