"""Getting a catalogue model onto this machine (`hushdrop models pull`) and finding it again.

A pull is the only place hushdrop talks to a model hub, and only when a person runs it:

1. the revision is resolved to a commit (``--revision``, else the one ``models.lock`` pins, else
   ``main``), with the size and hash the hub states for each file the engine needs;
2. free space is checked before anything is downloaded;
3. the files are downloaded with ``huggingface_hub`` (``HF_ENDPOINT`` for a mirror, ``HF_TOKEN``,
   resume of a broken download) into a staging folder beside the cache, one pull of a model at a
   time on this machine (a second waits for the first, then finds the model pulled);
4. every file is checked against the hub's hash (sha256 for large files, the git blob id for small
   ones) and against ``models.lock`` where that names the model; one mismatch and the staging
   folder is deleted: a tampered or half-finished download never becomes a model;
5. the folder is renamed into place with a manifest of its files' sha256, and ``models.lock``
   records name, repository, commit and hashes, so a pull on another machine gets the same bytes.

Loading a model (:func:`installed`) never downloads: it finds the pulled folder, checks its files
against the manifest (the full hash only when a file's size, modification or change time differs
from the last check: a change time cannot be set back, so rewritten bytes are always hashed again),
refuses a symbolic link or a file the pull did not bring, and checks the manifest against
``models.lock``.
"""

from __future__ import annotations

import fcntl
import fnmatch
import hashlib
import json
import os
import re
import shutil
import stat
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator

from hushdrop.pipeline.engines.catalogue import Catalogue, CatalogueModel
from hushdrop.pipeline.errors import ModelError
from hushdrop.pipeline.fsutil import sha256_file
from hushdrop.pipeline.models import ModelStatus, cache_dir

if TYPE_CHECKING:
    from hushdrop.pipeline.config import Settings

MANIFEST = "hushdrop-model.json"
LOCK_VERSION = 1
SPACE_MARGIN_BYTES = 200 * 10**6  # left free after a pull, for the cache's own writes and the rest of the machine
CONNECT_TIMEOUT_S = 8.0
DOWNLOAD_TRIES = 3  # per file, each with huggingface_hub's own resumes inside it
COMMIT = re.compile(r"[0-9a-f]{40}")  # a git commit hash: what a pulled folder's name and models.lock hold


class HubUnreachable(ModelError):
    """The hub (or the mirror HF_ENDPOINT names) could not be reached at all."""


class DownloadBrokeOff(ModelError):
    """A file kept breaking off: what was downloaded stays, for the next pull to resume."""


def pulled_root() -> Path:
    return cache_dir() / "models" / "pulled"


def model_dir(entry: CatalogueModel, commit: str) -> Path:
    return pulled_root() / f"{entry.name}@{commit}"


def endpoint() -> str:
    return os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")


# ---------------------------------------------------------------------------
# models.lock


def read_lock(path: Path | None) -> dict[str, dict[str, Any]]:
    """The models ``path`` pins, by name ({} when there is no lock file)."""
    if path is None:
        return {}
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise ModelError(f"{path} cannot be read as a models lock file ({exc}); fix it or delete it and pull again") from None
    models = document.get("models") if isinstance(document, dict) else None
    if not isinstance(models, dict):
        raise ModelError(f"{path} is not a models lock file (no \"models\" table); delete it and pull again")
    for name, entry in models.items():
        files = entry.get("files") if isinstance(entry, dict) else None
        if not (
            isinstance(entry, dict)
            and isinstance(entry.get("repository"), str)
            and isinstance(entry.get("revision"), str)
            and isinstance(files, dict)
            and all(isinstance(k, str) and isinstance(v, str) for k, v in files.items())
        ):
            raise ModelError(
                f"{path}: the entry for model {name} is not a repository, a revision and file hashes; "
                f"delete that entry and run `hushdrop models pull {name}`"
            )
    return models


def write_lock_entry(path: Path, name: str, entry: dict[str, Any]) -> None:
    """Record ``entry`` for model ``name`` in ``path``, keeping the others; written whole, then renamed.

    The folder holding it is locked (``flock``) from the read to the rename, so pulls of two models
    at once both end up pinned.
    """
    folder = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(folder, fcntl.LOCK_EX)
        models = read_lock(path)
        models[name] = entry
        text = json.dumps({"version": LOCK_VERSION, "models": dict(sorted(models.items()))}, indent=2, sort_keys=True) + "\n"
        temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        temporary.write_text(text, encoding="utf-8")
        os.replace(temporary, path)
    finally:
        os.close(folder)  # releases the lock


# ---------------------------------------------------------------------------
# finding and checking a pulled model


def _git_blob_sha1(path: Path) -> str:
    digest = hashlib.sha1(f"blob {path.stat().st_size}\0".encode())
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _read_manifest(folder: Path) -> dict[str, Any] | None:
    try:
        manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return manifest if isinstance(manifest, dict) and isinstance(manifest.get("files"), dict) else None


def _stamp(st: os.stat_result) -> dict[str, int]:
    """What says a file is unchanged since it was last hashed. The change time moves with any write,
    rename or ``utime`` and cannot be set back, so bytes rewritten under an old mtime show."""
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "ctime_ns": st.st_ctime_ns, "inode": st.st_ino}


def verify_files(folder: Path, manifest: dict[str, Any]) -> None:
    """ModelError unless ``folder`` holds exactly the files the manifest lists, each a regular file
    (not a symbolic link) with its sha256.

    A file whose stamp (:func:`_stamp`) is the one recorded at the last check is taken as unchanged;
    any other is hashed again (a model of several GB is hashed once, not per load). The new stamps
    are saved where the folder can be written; where not, the next load hashes again.
    """
    again = f"Delete {folder} and run `hushdrop models pull {manifest['name']}`."
    ours = {MANIFEST, _temporary_of(folder / MANIFEST).name}
    extra = sorted(p.name for p in folder.iterdir() if p.name not in ours and p.name not in manifest["files"])
    if extra:
        raise ModelError(f"{folder} holds {', '.join(extra)}, which was not pulled: a model is only what was verified. {again}")
    changed = False
    for name, fact in manifest["files"].items():
        path = folder / name
        try:
            st = os.lstat(path)
        except OSError:
            raise ModelError(f"{folder} is missing {name}: pull the model again (`hushdrop models pull {manifest['name']}`)") from None
        if not stat.S_ISREG(st.st_mode):
            what = "a symbolic link" if stat.S_ISLNK(st.st_mode) else "not a regular file"
            raise ModelError(f"{path} is {what}: a pulled model holds its own files. {again}")
        if all(fact.get(key) == value for key, value in _stamp(st).items()):
            continue
        actual = sha256_file(path)
        if actual != fact["sha256"]:
            raise ModelError(f"{path} has sha256 {actual}, but {fact['sha256']} was pulled: the model was altered or is corrupt. {again}")
        fact.update(_stamp(st))
        changed = True
    if changed:
        try:
            _write_json(folder / MANIFEST, manifest)
        except OSError:
            pass  # a read-only cache: verified all the same, hashed again at the next load


def _temporary_of(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp")


def _write_json(path: Path, document: dict[str, Any]) -> None:
    temporary = _temporary_of(path)
    temporary.write_text(json.dumps(document, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(temporary, path)


def _pulled_candidates(entry: CatalogueModel) -> list[tuple[Path, dict[str, Any]]]:
    root = pulled_root()
    found = []
    try:
        children = sorted(root.iterdir())
    except OSError:
        return []
    for folder in children:
        if not folder.name.startswith(f"{entry.name}@") or not folder.is_dir() or folder.is_symlink():
            continue
        manifest = _read_manifest(folder)
        if manifest and manifest.get("name") == entry.name and manifest.get("repository") == entry.repository:
            found.append((folder, manifest))
    found.sort(key=lambda item: item[1].get("pulled_at", 0), reverse=True)
    return found


def not_pulled_message(entry: CatalogueModel) -> str:
    return (
        f"model {entry.name} is not pulled: run `hushdrop models pull {entry.name}` "
        f"(hushdrop never downloads while transcribing)"
    )


def installed(entry: CatalogueModel, catalogue: Catalogue) -> Path:
    """The verified folder of catalogue model ``entry``: the commit ``models.lock`` pins, else the
    newest pull; ModelError saying what to run when it is not here or not intact."""
    pinned = read_lock(catalogue.lock_path).get(entry.name)
    candidates = _pulled_candidates(entry)
    if pinned is not None:
        commit = pinned.get("revision")
        matching = [(f, m) for f, m in candidates if m.get("revision") == commit]
        if not matching:
            raise ModelError(
                f"model {entry.name} is pinned to revision {str(commit)[:12]} by {catalogue.lock_path}, which is not "
                f"pulled here: run `hushdrop models pull {entry.name}`"
            )
        folder, manifest = matching[0]
        locked = pinned.get("files") or {}
        pulled = {name: fact["sha256"] for name, fact in manifest["files"].items()}
        if locked != pulled:
            differing = sorted(n for n in set(locked) | set(pulled) if locked.get(n) != pulled.get(n))
            raise ModelError(
                f"model {entry.name} in {folder} differs from {catalogue.lock_path} ({', '.join(differing)}): "
                f"delete that folder and run `hushdrop models pull {entry.name}`"
            )
    elif candidates:
        folder, manifest = candidates[0]
    else:
        raise ModelError(not_pulled_message(entry))
    verify_files(folder, manifest)
    return folder


def pulled_size(entry: CatalogueModel, catalogue: Catalogue) -> int | None:
    """Bytes on disk of the model's pulled files, or None when it is not pulled (nothing is hashed)."""
    for folder, manifest in _pulled_candidates(entry):
        return sum(int(fact.get("size") or 0) for fact in manifest["files"].values())
    return None


def pulled_sha256(folder: Path, name: str) -> str | None:
    """The sha256 the manifest of pulled ``folder`` records for file ``name`` (None if none)."""
    manifest = _read_manifest(folder)
    fact = (manifest or {}).get("files", {}).get(name)
    return fact.get("sha256") if isinstance(fact, dict) else None


def catalogue_statuses(engine: str, skip: tuple[str, ...] = ()) -> list[ModelStatus]:
    """Whether each catalogue model of ``engine`` is pulled here: a folder of the revision models.lock
    pins, by its manifest alone (listing models never hashes gigabytes; loading checks the files)."""
    from hushdrop.pipeline.engines.catalogue import current

    cat = current()
    pinned = read_lock(cat.lock_path)
    statuses = []
    for entry in cat.of_engine(engine):
        if entry.name in skip:
            continue
        candidates = _pulled_candidates(entry)
        lock = pinned.get(entry.name)
        if lock is not None:
            candidates = [(f, m) for f, m in candidates if m.get("revision") == lock.get("revision")]
        if candidates:
            folder, manifest = candidates[0]
            size = sum(int(fact.get("size") or 0) for fact in manifest["files"].values())
            statuses.append(ModelStatus(engine, entry.name, True, str(folder), f"pulled, {size / 1e9:.2f} GB", optional=True))
        else:
            statuses.append(ModelStatus(engine, entry.name, False, "-", f"run `hushdrop models pull {entry.name}`", optional=True))
    return statuses


# ---------------------------------------------------------------------------
# pulling


@dataclass
class Pulled:
    """What `models pull` got: where, which commit, how many bytes, and whether it downloaded."""

    entry: CatalogueModel
    folder: Path
    revision: str
    size_bytes: int
    downloaded: bool


def _copy_instructions(entry: CatalogueModel, catalogue: Catalogue) -> str:
    needed = ", ".join(entry.files)
    return (
        f"To bring it in without a network: on a machine that has one, run `hushdrop models pull {entry.name}` and "
        f"copy its folder (printed there; it holds {needed} and {MANIFEST}) into {pulled_root()} here, with "
        f"{catalogue.lock_path.name if catalogue.lock_path else 'models.lock'} beside this config; or download "
        f"{entry.repository} ({needed}) any way you can and set `model: /path/to/that/folder` in the profile."
    )


def _wanted(entry: CatalogueModel, siblings: list[Any]) -> list[Any]:
    """The repository's files the engine needs: top-level names only, never one named like hushdrop's manifest."""
    return [
        s for s in siblings
        if any(fnmatch.fnmatch(s.rfilename, pattern) for pattern in entry.files) and "/" not in s.rfilename and s.rfilename != MANIFEST
    ]


def _model_info(entry: CatalogueModel, revision: str, catalogue: Catalogue, pinned: bool = False):
    """The hub's model info at ``revision`` (``pinned``: the revision models.lock names)."""
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError, RevisionNotFoundError

    try:
        return HfApi(endpoint=endpoint()).model_info(entry.repository, revision=revision, files_metadata=True, timeout=CONNECT_TIMEOUT_S)
    except RevisionNotFoundError:
        why = (
            f", which {catalogue.lock_path} pins: pull with `--revision main` to pin the current one instead"
            if pinned else ""
        )
        raise ModelError(f"{entry.repository} has no revision {revision!r} at {endpoint()}{why}") from None
    except RepositoryNotFoundError:
        raise ModelError(f"{endpoint()} has no repository {entry.repository} (or it needs a token: set HF_TOKEN)") from None
    except HfHubHTTPError as exc:
        raise ModelError(f"{endpoint()} refused model info for {entry.repository}: {exc}") from None
    except (OSError, ConnectionError) as exc:
        raise HubUnreachable(
            f"cannot reach the model hub at {endpoint()} ({type(exc).__name__}: {exc}). {_copy_instructions(entry, catalogue)}"
        ) from None
    except Exception as exc:  # httpx's own errors are not OSErrors
        if type(exc).__module__.startswith(("httpx", "httpcore")):
            raise HubUnreachable(
                f"cannot reach the model hub at {endpoint()} ({type(exc).__name__}: {exc}). "
                f"{_copy_instructions(entry, catalogue)}"
            ) from None
        raise


def _expected_hash(sibling: Any) -> tuple[str, str]:
    """("sha256", hex) for a large (LFS) file, ("git-sha1", hex) for a small one."""
    if sibling.lfs is not None and getattr(sibling.lfs, "sha256", None):
        return "sha256", sibling.lfs.sha256
    if getattr(sibling, "blob_id", None):
        return "git-sha1", sibling.blob_id
    raise ModelError(f"the hub states no hash for {sibling.rfilename}; hushdrop pulls only files it can verify")


def _download(entry: CatalogueModel, filename: str, commit: str, staging: Path, say: Callable[[str], None]) -> Path:
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import HfHubHTTPError

    for attempt in range(1, DOWNLOAD_TRIES + 1):
        try:
            return Path(hf_hub_download(entry.repository, filename, revision=commit, local_dir=staging, endpoint=endpoint()))
        except HfHubHTTPError as exc:
            status = getattr(getattr(exc, "response", None), "status_code", None)
            if status is not None and status < 500:
                raise ModelError(f"{endpoint()} refused {entry.repository}/{filename}: {exc}") from None
            problem = exc
        except Exception as exc:  # a connection broken off mid-file: resume it
            problem = exc
        if attempt < DOWNLOAD_TRIES:
            say(f"the download of {filename} broke off ({type(problem).__name__}); resuming ({attempt + 1} of {DOWNLOAD_TRIES})")
            time.sleep(min(2 ** attempt, 10))
    raise DownloadBrokeOff(
        f"the download of {entry.repository}/{filename} kept breaking off ({type(problem).__name__}: {problem}); "
        f"run the same command again to resume it"
    )


def _check_space(folder: Path, needed: int, entry: CatalogueModel) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(folder).free
    if free < needed + SPACE_MARGIN_BYTES:
        raise ModelError(
            f"not enough free space to pull {entry.name}: it needs {needed / 1e9:.2f} GB and "
            f"{SPACE_MARGIN_BYTES / 1e9:.1f} GB to spare, but {folder} has {free / 1e9:.2f} GB free. Free some "
            f"space, or set HUSHDROP_CACHE to a folder on a larger disk; nothing was downloaded"
        )


def pull(
    entry: CatalogueModel, catalogue: Catalogue, revision: str | None = None, say: Callable[[str], None] = print
) -> Pulled:
    """Download, verify and pin catalogue model ``entry`` (see the module's docstring)."""
    if entry.bundled:
        raise ModelError(f"model {entry.name} is bundled with hushdrop: there is nothing to pull")
    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}:
        raise HubUnreachable(f"HF_HUB_OFFLINE is set, so nothing is downloaded. {_copy_instructions(entry, catalogue)}")
    pinned = read_lock(catalogue.lock_path).get(entry.name)
    if pinned is not None and pinned.get("repository") != entry.repository:
        say(f"{catalogue.lock_path} pins {entry.name} to {pinned.get('repository')}, but it is now {entry.repository}: pinning anew")
        pinned = None
    wanted_revision = revision or (pinned or {}).get("revision") or "main"
    info = _model_info(entry, wanted_revision, catalogue, pinned=revision is None and pinned is not None)
    commit = info.sha
    if not isinstance(commit, str) or not COMMIT.fullmatch(commit):
        raise ModelError(
            f"{endpoint()} answered {commit!r} as the commit of {entry.repository} at {wanted_revision!r}, which is not a "
            f"commit hash (40 hex digits): a broken hub or mirror; nothing was downloaded"
        )
    siblings = _wanted(entry, list(info.siblings or []))
    present = {s.rfilename for s in siblings}
    missing = [name for name in entry.required if name not in present]
    if missing:
        raise ModelError(f"{entry.repository} at {commit[:12]} lacks {', '.join(missing)}: it is not a {entry.engine} model")
    locked_files = (pinned or {}).get("files") if pinned and pinned.get("revision") == commit else None
    if pinned is not None and revision is None and commit != pinned.get("revision"):
        raise ModelError(f"{endpoint()} answered revision {commit} for the pinned {pinned.get('revision')}")
    dest = model_dir(entry, commit)
    size = sum(int(s.size or 0) for s in siblings)
    try:
        with _one_pull_at_a_time(entry, say):
            return _pull_into(entry, catalogue, commit, siblings, dest, size, locked_files, say)
    except OSError as exc:  # the downloads' own faults are ModelErrors already: this is the cache or the lock file
        raise ModelError(
            f"cannot write {exc.filename or 'the model cache'} ({exc.strerror or exc}): make it writable, or set "
            f"HUSHDROP_CACHE to a folder you can write; nothing was installed"
        ) from None


@contextmanager
def _one_pull_at_a_time(entry: CatalogueModel, say: Callable[[str], None]) -> Iterator[None]:
    """Hold this machine's lock on pulling ``entry``: a second pull waits, then finds it pulled
    (two pulls in one staging folder would rename it from under each other)."""
    path = pulled_root().parent / f".pull-{entry.name}.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            say(f"waiting for another pull of {entry.name} on this machine to finish")
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def _pull_into(
    entry: CatalogueModel, catalogue: Catalogue, commit: str, siblings: list[Any], dest: Path, size: int,
    locked_files: dict | None, say: Callable[[str], None],
) -> Pulled:
    if dest.is_dir():
        manifest = _read_manifest(dest)
        if manifest is not None:
            verify_files(dest, manifest)
            _pin(catalogue, entry, commit, manifest, locked_files)
            return Pulled(entry, dest, commit, size, downloaded=False)
    staging = dest.with_name(f".partial-{dest.name}")
    already = sum(p.stat().st_size for p in staging.rglob("*") if p.is_file()) if staging.is_dir() else 0
    _check_space(dest.parent, max(0, size - already), entry)
    say(f"pulling {entry.name} from {endpoint()}/{entry.repository} at {commit[:12]}: {size / 1e6:.0f} MB in {len(siblings)} files")
    staging.mkdir(parents=True, exist_ok=True)
    files: dict[str, dict[str, Any]] = {}
    try:
        for sibling in sorted(siblings, key=lambda s: s.size or 0):
            path = _download(entry, sibling.rfilename, commit, staging, say)
            kind, expected = _expected_hash(sibling)
            actual = sha256_file(path) if kind == "sha256" else _git_blob_sha1(path)
            if actual != expected:
                raise ModelError(
                    f"{sibling.rfilename} from {endpoint()}/{entry.repository} has {kind} {actual}, but the hub states "
                    f"{expected}: the download was altered on the way; nothing was installed. Try again, or another mirror"
                )
            digest = actual if kind == "sha256" else sha256_file(path)
            if locked_files is not None and locked_files.get(sibling.rfilename) != digest:
                raise ModelError(
                    f"{sibling.rfilename} of {entry.name} at {commit[:12]} has sha256 {digest}, but {catalogue.lock_path} "
                    f"pins {locked_files.get(sibling.rfilename)}: the hub now serves other bytes under that revision; "
                    f"nothing was installed"
                )
            files[sibling.rfilename] = {"sha256": digest}
    except BaseException as exc:
        if isinstance(exc, ModelError) and not isinstance(exc, (HubUnreachable, DownloadBrokeOff)):
            shutil.rmtree(staging, ignore_errors=True)  # bytes from a hub that lied are not worth resuming
        raise
    if locked_files is not None and set(locked_files) != set(files):
        shutil.rmtree(staging, ignore_errors=True)
        raise ModelError(f"{entry.name} at {commit[:12]} now has other files than {catalogue.lock_path} pins; nothing was installed")
    shutil.rmtree(staging / ".cache", ignore_errors=True)
    manifest = {
        "name": entry.name,
        "engine": entry.engine,
        "repository": entry.repository,
        "revision": commit,
        "endpoint": endpoint(),
        "pulled_at": time.time(),
        "files": files,
    }
    _write_json(staging / MANIFEST, manifest)
    if dest.exists():
        shutil.rmtree(dest)
    os.rename(staging, dest)
    for name, fact in files.items():  # stamped where they now lie, so the first load hashes nothing
        fact.update(_stamp(os.lstat(dest / name)))
    _write_json(dest / MANIFEST, manifest)
    _pin(catalogue, entry, commit, manifest, locked_files)
    return Pulled(entry, dest, commit, size, downloaded=True)


def _pin(catalogue: Catalogue, entry: CatalogueModel, commit: str, manifest: dict[str, Any], locked: dict | None) -> None:
    if catalogue.lock_path is None:
        return
    files = {name: fact["sha256"] for name, fact in manifest["files"].items()}
    if locked is not None and locked != files:
        raise ModelError(f"model {entry.name} in {pulled_root()} differs from {catalogue.lock_path}: delete it and pull again")
    write_lock_entry(
        catalogue.lock_path,
        entry.name,
        {"engine": entry.engine, "repository": entry.repository, "revision": commit, "files": files},
    )


def profile_model_problems(settings: "Settings") -> list[str]:
    """One line per profile whose model (or aligner) is a catalogue name not pulled here, or pulled
    but differing from models.lock: what `config check` and `watch` say before any job runs."""
    from hushdrop.pipeline.engines.catalogue import for_settings

    cat = for_settings(settings)
    problems: list[str] = []
    seen: set[tuple[str, str]] = set()
    for profile in settings.profiles.values():
        options = profile.transcribe_options()
        for name in (options.model, getattr(options, "aligner", None)):
            if not name or (options.engine, name) in seen:
                continue
            seen.add((options.engine, name))
            entry = cat.find(name, options.engine)
            if entry is None or entry.bundled:
                continue
            try:
                installed(entry, cat)
            except ModelError as exc:
                problems.append(f"profile {profile.name}: {exc}")
    return problems
