"""What every benchmark shares: the held-out set, the two systems, scoring and the result cache.

The two systems
---------------
``chain``  the default profile of the repository's ``config.yaml`` run through
           ``pipeline.process.Processor.run_chain`` — the code ``hushdrop run`` runs
           (normalize → resample → dehum → denoise → transcribe → grammar → tag),
           without writing outputs or touching the file.
``bare``   the same Whisper base model object (the process's cached engine, CPU int8)
           with nothing before or after it: faster-whisper's own decoder
           (``decode_audio``: PyAV, 16 kHz mono) and ``WhisperModel.transcribe`` with
           faster-whisper's defaults — beam size 5 (the chain's too), language
           detection, ``condition_on_previous_text=True``, no word timestamps — plus
           ``vad_filter=True`` (its built-in Silero VAD), which is how faster-whisper
           documents transcribing real recordings.

Scoring
-------
Word error rate for space-delimited languages, character error rate (spaces
removed) for zh, yue, ja and ko, after Whisper's text normaliser (the English one
for en: case, punctuation, numbers, British/American spellings; the basic one
otherwise) and, for Chinese, traditional → simplified (OpenCC t2s) on both sides.
Rates are pooled: the errors of all clips in a group over their reference length.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import platform
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Iterable

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "bench" / "results"
CER_LANGUAGES = frozenset({"zh", "yue", "ja", "ko"})
SAMPLE_RATE = 16000


def heldout_dir() -> Path:
    """``../shared/heldout/`` beside the repository (``HUSHDROP_HELDOUT`` overrides)."""
    override = os.environ.get("HUSHDROP_HELDOUT")
    return Path(override).expanduser() if override else REPO.parent / "shared" / "heldout"


class HeldoutMissing(SystemExit):
    pass


def require_heldout() -> Path:
    path = heldout_dir()
    if not (path / "manifest.tsv").is_file():
        print(
            f"bench: the held-out set is not at {path} (expected manifest.tsv and audio/ there).\n"
            f"  It is read in place and never copied into the repository; put it at ../shared/heldout/\n"
            f"  beside the checkout or point HUSHDROP_HELDOUT at it.",
            file=sys.stderr,
        )
        raise HeldoutMissing(2)
    return path


# ---------------------------------------------------------------------------
# the held-out set


@dataclass(frozen=True)
class Clip:
    id: str
    path: Path
    language: str
    duration_s: float
    reference: str
    tier: str

    @property
    def metric(self) -> str:
        return "CER" if self.language in CER_LANGUAGES else "WER"


def load_manifest(languages: Iterable[str] | None = None) -> list[Clip]:
    root = require_heldout()
    wanted = set(languages) if languages else None
    clips = []
    with open(root / "manifest.tsv", encoding="utf-8", newline="") as f:
        for row in csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE):
            if wanted and row["language"] not in wanted:
                continue
            clips.append(
                Clip(
                    id=row["id"],
                    path=root / row["file"],
                    language=row["language"],
                    duration_s=float(row["duration_s"]),
                    reference=row["reference"],
                    tier=row["tier"],
                )
            )
    return clips


# ---------------------------------------------------------------------------
# scoring


@lru_cache(maxsize=1)
def _normalisers():
    from whisper_normalizer.basic import BasicTextNormalizer
    from whisper_normalizer.english import EnglishTextNormalizer
    import opencc

    return EnglishTextNormalizer(), BasicTextNormalizer(), opencc.OpenCC("t2s")


def normalise(text: str, language: str) -> str:
    english, basic, t2s = _normalisers()
    if language in ("zh", "yue"):
        text = t2s.convert(text)
    text = english(text) if language == "en" else basic(text)
    if language in CER_LANGUAGES:
        return "".join(text.split())
    return " ".join(text.split())


@dataclass
class Counts:
    """Edit operations against the reference, in words (WER) or characters (CER)."""

    ref: int = 0
    sub: int = 0
    dele: int = 0
    ins: int = 0
    clips: int = 0
    seconds: float = 0.0

    @property
    def errors(self) -> int:
        return self.sub + self.dele + self.ins

    @property
    def rate(self) -> float:
        return 100.0 * self.errors / self.ref if self.ref else float("nan")

    def __iadd__(self, other: "Counts") -> "Counts":
        self.ref += other.ref
        self.sub += other.sub
        self.dele += other.dele
        self.ins += other.ins
        self.clips += other.clips
        self.seconds += other.seconds
        return self


def score(reference: str, hypothesis: str, language: str, duration_s: float = 0.0) -> Counts:
    import jiwer

    ref = normalise(reference, language)
    hyp = normalise(hypothesis, language)
    if language in CER_LANGUAGES:
        ref_units, hyp_units = " ".join(ref), " ".join(hyp)
    else:
        ref_units, hyp_units = ref, hyp
    if not ref_units.strip():
        return Counts(ref=0, ins=len(hyp_units.split()), clips=1, seconds=duration_s)
    if not hyp_units.strip():
        return Counts(ref=len(ref_units.split()), dele=len(ref_units.split()), clips=1, seconds=duration_s)
    out = jiwer.process_words(ref_units, hyp_units)
    return Counts(
        ref=out.hits + out.substitutions + out.deletions,
        sub=out.substitutions,
        dele=out.deletions,
        ins=out.insertions,
        clips=1,
        seconds=duration_s,
    )


# ---------------------------------------------------------------------------
# the two systems


def _sources_digest(paths: Iterable[Path]) -> str:
    h = hashlib.sha256()
    for p in sorted(paths):
        h.update(p.name.encode())
        h.update(p.read_bytes())
    return h.hexdigest()


@dataclass
class Hypothesis:
    text: str
    language: str | None
    seconds: float
    notes: list[str] = field(default_factory=list)
    stages: dict[str, float] = field(default_factory=dict)


class ChainSystem:
    """The default profile of config.yaml, through the code ``hushdrop run`` runs."""

    name = "chain"

    def __init__(self, config: Path | None = None, profile: str = "default", chain: list | None = None,
                 pieces: int | str = "auto", cpu_threads: int = 0):
        """``chain`` replaces the profile's chain (YAML form), for ablations; ``pieces`` and
        ``cpu_threads``: the transcribe stage's (auto and 0: as `hushdrop run` settles them here)."""
        import yaml

        from hushdrop.pipeline.config import parse_config
        from hushdrop.pipeline.process import Processor
        from hushdrop.pipeline.watch.sizing import one_process

        self.config = config or REPO / "config.yaml"
        raw = yaml.safe_load(self.config.read_text(encoding="utf-8"))
        if chain is not None:
            raw["profiles"][profile]["chain"] = chain
        self._tmp = tempfile.TemporaryDirectory(prefix="hushdrop-bench-")
        raw["workdir"] = self._tmp.name  # private temp audio, never in the repository's .hushdrop
        for step in raw["profiles"][profile]["chain"]:
            if isinstance(step, dict) and "transcribe" in step:
                step["transcribe"] = {**(step["transcribe"] or {}), "concurrent_pieces": pieces, "cpu_threads": cpu_threads}
        settings = one_process(parse_config(raw, self.config))  # as `hushdrop run` runs it
        self.profile = settings.profiles[profile]
        self.processor = Processor(settings)

    def describe(self) -> dict:
        return {"system": self.name, "config": str(self.config.relative_to(REPO)), "profile": self.profile.name,
                "chain": [s.as_dict() for s in self.profile.chain]}

    def fingerprint(self) -> str:
        code = [*(REPO / "stages").glob("*.py"), *(REPO / "pipeline" / "audio").glob("*.py"), REPO / "pipeline" / "chunking.py",
                REPO / "pipeline" / "engines" / "whisper.py", REPO / "pipeline" / "process.py", REPO / "pipeline" / "engines" / "base.py",
                REPO / "pipeline" / "watch" / "sizing.py"]
        h = hashlib.sha256(json.dumps(self.describe(), sort_keys=True).encode())
        h.update(_sources_digest(code).encode())
        h.update(_library_versions().encode())
        return h.hexdigest()[:10]

    def warm_up(self) -> None:
        self.processor.chain(self.profile)  # opens every stage: loads the model once

    def transcribe(self, path: Path) -> Hypothesis:
        started = time.perf_counter()
        job = self.processor.run_chain(path, self.profile)
        seconds = time.perf_counter() - started
        stages: dict[str, float] = {}
        for record in job.stages:
            stages[record.name] = stages.get(record.name, 0.0) + record.seconds
        return Hypothesis(job.transcript.text, job.transcript.language, seconds, list(job.notes), stages)

    def close(self) -> None:
        self.processor.close()
        self._tmp.cleanup()


class BareSystem:
    """The same Whisper base model with nothing around it (see the module docstring)."""

    name = "bare"
    OPTIONS = {"beam_size": 5, "vad_filter": True}

    def __init__(self, cpu_threads: int = 0, **extra):
        """``cpu_threads``: the model's threads (0: CTranslate2's own choice, as the shipped chain had it)."""
        from hushdrop.pipeline.engines import EngineSpec, load_engine

        # with the default threads, the very object the chain's transcribe stage uses
        self.engine = load_engine(EngineSpec(cpu_threads=cpu_threads))
        self.model = self.engine.model
        self.options = {**self.OPTIONS, **extra}

    def describe(self) -> dict:
        return {"system": self.name, "engine": self.engine.describe(), "options": self.options,
                "decode": "faster_whisper.decode_audio(path, sampling_rate=16000)"}

    def fingerprint(self) -> str:
        d = self.describe()
        d["engine"] = {k: v for k, v in d["engine"].items() if k != "model_path"}
        h = hashlib.sha256(json.dumps(d, sort_keys=True).encode())
        h.update(_library_versions().encode())
        return h.hexdigest()[:10]

    def warm_up(self) -> None:
        return None

    def transcribe(self, path: Path) -> Hypothesis:
        from faster_whisper import decode_audio

        started = time.perf_counter()
        audio = decode_audio(str(path), sampling_rate=SAMPLE_RATE)
        decoded = time.perf_counter()
        segments, info = self.model.transcribe(audio, **self.options)
        text = "".join(s.text for s in segments).strip()  # a lazy generator: this is where it decodes
        done = time.perf_counter()
        return Hypothesis(text, info.language, done - started, [], {"decode": decoded - started, "transcribe": done - decoded})

    def close(self) -> None:
        return None


def make_system(name: str):
    if name == "chain":
        return ChainSystem()
    if name == "bare":
        return BareSystem()
    if name == "bare-words":  # diagnostic: what word timestamps alone cost the bare engine
        s = BareSystem(word_timestamps=True)
        s.name = name
        return s
    raise ValueError(f"unknown system {name!r}: chain or bare")


@lru_cache(maxsize=1)
def _library_versions() -> str:
    from importlib.metadata import version

    return ",".join(f"{p}={version(p)}" for p in ("faster-whisper", "ctranslate2", "noisereduce", "numpy"))


# ---------------------------------------------------------------------------
# cache: bench/results/cache/<system>-<fingerprint>/<condition>/<clip>.json


class Cache:
    def __init__(self, system_name: str, fingerprint: str, root: Path = RESULTS / "cache"):
        self.dir = root / f"{system_name}-{fingerprint}"

    def _path(self, condition: str, clip_id: str) -> Path:
        return self.dir / condition / f"{clip_id}.json"

    def get(self, condition: str, clip_id: str) -> Hypothesis | None:
        path = self._path(condition, clip_id)
        if not path.is_file():
            return None
        try:
            return Hypothesis(**json.loads(path.read_text(encoding="utf-8")))
        except (ValueError, TypeError):
            return None

    def put(self, condition: str, clip_id: str, hyp: Hypothesis) -> None:
        path = self._path(condition, clip_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(hyp), ensure_ascii=False, indent=1), encoding="utf-8")
        tmp.replace(path)


# ---------------------------------------------------------------------------
# the machine and the report


def machine() -> dict:
    import psutil

    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "libraries": _library_versions(),
    }


def markdown_table(header: list[str], rows: list[list]) -> str:
    def cell(v) -> str:
        if isinstance(v, float):
            return "–" if v != v else f"{v:.1f}"
        return str(v)

    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def write_json(path: Path, data) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, ensure_ascii=False, indent=1), encoding="utf-8")


def fmt_duration(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 60}:{seconds % 60:02d}"
