"""The local model hub (tests/modelhub.py) against the real huggingface_hub, over real loopback HTTP.

These pin down what the hub serves and, with it, how huggingface_hub 2.4.0 downloads, which the
`models pull` tests build on:

- `hf_hub_download` does not check a file's sha256: it checks only the size (an `OSError`
  "Consistency check failed" on a short file). A tampered file of the right size is returned as
  if it were fine, so a verified pull must hash the files itself.
- A dropped connection is retried inside the same call (up to 5 times in a row without progress,
  1 s apart), resuming with `Range: bytes=N-`, where N counts only whole 10 MiB chunks
  (`constants.DOWNLOAD_CHUNK_SIZE`) received: a cut within the first 10 MiB restarts from 0.
- With `local_dir`, the partial file is `local_dir/.cache/huggingface/download/<hash>.<etag>.<random>.incomplete`,
  unique to one call and deleted when that call fails: a later call starts from zero, never resumes.

In-process calls pass `endpoint=` (huggingface_hub reads `HF_ENDPOINT` only when it is imported, and
other tests import it first), `token=False` and a `cache_dir` in tmp; one test runs the library in a
subprocess with `hub.environ()`, as `hushdrop models pull` runs.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

pytest.importorskip("huggingface_hub")

import httpx2  # noqa: E402  (huggingface_hub's HTTP client)
from huggingface_hub import HfApi, hf_hub_download  # noqa: E402
from huggingface_hub.errors import (  # noqa: E402
    RemoteEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)

from tests.modelhub import HubFile, LocalHub  # noqa: E402

REPO = "test-org/tiny-model"
MIB = 1 << 20


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def git_hash_object(path: Path) -> str:
    """The git blob id of a file, from real git: the id the hub must state for a file not in LFS."""
    return subprocess.run(["git", "hash-object", str(path)], capture_output=True, text=True, check=True).stdout.strip()


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    """A small model directory: weights big enough to span two 10 MiB download chunks, and a config."""
    folder = tmp_path / "model"
    (folder / "nested").mkdir(parents=True)
    (folder / "model.bin").write_bytes(os.urandom(12 * MIB))
    (folder / "config.json").write_text(json.dumps({"alignment_heads": [[1, 2]], "lang_ids": [1, 2, 3]}))
    (folder / "nested" / "notes.txt").write_text("not needed by the model\n")
    return folder


@pytest.fixture
def hub(model_dir: Path):
    files = {
        "model.bin": model_dir / "model.bin",
        "config.json": model_dir / "config.json",
        "nested/notes.txt": model_dir / "nested" / "notes.txt",
    }
    with LocalHub({REPO: files}) as running:
        yield running


def download(hub: LocalHub, tmp_path: Path, filename: str, revision: str | None = None, into: str = "out") -> Path:
    return Path(
        hf_hub_download(
            REPO,
            filename,
            revision=revision or hub.commit(REPO),
            local_dir=tmp_path / into,
            cache_dir=tmp_path / "hf-cache",
            endpoint=hub.endpoint,
            token=False,
        )
    )


def test_model_info_states_commit_sizes_and_the_sha256_of_lfs_files(hub: LocalHub, model_dir: Path):
    api = HfApi(endpoint=hub.endpoint, token=False)
    commit = hub.commit(REPO)
    assert re.fullmatch(r"[0-9a-f]{40}", commit)

    for revision in (commit, "main"):
        info = api.model_info(REPO, revision=revision, files_metadata=True)
        assert info.sha == commit
        siblings = {s.rfilename: s for s in info.siblings}
        assert set(siblings) == {"model.bin", "config.json", "nested/notes.txt"}

        weights = siblings["model.bin"]
        assert weights.size == 12 * MIB
        assert weights.lfs is not None
        assert weights.lfs.sha256 == sha256_of(model_dir / "model.bin")
        assert weights.lfs.size == 12 * MIB

        config = siblings["config.json"]
        assert config.lfs is None  # as on the Hub: a small text file is plain git, only its git blob id stated
        assert config.size == (model_dir / "config.json").stat().st_size
        assert config.blob_id == git_hash_object(model_dir / "config.json")

    # The same hub, built again from the same files, states the same commit: a lock file can pin it.
    names = ("model.bin", "config.json", "nested/notes.txt")
    with LocalHub({REPO: {name: hub.stated(REPO, name).path for name in names}}) as again:
        assert again.commit(REPO) == commit


def test_unknown_repository_file_and_revision_raise_the_library_errors(hub: LocalHub, tmp_path: Path):
    api = HfApi(endpoint=hub.endpoint, token=False)
    with pytest.raises(RepositoryNotFoundError):
        api.model_info("test-org/no-such-model", files_metadata=True)
    with pytest.raises(RevisionNotFoundError):
        api.model_info(REPO, revision="0" * 40)
    with pytest.raises(RemoteEntryNotFoundError):
        download(hub, tmp_path, "no-such-file.bin")
    with pytest.raises(RevisionNotFoundError):
        download(hub, tmp_path, "model.bin", revision="v9.9")
    assert not (tmp_path / "out" / "model.bin").exists()


def test_a_file_downloads_at_the_commit_with_its_bytes(hub: LocalHub, model_dir: Path, tmp_path: Path):
    path = download(hub, tmp_path, "model.bin")

    assert path == (tmp_path / "out" / "model.bin").resolve()
    assert path.read_bytes() == (model_dir / "model.bin").read_bytes()
    assert [r.method for r in hub.requests_for(REPO, "model.bin", method="HEAD")] == ["HEAD"]
    assert [r.range for r in hub.requests_for(REPO, "model.bin")] == [None]


def test_a_cut_off_download_resumes_with_a_range_request_and_ends_with_the_right_bytes(
    hub: LocalHub, model_dir: Path, tmp_path: Path
):
    hub.cut_after(REPO, "model.bin", 11 * MIB)

    # huggingface_hub retries the dropped connection itself, within this one call (after 1 s),
    # asking for what it lacks; it counts only whole 10 MiB chunks as received.
    path = download(hub, tmp_path, "model.bin")

    assert [r.range for r in hub.requests_for(REPO, "model.bin")] == [None, f"bytes={10 * MIB}-"]
    assert sha256_of(path) == hub.stated(REPO, "model.bin").sha256
    assert list((tmp_path / "out" / ".cache" / "huggingface" / "download").glob("*.incomplete")) == []


def test_a_connection_dropped_every_time_fails_the_call_and_leaves_no_partial_file(hub: LocalHub, tmp_path: Path):
    hub.cut_after(REPO, "model.bin", 0, times=6)

    started = time.monotonic()
    with pytest.raises(httpx2.RemoteProtocolError):
        download(hub, tmp_path, "model.bin")

    # One try and five retries, 1 s apart; then the partial file is deleted, not kept for a later resume.
    assert len(hub.requests_for(REPO, "model.bin")) == 6
    assert time.monotonic() - started < 30
    out = tmp_path / "out"
    assert not (out / "model.bin").exists()
    assert [p.name for p in out.rglob("*") if p.is_file() and p.suffix == ".incomplete"] == []


def test_a_tampered_file_is_served_with_the_stated_hash_but_other_bytes(hub: LocalHub, model_dir: Path, tmp_path: Path):
    stated = hub.stated(REPO, "model.bin")
    hub.tamper(REPO, "model.bin")

    # huggingface_hub checks the size only: it hands the tampered file over without complaint.
    path = download(hub, tmp_path, "model.bin")

    assert path.stat().st_size == stated.size
    assert sha256_of(path) != stated.sha256
    assert sha256_of(model_dir / "model.bin") == stated.sha256
    info = HfApi(endpoint=hub.endpoint, token=False).model_info(REPO, revision=hub.commit(REPO), files_metadata=True)
    assert {s.rfilename: s.lfs.sha256 for s in info.siblings if s.lfs} == {"model.bin": stated.sha256}

    hub.restore(REPO, "model.bin")
    again = download(hub, tmp_path, "model.bin", into="out-again")
    assert sha256_of(again) == stated.sha256


def test_byte_ranges_and_error_codes_over_plain_http(hub: LocalHub, model_dir: Path):
    url = f"{hub.endpoint}/{REPO}/resolve/main/config.json"
    content = (model_dir / "config.json").read_bytes()

    head = urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=10)
    assert head.headers["X-Repo-Commit"] == hub.commit(REPO)
    assert head.headers["ETag"] == f'"{git_hash_object(model_dir / "config.json")}"'
    assert int(head.headers["Content-Length"]) == len(content)
    assert "X-Xet-Hash" not in head.headers  # never Xet: the library falls back to plain HTTP

    lfs_head = urllib.request.urlopen(
        urllib.request.Request(f"{hub.endpoint}/{REPO}/resolve/main/model.bin", method="HEAD"), timeout=10
    )
    assert lfs_head.headers["X-Linked-Etag"] == f'"{sha256_of(model_dir / "model.bin")}"'
    assert lfs_head.headers["X-Linked-Size"] == str(12 * MIB)

    part = urllib.request.urlopen(urllib.request.Request(url, headers={"Range": "bytes=5-9"}), timeout=10)
    assert part.status == 206
    assert part.headers["Content-Range"] == f"bytes 5-9/{len(content)}"
    assert part.read() == content[5:10]

    tail = urllib.request.urlopen(urllib.request.Request(url, headers={"Range": "bytes=-4"}), timeout=10)
    assert tail.read() == content[-4:]

    with pytest.raises(urllib.error.HTTPError) as beyond:
        urllib.request.urlopen(urllib.request.Request(url, headers={"Range": f"bytes={len(content)}-"}), timeout=10)
    assert beyond.value.code == 416

    for path, code in (
        (f"/{REPO}/resolve/main/absent.txt", "EntryNotFound"),
        (f"/{REPO}/resolve/{'1' * 40}/config.json", "RevisionNotFound"),
        ("/test-org/absent/resolve/main/config.json", "RepoNotFound"),
    ):
        with pytest.raises(urllib.error.HTTPError) as missing:
            urllib.request.urlopen(hub.endpoint + path, timeout=10)
        assert (missing.value.code, missing.value.headers["X-Error-Code"]) == (404, code)


def test_a_declared_hash_states_a_sparse_file_larger_than_the_disk_without_reading_it(tmp_path: Path):
    huge = tmp_path / "huge.bin"
    huge.touch()
    size = shutil.disk_usage(tmp_path).free + (1 << 40)  # holes: more than the free disk space, far too much to hash
    os.truncate(huge, size)
    declared = "ab" * 32

    with LocalHub({REPO: {"model.bin": HubFile(huge, sha256=declared)}}) as hub:
        info = HfApi(endpoint=hub.endpoint, token=False).model_info(REPO, files_metadata=True)

    (weights,) = info.siblings
    assert weights.size == size
    assert weights.lfs.sha256 == declared
    assert hub.stated(REPO, "model.bin").etag == declared


def test_a_subprocess_with_the_hub_environment_downloads_a_snapshot_at_main(
    hub: LocalHub, model_dir: Path, tmp_path: Path
):
    hf_home = tmp_path / "hf-home"
    script = (
        "import sys; from huggingface_hub import snapshot_download; "
        "snapshot_download(sys.argv[1], revision='main', local_dir=sys.argv[2], allow_patterns=['*.bin', '*.json'])"
    )
    proc = subprocess.run(
        [sys.executable, "-c", script, REPO, str(tmp_path / "snapshot")],
        # An offline switch or token left in the caller's environment (the CLI sets HF_HUB_OFFLINE for
        # commands that transcribe) must not reach the download.
        env=hub.environ(hf_home, base={**os.environ, "HF_HUB_OFFLINE": "1", "HF_TOKEN": "hf_not_a_token"}),
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert proc.returncode == 0, proc.stderr
    snapshot = tmp_path / "snapshot"
    assert (snapshot / "model.bin").read_bytes() == (model_dir / "model.bin").read_bytes()
    assert (snapshot / "config.json").read_bytes() == (model_dir / "config.json").read_bytes()
    assert not (snapshot / "nested").exists()  # allow_patterns left it out
    assert (hf_home / "hub").is_dir()  # the library's cache went to HF_HOME, not ~/.cache
    paths = [r.path for r in hub.requests]
    assert f"/api/models/{REPO}/revision/main" in paths  # "main" is resolved to the commit first ...
    assert f"/{REPO}/resolve/{hub.commit(REPO)}/model.bin" in paths  # ... and the files fetched at that commit
