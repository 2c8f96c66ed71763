"""The container's entrypoint on this machine, without an image: the config it writes, the ids it
accepts, the folders it checks, the password it makes or takes. (test_image.py runs it for real.)"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
import yaml

from hushdrop.pipeline import container as entry
from hushdrop.pipeline.config import load_config, parse_config
from hushdrop.pipeline.web.security import verify_password

REPO = Path(__file__).resolve().parents[2]


def test_the_config_written_on_first_start_points_at_the_volumes(tmp_path):
    target = tmp_path / "config.yaml"
    assert entry.write_config(target, REPO / "config.yaml")
    settings = load_config(target)
    assert (settings.inbox, settings.outbox, settings.workdir) == (Path("/inbox"), Path("/outbox"), Path("/data"))
    assert settings.web.enabled and settings.web.listen == "0.0.0.0:8765"
    assert settings.web.password_hash is None
    assert settings.shutdown_grace_seconds == entry.CONTAINER_GRACE_SECONDS
    assert settings.profiles["podcast-en"].originals.move_to == Path("/data/archive/podcast-en")
    assert oct(target.stat().st_mode & 0o777) == "0o640"
    # the shipped file's comments stay: it is the same file, with the container's paths
    assert target.read_text().count("\n#") >= (REPO / "config.yaml").read_text().count("\n#")


def test_an_existing_config_is_never_overwritten(tmp_path):
    target = tmp_path / "config.yaml"
    target.write_text("inbox: /elsewhere\n")
    assert not entry.write_config(target, REPO / "config.yaml")
    assert target.read_text() == "inbox: /elsewhere\n"


def test_a_shipped_config_that_no_longer_matches_is_an_error_not_a_wrong_config():
    with pytest.raises(entry.StartError, match="no line matching"):
        entry.container_config_text("inbox: recordings\n")


@pytest.mark.parametrize("env, message", [
    ({"PUID": "0"}, "PUID=0: hushdrop never runs as root"),
    ({"PGID": "0"}, "PGID=0: hushdrop never runs as root"),
    ({"PUID": "alice"}, "PUID='alice' is not a number"),
    ({"UMASK": "999"}, "UMASK='999' is not an octal mask"),
])
def test_bad_ids_are_refused_with_what_to_do(env, message):
    with pytest.raises(entry.StartError, match=re.escape(message)):
        entry.ids_from_env(env)


def test_ids_and_umask():
    assert entry.ids_from_env({}) == (1000, 1000, 0o022)
    assert entry.ids_from_env({"PUID": "99", "PGID": "100", "UMASK": "0027"}) == (99, 100, 0o027)


@pytest.mark.skipif(os.geteuid() != 0, reason="chown to another user needs root")
def test_only_empty_root_owned_volumes_are_claimed(tmp_path):
    empty, full, theirs = (tmp_path / n for n in ("empty", "full", "theirs"))
    for folder in (empty, full, theirs):
        folder.mkdir()
    (full / "a.wav").write_bytes(b"x")
    os.chown(theirs, 4242, 4242)
    claimed = entry.claim_empty_volumes(4321, 4321, (str(empty), str(full), str(theirs), str(tmp_path / "missing")))
    assert claimed == [str(empty)]
    assert (empty.stat().st_uid, full.stat().st_uid, theirs.stat().st_uid) == (4321, 0, 4242)


def test_an_unwritable_folder_is_named_with_the_fix(tmp_path):
    # (a folder that another user owns is refused in test_image.py, by the image as PUID)
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    problem = entry.writable_problem(blocker / "outbox", 4321, 4321)
    assert problem == (
        f"{blocker / 'outbox'} cannot be written by PUID=4321 PGID=4321 (Not a directory; missing): on the host, "
        f"`chown -R 4321:4321` the folder mounted there, or set PUID/PGID to its owner"
    )
    assert entry.writable_problem(tmp_path, os.getuid(), os.getgid()) is None
    assert entry.writable_problem(tmp_path / "new" / "deeper", os.getuid(), os.getgid()) is None
    assert (tmp_path / "new" / "deeper").is_dir()
    assert not list((tmp_path / "new" / "deeper").iterdir())  # the probe file is gone


def container_settings(tmp_path: Path):
    config = tmp_path / "config.yaml"
    entry.write_config(config, REPO / "config.yaml")
    return config, load_config(config)


def test_a_password_is_generated_once_and_only_its_hash_kept(tmp_path):
    config, settings = container_settings(tmp_path)
    password = entry.set_page_password(config, settings, "watch", {})
    assert password and len(password) >= 16
    text = config.read_text()
    assert password not in text
    stored = yaml.safe_load(text)["web"]["password_hash"]
    assert verify_password(password, stored)
    # the next start keeps it and prints nothing
    assert entry.set_page_password(config, load_config(config), "watch", {}) is None
    assert yaml.safe_load(config.read_text())["web"]["password_hash"] == stored
    # the file still has the shipped comments around it
    assert "# The web page (docs/web.md)" in config.read_text()


def test_no_password_for_commands_without_the_page_or_on_loopback(tmp_path):
    config, settings = container_settings(tmp_path)
    assert entry.set_page_password(config, settings, "run", {}) is None
    loopback = parse_config({"web": {"enabled": True, "listen": "127.0.0.1:8765"}}, config)
    assert entry.set_page_password(config, loopback, "watch", {}) is None
    off = parse_config({"web": {"enabled": False, "listen": "0.0.0.0:8765"}}, config)
    assert entry.set_page_password(config, off, "watch", {}) is None
    assert "password_hash" not in (yaml.safe_load(config.read_text())["web"] or {})


def test_a_password_file_sets_it_and_a_changed_file_changes_it(tmp_path):
    config, settings = container_settings(tmp_path)
    secret = tmp_path / "secret"
    secret.write_text("first password\n")
    env = {"HUSHDROP_WEB_PASSWORD_FILE": str(secret)}
    assert entry.set_page_password(config, settings, "watch", env) is None
    first = yaml.safe_load(config.read_text())["web"]["password_hash"]
    assert verify_password("first password", first)
    assert entry.set_page_password(config, load_config(config), "watch", env) is None
    assert yaml.safe_load(config.read_text())["web"]["password_hash"] == first  # unchanged: not rewritten
    secret.write_text("second password")
    entry.set_page_password(config, load_config(config), "watch", env)
    assert verify_password("second password", yaml.safe_load(config.read_text())["web"]["password_hash"])


def test_a_missing_password_file_is_one_line(tmp_path):
    config, settings = container_settings(tmp_path)
    with pytest.raises(entry.StartError, match=r"HUSHDROP_WEB_PASSWORD_FILE=/run/secrets/nope: cannot read it"):
        entry.set_page_password(config, settings, "watch", {"HUSHDROP_WEB_PASSWORD_FILE": "/run/secrets/nope"})


def test_a_too_short_password_file_is_refused(tmp_path):
    config, settings = container_settings(tmp_path)
    secret = tmp_path / "secret"
    secret.write_text("short")
    with pytest.raises(entry.StartError, match="at least 8 characters"):
        entry.set_page_password(config, settings, "watch", {"HUSHDROP_WEB_PASSWORD_FILE": str(secret)})


def test_the_compose_file_wires_the_image_as_documented():
    compose = yaml.safe_load((REPO / "compose.yaml").read_text())
    service = compose["services"]["hushdrop"]
    assert service["build"]["dockerfile"] == "Containerfile"
    mounts = {v.split(":")[1] for v in service["volumes"]}
    assert mounts == {"/config", "/inbox", "/outbox", "/data", "/models"}
    assert any(str(p).endswith(":8765") for p in service["ports"])
    assert {"PUID", "PGID", "UMASK"} <= set(service["environment"])
    assert service.get("profiles") is None  # the service starts with a plain `compose up`
    assert "healthcheck" in service
    assert service["stop_grace_period"]
    for name in ("redis", "worker"):
        assert compose["services"][name]["profiles"] == ["scale-out"], name
    worker = compose["services"]["worker"]
    assert worker["command"][0] == "worker"
    assert "HUSHDROP_BROKER_URL" in worker["environment"]
    # the GPU block is there, commented out, for NVIDIA
    assert "driver: nvidia" in (REPO / "compose.yaml").read_text()


def test_the_healthcheck_is_unhealthy_with_the_reason(tmp_path, capsys):
    import socket

    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    config = tmp_path / "config.yaml"
    config.write_text(f"web:\n  enabled: true\n  listen: 0.0.0.0:{port}\n")
    assert entry.healthcheck({"HUSHDROP_CONFIG": str(config)}) == 1
    assert "unhealthy:" in capsys.readouterr().out
    config.write_text("web:\n  enabled: false\n")
    assert entry.healthcheck({"HUSHDROP_CONFIG": str(config)}) == 1
    assert "the page is off" in capsys.readouterr().out
