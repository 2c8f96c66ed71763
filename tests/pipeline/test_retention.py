"""What happens to originals: shred, delete, keep, move — and what is refused with nothing changed."""

from __future__ import annotations

import hashlib
import os

import pytest

from hushdrop.pipeline.config import OriginalsPolicy
from hushdrop.pipeline.fsutil import identity_of
from hushdrop.pipeline.retention import Action, Disposal, RetentionError, apply_policy, delete, overwrite_with_random, shred
from tests.unprivileged import give_to_user, run_unprivileged


def digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_shred_overwrites_truncates_and_unlinks(tmp_path):
    original = tmp_path / "secret.wav"
    original.write_bytes(b"VOICE" * 100_000)
    witness = os.open(original, os.O_RDONLY)  # an open descriptor sees what shred did to the inode
    try:
        shred(original)
        st = os.fstat(witness)
        assert st.st_size == 0 and st.st_nlink == 0
    finally:
        os.close(witness)
    assert list(tmp_path.iterdir()) == []


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


@pytest.mark.parametrize("action", ["shred", "delete"])
def test_a_hard_linked_file_is_refused_and_both_names_keep_their_bytes(tmp_path, action):
    elsewhere = tmp_path / "elsewhere" / "a.wav"
    elsewhere.parent.mkdir()
    elsewhere.write_bytes(b"a user's only copy" * 1000)
    before = digest(elsewhere)
    inbox_name = tmp_path / "a.wav"
    os.link(elsewhere, inbox_name)
    with pytest.raises(RetentionError, match="hard links"):
        apply_policy(inbox_name, OriginalsPolicy(action=action))
    assert digest(elsewhere) == before and digest(inbox_name) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.wav", "elsewhere"]


def test_a_file_that_is_not_the_claimed_inode_is_refused(tmp_path):
    claimed = tmp_path / "claimed.wav"
    claimed.write_bytes(b"first")
    identity = identity_of(os.stat(claimed))
    held = os.open(claimed, os.O_RDONLY)  # keeps the old inode allocated, so the new file gets another
    try:
        claimed.unlink()
        claimed.write_bytes(b"someone else's file")
        with pytest.raises(RetentionError, match="no longer the file hushdrop claimed"):
            shred(claimed, expect=identity)
    finally:
        os.close(held)
    assert claimed.read_bytes() == b"someone else's file"


def _shred_in(path):
    shred(path)


def test_shred_in_a_read_only_folder_changes_nothing(shared_tree):
    folder = shared_tree / "readonly"
    folder.mkdir()
    original = folder / "talk.wav"
    original.write_bytes(b"SPEECH" * 50_000)
    before = digest(original)
    give_to_user(folder)
    os.chmod(original, 0o644)
    os.chmod(folder, 0o555)  # the file is writable, its folder is not
    with pytest.raises(Exception, match="did not shred .*Permission denied; nothing was changed"):
        run_unprivileged(_shred_in, original)
    assert digest(original) == before and sorted(os.listdir(folder)) == ["talk.wav"]


def test_shred_of_a_read_only_file_changes_nothing(shared_tree):
    original = shared_tree / "talk.wav"
    original.write_bytes(b"SPEECH" * 50_000)
    before = digest(original)
    give_to_user(original)
    os.chmod(original, 0o444)
    with pytest.raises(Exception, match="did not shred .*Permission denied"):
        run_unprivileged(_shred_in, original)
    assert digest(original) == before


def test_keep_delete_move_and_shred_say_what_they_did_as_data(tmp_path):
    for name in ("a.wav", "b.wav", "c.wav", "d.wav"):
        (tmp_path / name).write_bytes(name.encode())
    assert apply_policy(tmp_path / "a.wav", OriginalsPolicy(action="keep")) == Disposal(Action.KEPT, tmp_path / "a.wav")
    assert (tmp_path / "a.wav").exists()
    assert apply_policy(tmp_path / "b.wav", OriginalsPolicy(action="delete")) == Disposal(Action.DELETED, tmp_path / "b.wav")
    assert not (tmp_path / "b.wav").exists()
    archive = tmp_path / "archive"
    archive.mkdir()
    (archive / "c.wav").write_bytes(b"older")
    moved = apply_policy(tmp_path / "c.wav", OriginalsPolicy(action="move", move_to=archive))
    assert moved == Disposal(Action.MOVED, archive / "c (2).wav") and moved.sentence() == f"moved to {archive / 'c (2).wav'}"
    assert not (tmp_path / "c.wav").exists()
    assert (archive / "c.wav").read_bytes() == b"older"
    assert (archive / "c (2).wav").read_bytes() == b"c.wav"
    shredded = apply_policy(tmp_path / "d.wav", OriginalsPolicy(action="shred"))
    assert shredded.sentence() == f"shredded {tmp_path / 'd.wav'}" and not (tmp_path / "d.wav").exists()
    for disposal in (moved, shredded, Disposal(Action.ALREADY_GONE)):  # the ledger's column, and back
        assert Disposal.from_column(disposal.to_column()) == disposal


def test_a_disposal_of_a_name_that_is_not_utf8_survives_the_column(tmp_path):
    disposal = Disposal(Action.MOVED, tmp_path / os.fsdecode(b"r\xe9sum\xe9.wav"))
    assert Disposal.from_column(disposal.to_column()) == disposal


def test_delete_leaves_a_hard_link_alone(tmp_path):
    (tmp_path / "x.wav").write_bytes(b"x")
    os.link(tmp_path / "x.wav", tmp_path / "y.wav")
    with pytest.raises(RetentionError):
        delete(tmp_path / "x.wav")
    assert (tmp_path / "x.wav").exists() and (tmp_path / "y.wav").exists()


def test_what_the_page_and_quarantines_limit_did_is_stored_as_data_and_old_notes_still_read():
    from pathlib import Path

    from hushdrop.pipeline.retention import Action, Disposal

    sent = Disposal(Action.SENT_AGAIN, Path("/srv/inbox/talk (2).wav"), "from the web page")
    assert Disposal.from_column(sent.to_column()) == sent
    assert sent.sentence() == "sent again as /srv/inbox/talk (2).wav (from the web page)"
    # notes written before they were data
    old = Disposal.from_column("sent again from the web page as talk (2).wav")
    assert old.action == Action.SENT_AGAIN and old.target == Path("talk (2).wav")
    assert Disposal.from_column("deleted from the web page").action == Action.SHREDDED
    pruned = Disposal.from_column("removed from quarantine on 2026-12-01 10:00 (over 10 GB; set aside on 2026-09-01)")
    assert pruned.action == Action.SHREDDED and pruned.note.startswith("removed from quarantine")
