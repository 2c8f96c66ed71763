"""What config.yaml may say: global settings and profiles, as pydantic models.

Each model rejects unknown keys and checks its own fields; the checks that need the
whole file (inheritance from ``default``, unique profile folders, folders that must not
contain one another) are :mod:`hushdrop.pipeline.config.load`'s.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

from hushdrop.pipeline.engines import ENGINES, engine_for
from hushdrop.pipeline.errors import ConfigError
from hushdrop.stages import REGISTRY, StageOptions

OUTPUT_FORMATS = ("txt", "srt", "vtt", "json", "md")
# What watch mode claims by default: audio containers, and videos whose sound track is transcribed.
AUDIO_EXTENSIONS = (
    "wav", "wave", "mp3", "m4a", "m4b", "aac", "flac", "ogg", "oga", "opus", "wma", "amr", "3gp", "3ga",
    "aif", "aiff", "aifc", "caf", "wv", "ape", "mka", "mpga", "webm", "mp4", "m4v", "mov", "mkv", "avi",
)
DEFAULT_PROFILE = "default"
MAX_WORKERS = 64


def known_languages() -> set[str]:
    """Every language code some engine can be forced to (a profile's ``language`` is one, or auto)."""
    return set().union(*(entry.languages for entry in ENGINES.values()))


class StageSpec(BaseModel):
    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    name: str
    options: StageOptions

    def build(self):
        return REGISTRY[self.name](self.options)

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "options": self.options.model_dump(mode="json")}


class OriginalsPolicy(BaseModel):
    model_config = ConfigDict(extra="forbid")

    action: Literal["shred", "delete", "keep", "move"] = "shred"
    move_to: Path | None = None

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        if isinstance(value, str):
            return {"action": value}
        if isinstance(value, dict) and set(value) == {"move"}:
            return {"action": "move", "move_to": value["move"]}
        return value

    @model_validator(mode="after")
    def _move_needs_folder(self) -> "OriginalsPolicy":
        if self.action == "move" and self.move_to is None:
            raise ValueError("'move' needs a folder: originals: {move: archive/}")
        return self


NOTIFY_EVENTS = ("done", "quarantined", "waiting", "stopped")


def apprise_url(value: str) -> str:
    """An Apprise URL that Apprise itself can read; the error names only its scheme (the rest
    of such a URL is often a token or a password)."""
    import apprise

    value = value.strip()
    if apprise.Apprise.instantiate(value) is None:
        scheme = value.partition("://")[0] if "://" in value else ""
        shown = f"a {scheme}:// URL" if scheme else "this value (no scheme:// at its start)"
        raise ValueError(
            f"Apprise cannot read {shown}: write it as the Apprise documentation for your service says, "
            f"e.g. ntfy://ntfy.example.org/topic or json://host:port/path (https://github.com/caronc/apprise/wiki)"
        )
    return value


class NotifyRoute(BaseModel):
    """Where notifications go and which: Apprise URLs and the events sent to them. The global
    ``notify:`` is one; a profile's ``notify:`` replaces it for that profile's jobs."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    urls: list[Annotated[str, AfterValidator(apprise_url)]] = Field(
        default_factory=list, description="Apprise URLs (ntfy://…, gotify://…, tgram://…, mailto://…, json://…); empty: none are sent"
    )
    events: list[Literal["done", "quarantined", "waiting", "stopped"]] = Field(
        default_factory=lambda: list(NOTIFY_EVENTS),
        description="done: a transcript is ready; quarantined: a recording was set aside; waiting: the machine is at "
        "fault (disk full, a read-only folder) and jobs wait; stopped: the service stopped on an error",
    )

    @field_validator("events")
    @classmethod
    def _distinct_events(cls, value: list[str]) -> list[str]:
        return list(dict.fromkeys(value))

    def wants(self, event: str) -> bool:
        return bool(self.urls) and event in self.events


class NotifySettings(NotifyRoute):
    """The global ``notify:``: a route, and how the service's one sender delivers (pipeline/notify.py)."""

    attempts: int = Field(4, ge=1, le=10, description="tries per notification and URL before it is given up (and logged)")
    retry_backoff_seconds: float = Field(5.0, gt=0, le=600, description="wait before the second try; doubles on each further try")
    page_url: str | None = Field(
        None, pattern=r"^https?://[^\s/]+(/\S*)?$",
        description="the web page's address as the people notified open it (e.g. your reverse proxy's); a notification "
        "links to the job there. Default: web.listen, when it names an address other machines reach",
    )


class Profile(BaseModel):
    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)

    name: str
    folder: str = ""  # relative to the inbox root; "" for the default profile
    language: str = "auto"
    task: Literal["transcribe", "translate"] = Field(
        "transcribe",
        description="transcribe: text in the language spoken; translate: English text whatever the language "
        "spoken (Whisper only; the outputs say it is a translation and from which language)",
    )
    glossary: list[str] = Field(default_factory=list)
    chain: list[StageSpec]
    outputs: list[Literal["txt", "srt", "vtt", "json", "md"]] = Field(default_factory=lambda: list(OUTPUT_FORMATS))
    originals: OriginalsPolicy = Field(default_factory=OriginalsPolicy)
    duplicates: Literal["skip", "reprocess"] = "skip"
    settle_seconds: float = Field(5.0, ge=0.0)
    incomplete_grace_seconds: float = Field(
        120.0, ge=0.0,
        description="a file whose header declares more bytes than it has waits this long unchanged before it is taken (with a truncation warning)",
    )
    ignore: list[str] = Field(default_factory=list, description="extra glob patterns to ignore")
    extensions: list[str] = Field(
        default_factory=lambda: list(AUDIO_EXTENSIONS),
        description="watch mode claims only files with these extensions; others are reported once and left alone",
    )
    script: Literal["keep", "simplified", "traditional", "hk", "tw"] = Field(
        "keep", description="Chinese script of zh and yue text (OpenCC): keep what the engine wrote, or convert it"
    )
    subtitle_names: Literal["plain", "language"] = Field(
        "plain", description="language: <name>.<lang>.srt and .vtt, which Plex, Jellyfin and media players pick up beside a video"
    )
    queue: str = Field(
        "hushdrop", pattern=r"^[A-Za-z0-9_.-]{1,64}$",
        description="executor: celery sends this profile's jobs to the workers of this queue (e.g. gpu, cpu)",
    )
    # the coordinator's alone: excluded from the profile a remote worker is sent (the URLs hold tokens)
    notify: NotifyRoute | None = Field(
        None, exclude=True, description="this profile's notifications (urls, events) instead of the global notify's; urls: [] sends none",
    )
    notify_text: bool | None = Field(
        None, exclude=True, description="include the transcript's text in a done notification; null: the global notify_text",
    )

    @field_validator("extensions")
    @classmethod
    def _bare_extensions(cls, value: list[str]) -> list[str]:
        return [e.lower().lstrip(".") for e in value]

    @field_validator("language")
    @classmethod
    def _known_language(cls, value: str) -> str:
        value = value.strip().lower()
        if value != "auto" and value not in known_languages():
            raise ValueError(f"unknown language {value!r}: use 'auto' or an ISO 639-1 code such as en, zh, yue, de")
        return value

    @field_validator("folder")
    @classmethod
    def _plain_folder(cls, value: str) -> str:
        value = value.strip("/")
        if value == "":
            return value
        parts = value.split("/")
        if Path(value).is_absolute() or any(p in ("", ".", "..") or p.startswith(".") for p in parts):
            raise ValueError(
                f"folder {value!r} must name a subfolder of the inbox, e.g. 'meetings' "
                f"(no '.', '..', empty or hidden parts; the default profile uses the inbox itself)"
            )
        return value

    @field_validator("outputs")
    @classmethod
    def _some_output(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("at least one output format is needed")
        return list(dict.fromkeys(value))

    @field_validator("chain")
    @classmethod
    def _chain_shape(cls, chain: list[StageSpec]) -> list[StageSpec]:
        names = [s.name for s in chain]
        if "transcribe" not in names:
            raise ValueError("the chain must contain a 'transcribe' stage")
        t = names.index("transcribe")
        if "resample" not in names[:t]:
            raise ValueError("the chain needs 'resample' before 'transcribe' (the engine takes 16 kHz audio)")
        for later in ("grammar", "tag"):
            if later in names and names.index(later) < t:
                raise ValueError(f"'{later}' works on the transcript, so it must come after 'transcribe'")
        return chain

    @model_validator(mode="after")
    def _language_fits_engine(self) -> "Profile":
        if self.language != "auto":
            engine_for(self.transcribe_options().engine).check_language(self.language)
        return self

    @model_validator(mode="after")
    def _task_fits_engine(self) -> "Profile":
        """``task: translate`` only where the engine (its registry entry) and, for a catalogue model,
        the model itself can translate."""
        problem = translation_problem(self.transcribe_options()) if self.task == "translate" else None
        if problem:
            raise ValueError(f"task: translate: {problem}; use task: transcribe")
        return self

    def transcribe_options(self):
        return next(s.options for s in self.chain if s.name == "transcribe")


class ApiSettings(BaseModel):
    """The transcription API (OpenAI's and whisper-asr-webservice's routes) on the page's server: docs/api.md."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(False, description="serve /v1/audio/…, /asr and /detect-language on the page's server")
    profile: str = Field("default", description="the profile a request runs in unless its `model` names another")
    loopback_without_token: bool = Field(
        False, description="requests straight from this machine need no token (e.g. Bazarr beside hushdrop); others always do"
    )
    max_upload_mb: float = Field(1024.0, gt=0, description="largest request body a token may send, in MB (each token may set its own)")
    concurrent_jobs: int = Field(2, ge=1, description="jobs one token may have waiting or running at once (each token may set its own)")
    wait_seconds: float = Field(
        3600.0, gt=0, description="how long a request waits for its transcript; then it is answered 504 and the job goes on"
    )


def translation_problem(options, own_models: dict | None = None) -> str | None:
    """Why the transcribe stage ``options`` cannot translate into English, or None where it can:
    its engine (the registry entry), a catalogue model trained without translation or English-only,
    or a model of the config's own (``own_models``) marked so."""
    entry = engine_for(options.engine)
    if not entry.can_translate:
        able = " or ".join(name for name, e in ENGINES.items() if e.can_translate) or "none"
        return f"the {entry.name} engine cannot translate into English (engines that can: {able})"
    from hushdrop.pipeline.engines.catalogue import Catalogue

    catalogue = Catalogue()
    model = catalogue.find(options.model, entry.name)
    if model is not None and not model.can_translate:
        able = ", ".join(m.name for m in catalogue.of_engine(entry.name) if m.can_translate and m.role == "asr")
        why = "it is English-only" if model.languages != "multilingual" else "it was trained without translation"
        return f"model {model.name} cannot translate ({why}); models that can: {able}"
    own = (own_models or {}).get(options.model)
    if own is not None and (not own.can_translate or own.language is not None):
        return f"model {options.model} cannot translate (its models: entry says can_translate: false or names one language)"
    return None


class WebSettings(BaseModel):
    """The web page (``hushdrop web``; served by ``hushdrop watch`` too when ``enabled``): docs/web.md."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(False, description="`hushdrop watch` serves the page as well")
    listen: str = Field("127.0.0.1:8765", description="HOST:PORT; any address but loopback needs password_hash")
    password_hash: str | None = Field(None, description="scrypt hash written by `hushdrop web --set-password`")
    max_upload_mb: float = Field(4096.0, gt=0, description="largest upload accepted, in MB")
    tls_cert: Path | None = Field(None, description="PEM certificate: the page is served over HTTPS (the microphone needs it off localhost)")
    tls_key: Path | None = Field(None, description="PEM private key of tls_cert")
    trusted_proxies: list[str] = Field(
        default_factory=list,
        description="addresses or CIDR blocks of reverse proxies whose X-Forwarded-For / Forwarded name the client",
    )

    @field_validator("trusted_proxies")
    @classmethod
    def _proxy_networks(cls, value: list[str]) -> list[str]:
        from hushdrop.pipeline.web.address import parse_networks

        return [str(network) for network in parse_networks(value)]

    @field_validator("listen")
    @classmethod
    def _host_port(cls, value: str) -> str:
        from hushdrop.pipeline.web.address import parse_listen

        parse_listen(value)
        return value.strip()

    @field_validator("password_hash")
    @classmethod
    def _scrypt_hash(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith("scrypt$"):
            raise ValueError("not a hash made by `hushdrop web --set-password` (it starts with 'scrypt$')")
        return value

    @model_validator(mode="after")
    def _cert_and_key(self) -> "WebSettings":
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("tls_cert and tls_key go together: give both, or neither")
        return self


class TimeLimits(BaseModel):
    """How long one run of a job, and each stage of it, may take before its worker is stopped.

    Each limit is ``max(floor, factor × the recording's duration)``: a stuck worker (a stage
    blocked on a file, an ffmpeg that never ends) is stopped, the attempt counts, and the job
    is retried, then quarantined naming the stage. The defaults leave room for a CPU engine on
    a slow, oversubscribed machine (docs/benchmarks.md, "Time limits").
    """

    model_config = ConfigDict(extra="forbid")

    stage_floor_seconds: float = Field(600.0, gt=0, description="no stage is stopped sooner than this")
    stage_factor: float = Field(10.0, gt=0, description="a stage may take this many times the recording's duration")
    job_floor_seconds: float = Field(1800.0, gt=0, description="no run of a job is stopped sooner than this")
    job_factor: float = Field(12.0, gt=0, description="a whole run may take this many times the recording's duration")

    @model_validator(mode="after")
    def _job_covers_a_stage(self) -> "TimeLimits":
        if self.job_floor_seconds < self.stage_floor_seconds or self.job_factor < self.stage_factor:
            raise ValueError(
                "a job's limit must be at least a stage's: job_floor_seconds >= stage_floor_seconds and "
                "job_factor >= stage_factor"
            )
        return self

    def stage_seconds(self, duration_s: float) -> float:
        return max(self.stage_floor_seconds, self.stage_factor * duration_s)

    def job_seconds(self, duration_s: float) -> float:
        return max(self.job_floor_seconds, self.job_factor * duration_s)


class OwnModel(BaseModel):
    """A model of the config's own in the catalogue (``models:``): a repository on the hub or a mirror
    that `hushdrop models pull NAME` fetches, verifies and pins like a built-in one."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    engine: str = Field("whisper", description="the engine that loads it")
    repository: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$", description="owner/name on the hub")
    files: list[str] | None = Field(None, description="patterns of the files to fetch; the engine's usual files by default")
    language: str | None = Field(None, description="the one language of an English-only (or other one-language) model; null: multilingual")
    can_translate: bool = Field(True, description="whisper: whether task: translate may use it")

    @field_validator("engine")
    @classmethod
    def _known_engine(cls, value: str) -> str:
        if value not in ENGINES:
            raise ValueError(f"unknown engine {value!r}; choose one of: {', '.join(ENGINES)}")
        return value


class Settings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    source: Path = Path("config.yaml")
    inbox: Path = Path("inbox")
    outbox: Path = Path("outbox")
    workdir: Path = Field(Path(".hushdrop"), description="spool, quarantine, ledger and private temp files")
    workers: int | Literal["auto"] = Field(
        1, description="worker processes (1-64), or auto: from the cores, the memory and the model's size (pipeline/watch/sizing.py)"
    )
    max_duration_hours: float = Field(12.0, gt=0, description="longer recordings are refused")
    max_temp_gb: float = Field(8.0, gt=0, description="a job's temporary audio may not grow past this; a recording that needs more is refused")
    ffmpeg: str = Field(
        "bundled", min_length=1, description="bundled (the ffmpeg pinned with hushdrop), system (the one on PATH) or a path to an ffmpeg"
    )
    poll_seconds: float = Field(2.0, gt=0)
    log_format: Literal["text", "json"] = "text"
    # watch mode (docs/watch.md)
    watch: Literal["auto", "events", "polling"] = Field("auto", description="auto: events, or polling where none arrive")
    spool: Path | None = Field(None, description="claimed originals; default <workdir>/spool. Same filesystem as the inbox = atomic claims")
    rescan_seconds: float = Field(300.0, gt=0, description="full inbox rescan that catches any missed event")
    max_attempts: int = Field(3, ge=1, le=100, description="tries before a failing job is quarantined")
    retry_backoff_seconds: float = Field(30.0, ge=0, description="first retry delay; doubles on each attempt")
    queue_limit: int = Field(64, ge=1, description="claimed-but-unfinished jobs before intake waits (backpressure)")
    outbox_expiry_days: float | None = Field(None, gt=0, description="delete outbox results older than this; null = never")
    quarantine_max_gb: float | None = Field(
        10.0, gt=0, description="quarantine may hold this many GB; over it, the recordings set aside longest ago are shredded first; null = no limit"
    )
    quarantine_max_days: float | None = Field(
        90.0, gt=0, description="quarantined recordings older than this are shredded (with their notes); null = kept until removed by hand"
    )
    shutdown_grace_seconds: float = Field(30.0, ge=0, description="SIGTERM: let running jobs finish this long, then release them")
    heartbeat_seconds: float = Field(5.0, gt=0)
    environment_retry_hours: float = Field(
        24.0, gt=0, description="how long a job keeps waiting out an environment fault (disk full, permissions) before it is set aside"
    )
    worker_start_attempts: int = Field(5, ge=1, le=50, description="a worker that fails to start this many times in a row stops `watch`")
    worker_memory_limit_mb: int | None = Field(None, ge=64, description="address-space limit per worker process; null = none")
    output_mode: str = Field("0640", description="permission bits of the files written to the outbox, octal (quote it in YAML: \"0640\")")
    output_group: str | None = Field(None, description="group given to the files written to the outbox (e.g. a Samba share's); null: the user's own")
    web: WebSettings = Field(default_factory=WebSettings, description="the web page: docs/web.md")
    api: ApiSettings = Field(default_factory=ApiSettings, description="the transcription API: docs/api.md; off by default")
    notify: NotifySettings = Field(
        default_factory=NotifySettings, description="notifications through Apprise (pipeline/notify.py); off while urls is empty"
    )
    notify_text: bool = Field(False, description="include the transcript's text in a done notification (a profile may say otherwise)")
    time_limits: TimeLimits = Field(
        default_factory=TimeLimits, description="how long a job and each of its stages may run before the worker is stopped"
    )
    # scale-out (docs/scale-out.md)
    executor: Literal["local", "celery"] = Field(
        "local", description="local: a pool of worker processes here; celery: `hushdrop worker` processes through a Redis broker"
    )
    broker_url: str | None = Field(
        None, description="executor: celery: redis://:<password>@host:6379/0; HUSHDROP_BROKER_URL overrides it"
    )
    lease_seconds: float = Field(
        60.0, ge=2.0, le=3600.0,
        description="executor: celery: a job whose worker has not renewed its lease this long is run again",
    )
    models: dict[str, OwnModel] = Field(
        default_factory=dict, description="models of your own for the catalogue, by name: `hushdrop models pull NAME` fetches them"
    )
    profiles: dict[str, Profile]

    @field_validator("models")
    @classmethod
    def _own_model_names(cls, value: dict[str, OwnModel]) -> dict[str, OwnModel]:
        import re

        from hushdrop.pipeline.engines.catalogue import Catalogue

        for name in value:
            if not re.fullmatch(r"[a-z0-9][a-z0-9._-]{0,63}", name):
                raise ValueError(f"model name {name!r}: use lower-case letters, digits, '.', '_' and '-'")
            if Catalogue().find(name) is not None:
                raise ValueError(f"model name {name!r} is a built-in model's: choose another")
        return value

    @model_validator(mode="after")
    def _own_models_translate(self) -> "Settings":
        """A profile's ``task: translate`` on a model of the config's own that says it cannot."""
        for profile in self.profiles.values():
            problem = translation_problem(profile.transcribe_options(), self.models) if profile.task == "translate" else None
            if problem:
                raise ValueError(f"profiles.{profile.name}: task: translate: {problem}; use task: transcribe")
        return self

    @model_validator(mode="after")
    def _api_profile_exists(self) -> "Settings":
        if self.api.enabled and self.api.profile not in self.profiles:
            raise ValueError(f"api.profile: no profile named {self.api.profile!r}; profiles: {', '.join(self.profiles)}")
        return self

    @property
    def models_lock(self) -> Path:
        """``models.lock`` beside the config: the revision and hashes of every model pulled for it."""
        return self.source.parent / "models.lock"

    @field_validator("workers", mode="before")
    @classmethod
    def _workers(cls, value: Any) -> Any:
        if isinstance(value, str) and value.strip().lower() == "auto":
            return "auto"
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_WORKERS:
            raise ValueError(f"must be a whole number from 1 to {MAX_WORKERS}, or auto; got {value!r}")
        return value

    @field_validator("output_mode", mode="before")
    @classmethod
    def _octal_mode(cls, value: Any) -> str:
        if not isinstance(value, str):
            raise ValueError(
                f"write the mode as a quoted octal string, e.g. output_mode: \"0640\" (YAML reads an unquoted "
                f"0640 as the number {0o640}, which is ambiguous); got {value!r}"
            )
        text = value.strip().removeprefix("0o")
        if not text or len(text) > 4 or any(c not in "01234567" for c in text):
            raise ValueError(f"{value!r} is not an octal file mode such as \"0640\" or \"0644\"")
        bits = int(text, 8)
        if bits > 0o777:
            raise ValueError(f"{value!r}: only permission bits (at most 0777) may be set, no setuid, setgid or sticky bit")
        if not bits & 0o400:
            raise ValueError(f"{value!r} would leave the transcripts unreadable to their owner; e.g. \"0640\"")
        return f"{bits:04o}"

    @field_validator("output_group")
    @classmethod
    def _known_group(cls, value: str | None) -> str | None:
        if value is None:
            return None
        import grp

        try:
            gid = grp.getgrnam(value).gr_gid
        except KeyError:
            raise ValueError(f"no group named {value!r} on this machine (see `getent group`)") from None
        if os.geteuid() != 0 and gid != os.getegid() and gid not in os.getgroups():
            raise ValueError(
                f"hushdrop's user is not a member of group {value!r}, so it cannot give files to it; "
                f"add the user to the group (and log in again) or choose another"
            )
        return value

    @property
    def output_mode_bits(self) -> int:
        return int(self.output_mode, 8)

    @property
    def tmp_root(self) -> Path:
        return self.workdir / "tmp"

    @property
    def quarantine(self) -> Path:
        return self.workdir / "quarantine"

    @property
    def spool_dir(self) -> Path:
        return self.spool or self.workdir / "spool"

    @property
    def ledger_path(self) -> Path:
        return self.workdir / "ledger.sqlite3"

    def profile(self, name: str) -> Profile:
        try:
            return self.profiles[name]
        except KeyError:
            raise ConfigError(str(self.source), [f"no profile named {name!r}; profiles: {', '.join(self.profiles)}"])

    def profile_for_folder(self, folder: str) -> Profile | None:
        for profile in self.profiles.values():
            if profile.folder == folder:
                return profile
        return None
