"""Notifications in one process: the config keys, what `config check` says, and the sender's
bounded delivery through Apprise to a real HTTP receiver on loopback."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pytest

from hushdrop.pipeline import notify
from hushdrop.pipeline.config import parse_config, profile_document, profile_from_document
from hushdrop.pipeline.errors import ConfigError
from tests.harness import hushdrop, wait_for


def settings_with(tmp_path: Path, **top):
    raw = {"profiles": {"default": {}, "meetings": {"folder": "meetings"}}, **top}
    return parse_config(raw, tmp_path / "config.yaml")


def test_notifications_are_off_until_urls_are_configured(tmp_path):
    settings = settings_with(tmp_path)
    assert settings.notify.urls == [] and not settings.notify_text
    assert notify.all_urls(settings) == [] and notify.start(settings) is None


def test_a_profile_inherits_notify_from_default_and_may_replace_it(tmp_path):
    settings = settings_with(
        tmp_path,
        notify={"urls": ["json://127.0.0.1:9/global"]},
        profiles={
            "default": {"notify": {"urls": ["json://127.0.0.1:9/default"], "events": ["done"]}, "notify_text": True},
            "meetings": {"folder": "meetings"},
            "private": {"folder": "private", "notify": {"urls": []}, "notify_text": False},
        },
    )
    assert notify.route_for(settings, "meetings").urls == ["json://127.0.0.1:9/default"]
    assert notify.route_for(settings, "meetings").events == ["done"] and notify.wants_text(settings, "meetings")
    assert not notify.route_for(settings, "private").wants("done") and not notify.wants_text(settings, "private")
    assert notify.route_for(settings, None).urls == ["json://127.0.0.1:9/global"]  # the service's own events
    # the URLs (tokens) are the coordinator's: a remote worker's copy of the profile has none
    document = profile_document(settings.profiles["meetings"])
    assert "notify" not in document and "notify_text" not in document
    assert profile_from_document(document).notify is None


def test_a_url_apprise_cannot_read_is_a_config_error_naming_its_place_not_its_secret(tmp_path):
    with pytest.raises(ConfigError) as caught:
        settings_with(tmp_path, notify={"urls": ["json://127.0.0.1:9/ok", "nonsense://s3cret-token@host"]},
                      profiles={"default": {}, "meetings": {"folder": "meetings", "notify": {"urls": ["just words"]}}})
    problems = "\n".join(caught.value.problems)
    assert "notify.urls.1: Apprise cannot read a nonsense:// URL" in problems, problems
    assert "profiles.meetings.notify.urls.0: Apprise cannot read" in problems, problems
    assert "s3cret" not in problems
    with pytest.raises(ConfigError, match="notify.events.0"):
        settings_with(tmp_path, notify={"urls": ["json://127.0.0.1:9/x"], "events": ["finished"]})


def test_config_check_prints_the_hosts_notifications_contact(tmp_path):
    config = tmp_path / "config.yaml"
    config.write_text(
        "notify:\n  urls: ['json://127.0.0.1:8099/hook', 'tgram://123456:secret/42']\n"
        "profiles:\n  default: {}\n  meetings:\n    notify: {urls: ['ntfys://push.example.org/topic']}\n"
    )
    checked = hushdrop(config, "config", "check")
    assert checked.returncode == 0, checked.stderr
    assert "notifications: sent to 127.0.0.1:8099, api.telegram.org, push.example.org" in checked.stdout
    assert "secret" not in checked.stdout
    config.write_text("profiles:\n  default: {}\n")
    assert "notifications: off" in hushdrop(config, "config", "check").stdout


def test_the_link_goes_only_to_an_address_others_can_open(tmp_path):
    def link(**top):
        return notify.job_link(settings_with(tmp_path, **top), 7)

    assert link() is None  # the page on loopback: a phone cannot open it
    assert link(web={"listen": "0.0.0.0:8765"}) is None  # every address: which name reaches it is unknown
    assert link(web={"listen": "192.168.1.5:8765"}) == "http://192.168.1.5:8765/jobs/7"
    assert link(notify={"page_url": "https://nas.example.org/hushdrop/"}) == "https://nas.example.org/hushdrop/jobs/7"
    with pytest.raises(ConfigError, match="notify.page_url"):
        link(notify={"page_url": "nas.example.org"})


def test_a_failed_delivery_is_retried_with_backoff_until_it_arrives(receiver):
    receiver.failures = 2
    sender = notify.Sender(attempts=4, backoff_seconds=0.2)
    started = time.monotonic()
    sender.send(notify.Message("done", "Transcribed: a.wav", "File: a.wav", (receiver.url(),), 1))
    (arrived,) = wait_for(lambda: receiver.delivered(), 10, "the delivery after two failures")
    assert receiver.tries() == 3 and arrived.title == "Transcribed: a.wav" and arrived.message == "File: a.wav"
    assert time.monotonic() - started >= 0.2 + 0.4  # the waits doubled
    sender.close()


def test_a_receiver_that_is_down_gets_bounded_tries_and_one_log_line_naming_its_host(receiver, closed_port, caplog):
    receiver.failures = -1  # answers 500, always
    caplog.set_level(logging.WARNING, logger="hushdrop")
    sender = notify.Sender(attempts=3, backoff_seconds=0.1)
    down = f"json://127.0.0.1:{closed_port}/hook"
    sender.send(notify.Message("quarantined", "Set aside: a.wav", "File: a.wav", (receiver.url(), down), 5))
    wait_for(lambda: len([r for r in caplog.records if "could not be sent" in r.getMessage()]) == 2, 30, "both give-ups")
    assert receiver.tries() == 3  # every try of a delivery comes before its give-up
    lines = [r.getMessage() for r in caplog.records if "could not be sent" in r.getMessage()]
    assert any(f"127.0.0.1:{receiver.port} after 3 tries" in line for line in lines), lines
    assert any(f"127.0.0.1:{closed_port} after 3 tries" in line for line in lines), lines
    sender.close()


def test_sending_never_blocks_and_a_stop_is_bounded(closed_port, caplog):
    caplog.set_level(logging.WARNING, logger="hushdrop")
    sender = notify.Sender(attempts=5, backoff_seconds=60)  # every retry waits far past the stop
    down = (f"json://127.0.0.1:{closed_port}/hook",)
    started = time.monotonic()
    for i in range(notify.QUEUE_SIZE + 50):
        sender.send(notify.Message("done", f"t{i}", "b", down, i))
    assert time.monotonic() - started < 2.0  # a full queue drops, it does not wait
    assert any("further ones are dropped" in r.getMessage() for r in caplog.records)
    started = time.monotonic()
    sender.close(timeout=1.0)
    assert time.monotonic() - started < 1.0 + 0.5 + 1.0
    wait_for(lambda: any("not sent: hushdrop stopped" in r.getMessage() for r in caplog.records), 10, "the give-up at stop")


def test_the_coordinators_quarantine_sends_one_message_whose_name_cannot_forge_a_line(tmp_path, receiver):
    """Through the real hook (``finish.quarantine_job``) on a real ledger: a name with a newline
    and a forged ``Job:`` line stays on its own line of the message."""
    from hushdrop.pipeline.watch.finish import quarantine_job
    from hushdrop.pipeline.watch.ledger import Ledger
    from hushdrop.pipeline.watch.protocol import Fault
    from tests.watch.conftest import make, processing

    settings = make(tmp_path, notify={"urls": [receiver.url()], "page_url": "https://nas.example.org"})
    ledger = Ledger(settings.ledger_path)
    notify.start(settings)
    try:
        row = processing(settings, ledger, name="call\nJob: evil.example.wav")
        quarantine_job(settings, ledger, row, "decode", f"cannot read {row.spool_path}", Fault.RECORDING)
        (arrived,) = wait_for(lambda: receiver.delivered(), 10, "the quarantined notification")
    finally:
        notify.stop()
        ledger.close()
    assert arrived.title == "Set aside: call\\nJob: evil.example.wav"
    lines = arrived.message.splitlines()
    assert [line for line in lines if line.startswith("Job:")] == [f"Job: https://nas.example.org/jobs/{row.id}"]
    assert "File: call\\nJob: evil.example.wav" in lines
    assert "Reason: cannot read <spool>/" in arrived.message and str(tmp_path) not in arrived.message
