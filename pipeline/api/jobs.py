"""One API request, one job: the recording streamed into an inbox, run like any other, waited for.

An API request takes the same path as a dropped file, so it gets every promise a dropped file
gets (the durable queue, containment, the profile's outputs and its originals policy):

1. the multipart body is read as it arrives (:mod:`pipeline.api.multipart`) and its file part
   streamed into a hidden file in the API profile's inbox folder (:func:`pipeline.web.uploads.landing`,
   the page's uploads' own code), counted against the token's ``max_upload_mb``;
2. the form's fields decide what is asked (:class:`Ask`: the profile, language, task, prompt);
   the file is renamed into the profile's folder with a note in the ledger (``UploadNote``:
   priority :attr:`Priority.API`, the request's id), so the watcher takes it at once, before
   the folder's backlog, and the next free worker runs it first;
3. the request waits (:func:`wait_for_record`) until its job is done and takes the record the
   coordinator kept for it (``ledger.results``), or until it is quarantined (a bad recording:
   400 with the reason), or until ``api.wait_seconds`` pass (504: the job goes on, its
   transcript lands in the outbox), or until its upload leaves the inbox unclaimed (someone
   deleted it: 500 at once). A client that disconnects stops only the waiting: the job goes on,
   once, and writes its outputs.

Each token has at most its ``concurrent_jobs`` jobs waiting or running at once
(:class:`ApiJobCounter`): the slot of a request nobody waits for any more is given back when
its job ends.
"""

from __future__ import annotations

import asyncio
import os
import struct
import threading
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import anyio
from starlette.requests import ClientDisconnect, Request

from hushdrop.pipeline.api.errors import ApiError
from hushdrop.pipeline.api.multipart import Field, FileData, FileStart, FormError, form_events
from hushdrop.pipeline.api.tokens import Token
from hushdrop.pipeline.config import Profile, Settings
from hushdrop.pipeline.config.schema import translation_problem
from hushdrop.pipeline.engines.catalogue import Catalogue
from hushdrop.pipeline.logs import log
from hushdrop.pipeline.watch import page_requests
from hushdrop.pipeline.watch.ledger import TERMINAL, JobRow, Ledger, Priority, State, UploadNote
from hushdrop.pipeline.web.uploads import UploadError, checked_language, landing, sanitize_name

POLL_SECONDS = 0.25
OPENAI_DEFAULT_MODEL = "whisper-1"  # what OpenAI's clients and most tools send: the API's own profile


@dataclass(frozen=True)
class Ask:
    """What a request asks beyond its recording; None: the profile's setting."""

    profile: Profile
    language: str | None = None
    task: str | None = None
    prompt: str | None = None
    write_outputs: bool = True  # False: the record only (language detection)


@dataclass(frozen=True)
class Answer:
    """A finished request: its job and the job's record."""

    row: JobRow
    record: dict[str, Any]


class ApiJobCounter:
    """How many jobs each token has waiting or running; a token at its ``concurrent_jobs`` gets 429.

    A request's slot is held until its job ends, not only while its client waits: a client that
    hangs up, or is answered 504, cannot start more jobs than its limit by asking again."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._running: dict[str, int] = {}

    @contextmanager
    def slot(self, key: str, limit: int) -> Iterator["Slot"]:
        with self._lock:
            if self._running.get(key, 0) >= limit:
                raise ApiError(429, f"this token has {limit} request(s) running already, its limit (concurrent_jobs); "
                                    f"wait for one to finish", code="concurrent_jobs")
            self._running[key] = self._running.get(key, 0) + 1
        held = Slot(self, key)
        try:
            yield held
        finally:
            if not held.followed:
                held.give_back()

    def _give_back(self, key: str) -> None:
        with self._lock:
            self._running[key] -= 1
            if not self._running[key]:
                del self._running[key]


class Slot:
    """One request's place in its token's ``concurrent_jobs``, given back once: when the request
    ends, or, where nobody waits for its job any more, when that job ends (:func:`_follow`)."""

    def __init__(self, counter: ApiJobCounter, key: str):
        self._counter = counter
        self._key = key
        self._held = True
        self.followed = False  # handed to _follow: the request's own end does not give it back

    def give_back(self) -> None:
        if self._held:
            self._held = False
            self._counter._give_back(self._key)


# -- what a request may name ---------------------------------------------------------------


def model_names(settings: Settings) -> dict[str, Profile]:
    """Every name the ``model`` field may take, and the profile it runs in: ``whisper-1`` (the
    API's profile), each profile's name, and each profile's model by its catalogue name (the
    API's profile first where several use one model)."""
    api_profile = settings.profiles[settings.api.profile]
    names: dict[str, Profile] = {OPENAI_DEFAULT_MODEL: api_profile}
    names.update({name: profile for name, profile in settings.profiles.items()})
    catalogue = Catalogue()
    for profile in (api_profile, *settings.profiles.values()):
        options = profile.transcribe_options()
        entry = catalogue.find(options.model, options.engine)
        names.setdefault(entry.name if entry else options.model, profile)
    return names


def profile_for_model(settings: Settings, model: str | None) -> Profile:
    """The profile a request's ``model`` means; no model: the API's profile. Unknown: 400 listing the names."""
    if not model or not model.strip():
        return settings.profiles[settings.api.profile]
    names = model_names(settings)
    wanted = model.strip()
    if wanted in names:
        return names[wanted]
    entry = Catalogue().find(wanted)
    if entry is not None and entry.name in names:
        return names[entry.name]
    raise ApiError(400, f"unknown model {wanted!r}; this server has: {', '.join(names)}", code="model_not_found", param="model")


def checked_task(profile: Profile, task: str | None, settings: Settings) -> str | None:
    if task in (None, "", "transcribe"):
        return None if task in (None, "") else "transcribe"
    if task != "translate":
        raise ApiError(400, f"task must be transcribe or translate, not {task!r}", param="task")
    problem = translation_problem(profile.transcribe_options(), settings.models)
    if problem:
        raise ApiError(400, f"profile {profile.name} cannot translate: {problem}", code="translation_unsupported", param="model")
    return "translate"


def checked_ask_language(profile: Profile, language: str | None) -> str | None:
    try:
        return checked_language(language, profile)
    except UploadError as exc:
        raise ApiError(400, exc.message, code="unsupported_language", param="language") from None


def file_name_for(raw: str, profile: Profile) -> str:
    """The inbox name of a request's file: its own, sanitised; a name without an extension the
    profile takes gets its first (``.wav``): what the file is, its own bytes decide."""
    name = sanitize_name(raw or "recording")
    ext = name.rpartition(".")[2].lower() if "." in name else ""
    return name if ext in profile.extensions else f"{name}.{profile.extensions[0]}"


# -- raw PCM (whisper-asr-webservice's encode=false) -----------------------------------------------


PCM_BYTES_PER_SECOND = 16000 * 2


def wav_header(data_bytes: int, sample_rate: int = 16000, channels: int = 1, bits: int = 16) -> bytes:
    """A canonical 44-byte WAV header for ``data_bytes`` of little-endian PCM."""
    block = channels * bits // 8
    return (b"RIFF" + struct.pack("<I", 36 + data_bytes) + b"WAVE"
            + b"fmt " + struct.pack("<IHHIIHH", 16, 1, channels, sample_rate, sample_rate * block, block, bits)
            + b"data" + struct.pack("<I", data_bytes))


# -- one request ---------------------------------------------------------------------------


async def run_request(
    web, request: Request, file_field: str, decide: Callable[[dict[str, Any]], Ask], raw_pcm: bool = False,
    pcm_seconds: float | None = None, name: str | None = None,
) -> Answer:
    """Take the recording in ``request``'s form field ``file_field``, run it as a job as ``decide``
    (given the form's fields) says, and wait for its record. ``raw_pcm``: the file is bare 16 kHz
    mono s16le samples, kept as a WAV file, only its first ``pcm_seconds`` where given (the rest
    is read and dropped). ``name``: the job's name instead of the file field's."""
    settings: Settings = web.settings
    token: Token | None = request.state.api_token
    limit_mb = token.upload_limit_mb(settings) if token else settings.api.max_upload_mb
    key = token.name if token else "(this machine, no token)"
    with web.api_jobs.slot(key, token.job_limit(settings) if token else settings.api.concurrent_jobs) as slot:
        request_id = uuid.uuid4().hex
        try:
            row_name = await _land(web, request, file_field, decide, raw_pcm, limit_mb, request_id, name,
                                   None if pcm_seconds is None else 44 + int(pcm_seconds * PCM_BYTES_PER_SECOND))
        except UploadError as exc:
            raise ApiError(exc.status, exc.message) from None
        except FormError as exc:
            raise ApiError(400, str(exc), code="invalid_form") from None
        except ClientDisconnect:
            raise ApiError(400, "the request was cut off before its file arrived") from None
        log().info("api: request %s (%s) placed %s; waiting for its job", request_id[:8], key, row_name)
        return await wait_for_record(web, request, request_id, slot)


async def _land(web, request: Request, file_field: str, decide, raw_pcm: bool, limit_mb: float, request_id: str,
                name: str | None, keep_bytes: int | None) -> str:
    settings: Settings = web.settings
    fields: dict[str, Any] = {}
    filename: str | None = None
    length = _content_length(request)
    async with landing(settings, settings.profiles[settings.api.profile]) as landed:
        landed.check_length(length, limit_mb)
        async for event in form_events(request.headers.get("content-type"), request.stream(), file_field):
            if isinstance(event, FileData):
                room = event.data if keep_bytes is None else event.data[:max(0, keep_bytes - landed.size)]
                if room:
                    await landed.append(room, limit_mb)
            elif isinstance(event, FileStart):
                filename = event.filename
                if raw_pcm:
                    await landed.append(wav_header(0), limit_mb)
            elif isinstance(event, Field):
                if event.name.endswith("[]"):
                    fields.setdefault(event.name[:-2], []).append(event.value)
                else:
                    fields[event.name] = event.value
        if filename is None:
            raise ApiError(400, f"no recording: send it as the form's file field {file_field!r}", param=file_field)
        ask = decide(fields)
        if raw_pcm:
            await landed.flush()
            landed.write_at(0, wav_header(landed.size - 44))
        note = UploadNote(
            language=checked_ask_language(ask.profile, ask.language), priority=Priority.API,
            task=checked_task(ask.profile, ask.task, settings), prompt=(ask.prompt or "").strip()[:1000] or None,
            request_id=request_id, write_outputs=ask.write_outputs,
        )
        if landed.size <= (44 if raw_pcm else 0):
            raise ApiError(400, "the file is empty (0 bytes); nothing to transcribe", param=file_field)
        return await landed.place(web.ledger, ask.profile, file_name_for(name or filename, ask.profile), note)


def _content_length(request: Request) -> int | None:
    value = request.headers.get("content-length", "")
    return int(value) if value.isdigit() else None


def _job_of(ledger: Ledger, request_id: str) -> tuple[JobRow | None, bool]:
    """(the request's latest job or None, whether its upload still waits in the inbox unclaimed).

    Read in the reverse of intake's order (it adds the job, moves the file away, then drops the
    note): the note, its file, then the job, so a claim between the reads is never taken for a
    file that went away. A note whose file left the inbox unclaimed (deleted, moved by someone)
    is dropped: the request has nothing to wait for."""
    waiting = ledger.uploads.waiting_file(request_id)
    present = waiting is not None and _still_there(*waiting)
    row = ledger.for_request(request_id)
    if waiting is not None and not present and row is None:
        page_requests.forget_upload(ledger, waiting[0], request_id=request_id)
    return row, present


def _still_there(path: Path, device: int, inode: int) -> bool:
    """Whether ``path`` is still the very file that was placed there (unknown: assumed so)."""
    try:
        st = os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        return False
    except OSError:
        return True
    return (st.st_dev, st.st_ino) == (device, inode)


async def wait_for_record(web, request: Request, request_id: str, slot: "Slot | None" = None) -> Answer:
    """Wait for the job of ``request_id``; see the module's docstring for every way it ends.
    Where nobody waits any more (504, the client gone), ``slot`` is held until the job ends."""
    settings: Settings = web.settings
    deadline = time.monotonic() + settings.api.wait_seconds
    ledger: Ledger = web.ledger
    while True:
        row, unclaimed = await anyio.to_thread.run_sync(_job_of, ledger, request_id)
        if row is not None and row.state == State.DONE:
            record = await anyio.to_thread.run_sync(page_requests.take_result, ledger, row.id)
            if record is None:
                raise ApiError(500, f"job {row.id} is done but its record was already taken; its transcript is in the outbox")
            return Answer(row, record)
        if row is not None and row.state == State.QUARANTINED:
            await anyio.to_thread.run_sync(page_requests.take_result, ledger, row.id)  # kept before a failed write
            raise ApiError(400, f"the file could not be transcribed ({row.error_stage or 'open'}): {row.error or 'unknown'}; "
                                f"it was set aside in quarantine as job {row.id}", code="recording_refused", param="file")
        if row is not None and row.state == State.ABANDONED and not unclaimed:  # else its file waits to be taken again
            raise ApiError(500, f"job {row.id} was abandoned: {row.error or 'its file went away before it was taken'}")
        if row is None and not unclaimed:
            raise ApiError(500, "the uploaded file left the inbox before hushdrop took it (moved or deleted by someone else)")
        if web.stopping:  # answered now, in the client's shape, before the server cancels the wait
            where = f"job {row.id}" if row is not None else "the upload"
            raise ApiError(503, f"hushdrop is stopping; {where} is kept and finished (before it stops, or once it runs "
                                f"again), its transcript in the outbox", code="service_stopping", headers={"retry-after": "60"})
        if time.monotonic() > deadline:
            _follow(web, request_id, slot)
            where = f"job {row.id}" if row is not None else "the upload"
            raise ApiError(504, f"no transcript within api.wait_seconds ({settings.api.wait_seconds:g} s); {where} goes on "
                                f"and its transcript will be in the outbox", code="timeout")
        if await request.is_disconnected():
            log().info("api: the client of request %s went away; its job goes on", request_id[:8])
            _follow(web, request_id, slot)
            raise ClientGone()
        await asyncio.sleep(POLL_SECONDS)


_following: set[asyncio.Task] = set()


def _follow(web, request_id: str, slot: "Slot | None") -> None:
    """Once the job of a request nobody waits for any more (its client went away, or was answered
    504) ends, drop the record kept for it (the outputs the profile writes stay) and give its
    token's slot back; the service's schedule drops any record this misses (a restart)."""
    if slot is not None:
        slot.followed = True

    async def follow() -> None:
        try:
            while True:
                row, unclaimed = await anyio.to_thread.run_sync(_job_of, web.ledger, request_id)
                if row is not None and row.state in TERMINAL and not unclaimed:
                    await anyio.to_thread.run_sync(page_requests.take_result, web.ledger, row.id)
                    return
                if row is None and not unclaimed:
                    return
                await asyncio.sleep(1.0)
        finally:
            if slot is not None:
                slot.give_back()

    task = asyncio.get_running_loop().create_task(follow())
    _following.add(task)
    task.add_done_callback(_following.discard)


class ClientGone(Exception):
    """The client disconnected while waiting: nobody to answer; the job goes on."""
