"""A local model hub for the tests: the part of the Hugging Face Hub API that ``huggingface_hub`` downloads with.

``LocalHub`` serves model repositories made of files on disk, over real HTTP on ``127.0.0.1`` and a free
port, so tests run the real ``huggingface_hub`` (and the real ``hushdrop models pull``) without the internet::

    with LocalHub({"test-org/whisper-base-test": {"model.bin": model_bin, "config.json": config}}) as hub:
        env = hub.environ(tmp_path / "hf-home")          # HF_ENDPOINT=hub.endpoint, HF_HOME in tmp, ...
        subprocess.run([..., "models", "pull", "base-test"], env=env)
        hub.commit("test-org/whisper-base-test")         # the repository's 40-hex commit hash
        hub.cut_after("test-org/whisper-base-test", "model.bin", 1_000_000)  # next GET drops after 1 MB
        hub.tamper("test-org/whisper-base-test", "model.bin")  # serve other bytes than the hash it states
        hub.requests                                      # [Request(method, path, range), ...]

What it answers, as huggingface.co does (huggingface_hub 2.4.0 reads exactly these):

- ``GET /api/models/{repo}`` and ``/api/models/{repo}/revision/{rev}``: model info. ``sha`` is the commit hash;
  with ``?blobs=true`` (``model_info(files_metadata=True)``) each sibling carries ``size``, ``blobId`` and, for
  LFS files, ``lfs: {sha256, size, pointerSize}``.
- ``GET /api/models/{repo}/tree/{rev}[/{folder}]`` (``list_repo_tree``, which ``snapshot_download`` uses) and
  ``POST /api/models/{repo}/paths-info/{rev}`` (``get_paths_info``): entries with ``oid``, ``size`` and ``lfs``.
- ``HEAD`` / ``GET /{repo}/resolve/{rev}/{filename}``: ``X-Repo-Commit``, ``ETag`` (the sha256 for LFS files, the
  git blob sha1 for the others; ``X-Linked-Etag`` and ``X-Linked-Size`` too for LFS files), ``Content-Length``,
  ``Accept-Ranges``; a ``Range: bytes=...`` request gets ``206`` with ``Content-Range`` (how the library resumes).
- Errors carry the ``X-Error-Code`` the library maps to its exceptions: ``RepoNotFound`` (unknown repository:
  ``RepositoryNotFoundError``), ``RevisionNotFound`` (a revision that is neither the commit hash nor ``main``),
  ``EntryNotFound`` (unknown file: ``RemoteEntryNotFoundError``).

It never advertises Xet storage (no ``X-Xet-Hash`` header), so the library downloads over plain HTTP.

Which files are LFS files: as the Hub's default ``.gitattributes`` has it, weights by extension (``*.bin``,
``*.safetensors``, ...) and anything over 10 MiB; ``HubFile(path, lfs=...)`` decides it per file. As on the real
Hub, the ``blobId`` of an LFS file is the git sha1 of its *pointer* file, and the only content hash stated for a
file that is not in LFS is its git blob sha1 (``sha1(b"blob <size>\\0" + content)``).

Hashes are computed once, when the hub is built (a 145 MB model takes about a second). A file given as
``HubFile(path, sha256=...)`` is never read to hash it: its hash is taken as declared, so a sparse file larger
than the disk can be listed with its true size (``os.truncate``) for a free-space test.

Files are streamed from disk in 1 MiB chunks, never read whole. Imports nothing from hushdrop.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path, PurePosixPath
from types import TracebackType
from typing import Mapping, NamedTuple
from urllib.parse import parse_qs, unquote, urlsplit

HOST = "127.0.0.1"
MAIN = "main"
CHUNK = 1 << 20
LFS_THRESHOLD = 10 << 20
# The Hub's default .gitattributes for a new model repository (the patterns that matter for model files).
LFS_SUFFIXES = frozenset(
    ".7z .arrow .bin .bz2 .ckpt .ftz .gz .h5 .joblib .mlmodel .model .msgpack .npy .npz .onnx .ot .parquet .pb"
    " .pickle .pkl .pt .pth .rar .safetensors .tar .tflite .tgz .wasm .xz .zip .zst".split()
)
# Settings of the caller's environment that would send a subprocess elsewhere than the hub and HF_HOME.
INHERITED_HF_SETTINGS = (
    "HF_TOKEN",
    "HUGGING_FACE_HUB_TOKEN",
    "HF_TOKEN_PATH",
    "HF_HUB_OFFLINE",
    "TRANSFORMERS_OFFLINE",
    "HF_HUB_CACHE",
    "HUGGINGFACE_HUB_CACHE",
    "HF_XET_CACHE",
    "HF_ASSETS_CACHE",
    "HF_HUB_ENABLE_HF_TRANSFER",
    "HF_XET_HIGH_PERFORMANCE",
)
TAMPERED_BYTES = 16  # how many bytes, from the middle of the file, a tampered file serves flipped
COMMIT_DATE = "2026-01-01T00:00:00.000Z"
_HEX40 = re.compile(r"[0-9a-f]{40}")
_HEX64 = re.compile(r"[0-9a-f]{64}")
_RANGE = re.compile(r"bytes=(\d*)-(\d*)")


@dataclass(frozen=True)
class HubFile:
    """A file of a repository on the local hub, with what to state about it.

    ``lfs``: whether the hub serves it as an LFS file (its sha256 stated); ``None`` decides like the Hub's default
    ``.gitattributes``. ``sha256``: a declared hash, taken as is: the file is never read to hash it (for sparse
    files larger than the disk); a file with a declared sha256 is an LFS file unless ``lfs=False``.
    """

    path: Path
    lfs: bool | None = None
    sha256: str | None = None


@dataclass(frozen=True)
class StatedFile:
    """What the hub states about one file: the facts a verified pull must check the bytes against.

    ``etag`` is what ``HEAD /resolve`` sends (``sha256`` for LFS files, ``git_sha1`` for the others).
    ``blob_id`` is the git object id the model info and tree listing carry (for an LFS file: its pointer's).
    ``git_sha1`` (the git blob sha1 of the content) is only known for files that are not in LFS.
    ``sha256`` is stated by the hub only for LFS files (declared or computed); for the others it is
    computed for the tests' own checks and appears in no response.
    """

    name: str
    path: Path
    size: int
    lfs: bool
    sha256: str | None
    git_sha1: str | None
    blob_id: str
    pointer_size: int | None

    @property
    def etag(self) -> str:
        return self.sha256 if self.lfs else self.git_sha1  # type: ignore[return-value]


class Request(NamedTuple):
    """One request the hub received: its method, its path (percent-decoded, without the query) and Range header."""

    method: str
    path: str
    range: str | None


def git_blob_sha1(data: bytes) -> str:
    """The git object id of a blob with this content (what ``git hash-object`` prints)."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def lfs_pointer(sha256: str, size: int) -> bytes:
    """The git-lfs pointer file git stores in place of an LFS file's content."""
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n".encode()


def _hash_file(path: Path, size: int, *, sha256: bool, git_sha1: bool) -> tuple[str | None, str | None]:
    """sha256 and/or git blob sha1 of a file, in one streaming pass."""
    digest256 = hashlib.sha256() if sha256 else None
    digest1 = hashlib.sha1(b"blob %d\0" % size) if git_sha1 else None
    with path.open("rb") as f:
        while chunk := f.read(CHUNK):
            if digest256 is not None:
                digest256.update(chunk)
            if digest1 is not None:
                digest1.update(chunk)
    return (digest256.hexdigest() if digest256 else None, digest1.hexdigest() if digest1 else None)


def _state(name: str, spec: HubFile | Path | str) -> StatedFile:
    hub_file = spec if isinstance(spec, HubFile) else HubFile(Path(spec))
    path = Path(hub_file.path)
    if not path.is_file():
        raise FileNotFoundError(f"local hub: {name} is not a file: {path}")
    size = path.stat().st_size
    declared = hub_file.sha256
    if declared is not None and not _HEX64.fullmatch(declared):
        raise ValueError(f"local hub: declared sha256 of {name} is not 64 lowercase hex digits: {declared!r}")
    lfs = hub_file.lfs
    if lfs is None:
        lfs = declared is not None or PurePosixPath(name).suffix in LFS_SUFFIXES or size > LFS_THRESHOLD
    if lfs:
        sha256 = declared or _hash_file(path, size, sha256=True, git_sha1=False)[0]
        pointer = lfs_pointer(sha256, size)  # type: ignore[arg-type]
        return StatedFile(name, path, size, True, sha256, None, git_blob_sha1(pointer), len(pointer))
    sha256, sha1 = _hash_file(path, size, sha256=declared is None, git_sha1=True)
    return StatedFile(name, path, size, False, declared or sha256, sha1, sha1, None)  # type: ignore[arg-type]


@dataclass(frozen=True)
class _Repo:
    repo_id: str
    files: dict[str, StatedFile]
    commit: str

    @classmethod
    def build(cls, repo_id: str, files: Mapping[str, HubFile | Path | str]) -> "_Repo":
        if repo_id.count("/") > 1 or not repo_id.strip("/") or "/resolve/" in f"/{repo_id}/":
            raise ValueError(f"local hub: not a repository id: {repo_id!r}")
        stated = {name: _state(name, spec) for name, spec in sorted(files.items())}
        # Stable, derived from the content: the same files give the same commit on every run.
        listing = "".join(f"{f.name}\0{f.blob_id}\n" for f in stated.values())
        commit = hashlib.sha1(f"hushdrop local hub\n{repo_id}\n{listing}".encode()).hexdigest()
        return cls(repo_id, stated, commit)

    def resolves(self, revision: str) -> bool:
        return revision in (MAIN, self.commit)


def _tree_entry(f: StatedFile) -> dict:
    entry: dict = {"type": "file", "oid": f.blob_id, "size": f.size, "path": f.name}
    if f.lfs:
        entry["lfs"] = {"oid": f.sha256, "size": f.size, "pointerSize": f.pointer_size}
    return entry


def _folder_entry(folder: str) -> dict:
    return {"type": "directory", "oid": hashlib.sha1(folder.encode()).hexdigest(), "size": 0, "path": folder}


class _HubError(Exception):
    def __init__(self, status: int, code: str | None, message: str, commit: str | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.commit = status, code, message, commit


class LocalHub:
    """A Hugging Face Hub look-alike on loopback, serving ``{repo_id: {filename: file}}`` (see the module doc)."""

    def __init__(self, repos: Mapping[str, Mapping[str, HubFile | Path | str]]):
        self._repos = {repo_id: _Repo.build(repo_id, files) for repo_id, files in repos.items()}
        self._lock = threading.Lock()
        self._cuts: dict[tuple[str, str], list[int]] = {}
        self._tampered: set[tuple[str, str]] = set()
        self._stalls: dict[tuple[str, str], int] = {}
        self._released = threading.Event()
        self._stated_commits: dict[str, str] = {}
        self._listed_only: dict[str, list[str]] = {}
        self.requests: list[Request] = []
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- life cycle ---------------------------------------------------------------------------------------

    def start(self) -> "LocalHub":
        server = ThreadingHTTPServer((HOST, 0), _handler_for(self))
        server.daemon_threads = True
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="local-model-hub", daemon=True
        )
        self._thread.start()
        return self

    def close(self) -> None:
        """Stop serving; the port is closed, so the endpoint is then unreachable."""
        self._released.set()  # a stalled transfer ends, so the server's threads can stop
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def __enter__(self) -> "LocalHub":
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None):
        self.close()

    @property
    def endpoint(self) -> str:
        """``http://127.0.0.1:PORT``: the value for ``HF_ENDPOINT``."""
        if self._server is None:
            raise RuntimeError("local hub is not running: use it as a context manager or call start()")
        return f"http://{HOST}:{self._server.server_address[1]}"

    def environ(self, hf_home: Path, base: Mapping[str, str] | None = None) -> dict[str, str]:
        """An environment for a subprocess that downloads from this hub and from nothing else.

        ``base`` (default: ``os.environ``) plus ``HF_ENDPOINT`` (read by huggingface_hub when it is imported),
        ``HF_HOME`` in ``hf_home`` (the library's cache and token file, so nothing touches ``~/.cache``), telemetry
        and Xet off, loopback exempt from any proxy, and without any token, offline switch or cache path inherited
        from the caller's environment.
        """
        env = dict(os.environ if base is None else base)
        for name in INHERITED_HF_SETTINGS:
            env.pop(name, None)
        no_proxy = ",".join(filter(None, [env.get("NO_PROXY") or env.get("no_proxy"), HOST, "localhost"]))
        env.update(
            HF_ENDPOINT=self.endpoint,
            HF_HOME=str(hf_home),
            HF_HUB_DISABLE_TELEMETRY="1",
            HF_HUB_DISABLE_XET="1",
            HF_HUB_DISABLE_IMPLICIT_TOKEN="1",
            NO_PROXY=no_proxy,
            no_proxy=no_proxy,
        )
        return env

    # -- what it serves -----------------------------------------------------------------------------------

    def commit(self, repo_id: str) -> str:
        """The repository's commit hash (40 hex digits), the ``sha`` of its model info and its ``X-Repo-Commit``."""
        return self._repo(repo_id).commit

    def stated(self, repo_id: str, filename: str) -> StatedFile:
        """What the hub states about a file (size, sha256, git ids): what a verified download must match."""
        return self._file(repo_id, filename)

    def cut_after(self, repo_id: str, filename: str, nbytes: int, times: int = 1) -> None:
        """The next ``times`` GETs of this file send at most ``nbytes`` of body, then drop the connection.

        Their headers still state the full length (``Content-Length``, ``Content-Range``), as a network failure
        mid-transfer looks to the client.
        """
        self._file(repo_id, filename)
        if nbytes < 0 or times < 1:
            raise ValueError("cut_after needs nbytes >= 0 and times >= 1")
        with self._lock:
            self._cuts.setdefault((repo_id, filename), []).extend([nbytes] * times)

    def tamper(self, repo_id: str, filename: str) -> None:
        """From now on serve this file with bytes in its middle flipped: same size, other hash than stated."""
        if self._file(repo_id, filename).size == 0:
            raise ValueError(f"local hub: cannot tamper with {filename}: it is empty")
        with self._lock:
            self._tampered.add((repo_id, filename))

    def stall_after(self, repo_id: str, filename: str, nbytes: int) -> None:
        """The next GET of this file sends at most ``nbytes`` of body, then sends nothing more, keeping the
        connection open, until :meth:`release` or :meth:`close` (a hub or proxy that hangs mid-file)."""
        self._file(repo_id, filename)
        with self._lock:
            self._stalls[(repo_id, filename)] = nbytes

    def release(self) -> None:
        """End every stalled transfer (the connection is then dropped)."""
        self._released.set()

    def state_commit(self, repo_id: str, sha: str) -> None:
        """Model info states ``sha`` as the repository's commit, whatever it is (a hub that lies), and
        ``resolve`` at that revision serves the files."""
        self._repo(repo_id)
        with self._lock:
            self._stated_commits[repo_id] = sha

    def list_only(self, repo_id: str, *names: str) -> None:
        """Model info also lists these file names (hashed as empty files), which the hub never serves."""
        self._repo(repo_id)
        with self._lock:
            self._listed_only.setdefault(repo_id, []).extend(names)

    def restore(self, repo_id: str, filename: str) -> None:
        """Serve this file as it is again: no tampering, no pending cut."""
        with self._lock:
            self._tampered.discard((repo_id, filename))
            self._cuts.pop((repo_id, filename), None)

    def requests_for(self, repo_id: str, filename: str, method: str = "GET") -> list[Request]:
        """The requests of ``method`` that resolved this file (at any revision), in order."""
        prefix = f"/{repo_id}/resolve/"
        with self._lock:
            return [
                r
                for r in self.requests
                if r.method == method
                and r.path.startswith(prefix)
                and r.path[len(prefix) :].partition("/")[2] == filename
            ]

    # -- internals ----------------------------------------------------------------------------------------

    def _repo(self, repo_id: str) -> _Repo:
        try:
            return self._repos[repo_id]
        except KeyError:
            raise KeyError(f"local hub: no repository {repo_id!r} (it has {sorted(self._repos)})") from None

    def _file(self, repo_id: str, filename: str) -> StatedFile:
        try:
            return self._repo(repo_id).files[filename]
        except KeyError:
            raise KeyError(f"local hub: {repo_id} has no file {filename!r}") from None

    def _record(self, request: Request) -> None:
        with self._lock:
            self.requests.append(request)

    def _take_cut(self, repo_id: str, filename: str) -> int | None:
        with self._lock:
            pending = self._cuts.get((repo_id, filename))
            return pending.pop(0) if pending else None

    def _take_stall(self, repo_id: str, filename: str) -> int | None:
        with self._lock:
            return self._stalls.pop((repo_id, filename), None)

    def _is_tampered(self, repo_id: str, filename: str) -> bool:
        with self._lock:
            return (repo_id, filename) in self._tampered

    def _find_repo(self, path: str) -> tuple[_Repo, str]:
        """The repository a path (``org/name/rest``) starts with, and the rest; else 404 RepoNotFound."""
        for repo_id, repo in self._repos.items():
            if path == repo_id or path.startswith(repo_id + "/"):
                return repo, path[len(repo_id):]
        raise _HubError(404, "RepoNotFound", "Repository not found")

    def _at_revision(self, repo: _Repo, revision: str) -> None:
        if not repo.resolves(revision) and revision != self._stated_commits.get(repo.repo_id):
            raise _HubError(404, "RevisionNotFound", f"Invalid rev id: {revision}")


def _handler_for(hub: LocalHub) -> type[BaseHTTPRequestHandler]:
    class Handler(_HubHandler):
        pass

    Handler.hub = hub
    return Handler


class _HubHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "hushdrop-local-hub"
    timeout = 60  # an idle keep-alive connection ends after a minute
    hub: LocalHub

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - the base class's name
        pass  # the tests read hub.requests instead

    def do_HEAD(self) -> None:
        self._serve(body=False)

    def do_GET(self) -> None:
        self._serve(body=True)

    def do_POST(self) -> None:
        self._serve(body=True)

    # -- dispatch -----------------------------------------------------------------------------------------

    def _serve(self, body: bool) -> None:
        url = urlsplit(self.path)
        path = unquote(url.path)
        self.hub._record(Request(self.command, path, self.headers.get("Range")))
        # Read a POST's form before answering, so an error reply leaves the connection usable.
        self._form = parse_qs(self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode())
        try:
            if path.startswith("/api/models/"):
                self._api(path[len("/api/models/"):], parse_qs(url.query), body)
            elif "/resolve/" in path:
                self._resolve(path, body)
            else:
                raise _HubError(404, None, "Not found")
        except _HubError as error:
            self._send_error(error, body)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def _api(self, rest: str, query: dict[str, list[str]], body: bool) -> None:
        repo, tail = self.hub._find_repo(rest)
        if self.command == "POST":
            match = re.fullmatch(r"/paths-info/([^/]+)", tail)
            if not match:
                raise _HubError(404, None, "Not found")
            self.hub._at_revision(repo, match.group(1))
            wanted = self._form.get("paths", [])
            entries = [_tree_entry(repo.files[p]) for p in wanted if p in repo.files]
            folders = {str(parent) for f in repo.files for parent in PurePosixPath(f).parents if str(parent) != "."}
            entries += [_folder_entry(p) for p in wanted if p in folders]
            return self._send_json(entries, repo, body)
        if tail in ("", "/"):
            return self._send_json(self._model_info(repo, query), repo, body)
        match = re.fullmatch(r"/revision/([^/]+)", tail)
        if match:
            self.hub._at_revision(repo, match.group(1))
            return self._send_json(self._model_info(repo, query), repo, body)
        match = re.fullmatch(r"/tree/([^/]+)(?:/(.*))?", tail)
        if match:
            self.hub._at_revision(repo, match.group(1))
            recursive = query.get("recursive", ["False"])[0].lower() == "true"
            return self._send_json(self._tree(repo, (match.group(2) or "").strip("/"), recursive), repo, body)
        raise _HubError(404, None, "Not found")

    def _model_info(self, repo: _Repo, query: dict[str, list[str]]) -> dict:
        blobs = query.get("blobs", ["False"])[0].lower() == "true"
        siblings = []
        for f in repo.files.values():
            sibling: dict = {"rfilename": f.name}
            if blobs:
                sibling.update(size=f.size, blobId=f.blob_id)
                if f.lfs:
                    sibling["lfs"] = {"sha256": f.sha256, "size": f.size, "pointerSize": f.pointer_size}
            siblings.append(sibling)
        for name in self.hub._listed_only.get(repo.repo_id, []):
            siblings.append({"rfilename": name, **({"size": 0, "blobId": git_blob_sha1(b"")} if blobs else {})})
        author, _, _ = repo.repo_id.rpartition("/")
        return {
            "_id": repo.commit[:24],
            "id": repo.repo_id,
            "modelId": repo.repo_id,
            "author": author or None,
            "sha": self.hub._stated_commits.get(repo.repo_id, repo.commit),
            "lastModified": COMMIT_DATE,
            "createdAt": COMMIT_DATE,
            "private": False,
            "gated": False,
            "disabled": False,
            "downloads": 0,
            "likes": 0,
            "tags": [],
            "siblings": siblings,
            "usedStorage": sum(f.size for f in repo.files.values()),
        }

    def _tree(self, repo: _Repo, folder: str, recursive: bool) -> list[dict]:
        below = [f for f in repo.files.values() if not folder or f.name.startswith(folder + "/")]
        if folder and not below:
            raise _HubError(404, "EntryNotFound", f"{folder} does not exist on {MAIN}", repo.commit)
        entries: list[dict] = []
        seen_folders: set[str] = set()
        depth = folder.count("/") + 1 if folder else 0
        for f in below:
            parts = f.name.split("/")
            for level in range(depth + 1, len(parts)):
                sub = "/".join(parts[:level])
                if sub not in seen_folders and (recursive or level == depth + 1):
                    seen_folders.add(sub)
                    entries.append(_folder_entry(sub))
            if recursive or len(parts) == depth + 1:
                entries.append(_tree_entry(f))
        return entries

    def _resolve(self, path: str, body: bool) -> None:
        repo_part, _, rest = path[1:].partition("/resolve/")
        repo, extra = self.hub._find_repo(repo_part)
        if extra:
            raise _HubError(404, "RepoNotFound", "Repository not found")
        revision, _, filename = rest.partition("/")
        self.hub._at_revision(repo, revision)
        stated = repo.files.get(filename)
        if stated is None:
            raise _HubError(404, "EntryNotFound", f"Entry not found: {filename}", repo.commit)
        start, end = 0, stated.size - 1
        requested = self.headers.get("Range") if self.command == "GET" else None
        if requested is not None:
            start, end = self._byte_range(requested, stated.size)
        length = max(end - start + 1, 0)

        self.send_response(206 if requested is not None else 200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(length))
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("X-Repo-Commit", repo.commit)
        self.send_header("ETag", f'"{stated.etag}"')
        if stated.lfs:
            self.send_header("X-Linked-Etag", f'"{stated.sha256}"')
            self.send_header("X-Linked-Size", str(stated.size))
        if requested is not None:
            self.send_header("Content-Range", f"bytes {start}-{end}/{stated.size}")
        self.send_header("Content-Disposition", f'inline; filename="{PurePosixPath(filename).name}"')
        self.end_headers()
        if body and self.command == "GET":
            self._stream(repo.repo_id, stated, start, length)

    def _byte_range(self, header: str, size: int) -> tuple[int, int]:
        match = _RANGE.fullmatch(header.strip())
        if not match or not (match.group(1) or match.group(2)):
            raise _HubError(416, None, f"Unsupported range: {header}")
        first, last = match.groups()
        if first:
            start, end = int(first), min(int(last), size - 1) if last else size - 1
        else:
            start, end = max(size - int(last), 0), size - 1
        if start >= size or start > end:
            raise _HubError(416, None, f"Range not satisfiable: {header} (size {size})")
        return start, end

    def _stream(self, repo_id: str, stated: StatedFile, start: int, length: int) -> None:
        cut = self.hub._take_cut(repo_id, stated.name)
        stall = self.hub._take_stall(repo_id, stated.name)
        budget = length if cut is None else min(cut, length)
        budget = budget if stall is None else min(stall, budget)
        flip_from = stated.size // 2 if self.hub._is_tampered(repo_id, stated.name) else stated.size
        flip_to = min(flip_from + TAMPERED_BYTES, stated.size)
        position, sent = start, 0
        with stated.path.open("rb") as f:
            f.seek(start)
            while sent < budget:
                chunk = f.read(min(CHUNK, budget - sent))
                if not chunk:
                    break  # the file shrank on disk: the client sees a short body
                if position < flip_to and position + len(chunk) > flip_from:
                    chunk = _flip(chunk, max(flip_from - position, 0), min(flip_to - position, len(chunk)))
                self.wfile.write(chunk)
                position += len(chunk)
                sent += len(chunk)
        if sent < length:
            self.wfile.flush()
            if stall is not None:
                self.hub._released.wait()
            self.close_connection = True  # drop the connection: the rest of the stated length never comes

    def _send_json(self, payload: object, repo: _Repo, body: bool) -> None:
        data = json.dumps(payload).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("X-Repo-Commit", repo.commit)
        self.end_headers()
        if body:
            self.wfile.write(data)

    def _send_error(self, error: _HubError, body: bool) -> None:
        data = json.dumps({"error": error.message}).encode()
        self.send_response(error.status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        if error.code:
            self.send_header("X-Error-Code", error.code)
        self.send_header("X-Error-Message", error.message)
        if error.commit:
            self.send_header("X-Repo-Commit", error.commit)
        self.end_headers()
        if body and self.command != "HEAD":
            self.wfile.write(data)


def _flip(chunk: bytes, lo: int, hi: int) -> bytes:
    changed = bytearray(chunk)
    for i in range(lo, hi):
        changed[i] ^= 0xFF
    return bytes(changed)


def repo_from_folder(folder: Path) -> dict[str, Path]:
    """A model directory as a repository: ``{name in the repository: path}`` for every regular file under it."""
    return {
        path.relative_to(folder).as_posix(): path
        for path in sorted(Path(folder).rglob("*"))
        if path.is_file() and not path.is_symlink()
    }
