"""What happens to originals: shred, delete, keep, move; symlinks are never touched."""

from __future__ import annotations

import os

import pytest

from pipeline.config import OriginalsPolicy
from pipeline.retention import RetentionError, apply_policy, overwrite_with_random, shred


def test_shred_overwrites_truncates_and_unlinks(tmp_path):
    original = tmp_path / "secret.wav"
    original.write_bytes(b"VOICE" * 100_000)
    witness = tmp_path / "witness"  # a second name for the same inode sees what shred did to the bytes
    os.link(original, witness)
    shred(original)
    assert not original.exists()
    assert witness.stat().st_size == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["witness"]


def test_overwrite_pass_replaces_every_byte(tmp_path):
    original = tmp_path / "secret.wav"
    payload = b"VOICE" * 300_000
    original.write_bytes(payload)
    fd = os.open(original, os.O_RDWR)
    try:
        overwrite_with_random(fd)
    finally:
        os.close(fd)
    after = original.read_bytes()
    assert len(after) == len(payload)
    assert b"VOICE" not in after


def test_shred_refuses_symlink_and_target_survives(tmp_path):
    target = tmp_path / "outside.wav"
    target.write_bytes(b"keep me")
    link = tmp_path / "link.wav"
    link.symlink_to(target)
    with pytest.raises(RetentionError):
        apply_policy(link, OriginalsPolicy(action="shred"))
    with pytest.raises(RetentionError):
        shred(link)
    assert target.read_bytes() == b"keep me" and link.is_symlink()


def test_keep_delete_move(tmp_path):
    for name in ("a.wav", "b.wav", "c.wav"):
        (tmp_path / name).write_bytes(name.encode())
    apply_policy(tmp_path / "a.wav", OriginalsPolicy(action="keep"))
    assert (tmp_path / "a.wav").exists()
    apply_policy(tmp_path / "b.wav", OriginalsPolicy(action="delete"))
    assert not (tmp_path / "b.wav").exists()
    archive = tmp_path / "archive"
    archive.mkdir()
    (archive / "c.wav").write_bytes(b"older")
    apply_policy(tmp_path / "c.wav", OriginalsPolicy(action="move", move_to=archive))
    assert not (tmp_path / "c.wav").exists()
    assert (archive / "c.wav").read_bytes() == b"older"
    assert (archive / "c (2).wav").read_bytes() == b"c.wav"
