"""Edits from the page with hostile text: every output rewritten from them holds it as plain text."""

from __future__ import annotations

import hashlib
import json
import re

from tests.hostile import FORBIDDEN_IN_FILES, HOSTILE_TEXTS, HTML_NAME, assert_outputs_inert
from tests.web.conftest import add_done_job, csrf_of, sample_job, unsafe_headers


def test_edits_with_control_bytes_timing_arrows_blank_lines_and_markup_stay_plain_text(client, settings, ledger):
    job_id = add_done_job(settings, ledger, sample_job(HTML_NAME, ("First words here.", "Second words here.", "Third words here.")))
    files = {p.suffix.lstrip("."): p for p in ledger.get(job_id).outputs}
    sha = re.search(r'data-sha="([0-9a-f]{64})"', client.get(f"/jobs/{job_id}").text).group(1)
    token = csrf_of(client)
    edits = [{"index": i, "text": text} for i, text in enumerate(HOSTILE_TEXTS)]
    response = client.put(f"/api/jobs/{job_id}/transcript", headers=unsafe_headers(client, token),
                          json={"base": sha, "segments": edits})
    assert response.status_code == 200, response.text
    # the sha the page gets back is the file's: its next edit is not refused as stale
    assert response.json()["sha"] == hashlib.sha256(files["json"].read_bytes()).hexdigest()
    record = json.loads(files["json"].read_text())
    assert [s["text"] for s in record["segments"]] == [
        "Alpha beta[2J gamma delta.",
        "one --> two three 00:00:05,000 --> 00:00:09,000 forged",
        HOSTILE_TEXTS[2],
    ]
    assert_outputs_inert(files, HTML_NAME, list(HOSTILE_TEXTS))
    srt = files["srt"].read_text()
    assert "one → two three 00:00:05,000 → 00:00:09,000 forged" in srt.replace("\n", " ")  # text, not a timing line
    assert "&lt;script&gt;" in files["vtt"].read_text() and "&lt;script&gt;" in files["md"].read_text()


def test_an_edit_holding_a_lone_surrogate_is_saved_as_utf8_not_a_500(client, settings, ledger):
    job_id = add_done_job(settings, ledger)
    files = {p.suffix.lstrip("."): p for p in ledger.get(job_id).outputs}
    sha = re.search(r'data-sha="([0-9a-f]{64})"', client.get(f"/jobs/{job_id}").text).group(1)
    body = '{"base": "%s", "segments": [{"index": 0, "text": "Good\\udc80 morning\\u0000\\u001b[2J"}]}' % sha
    response = client.put(f"/api/jobs/{job_id}/transcript", content=body,
                          headers={**unsafe_headers(client, csrf_of(client)), "content-type": "application/json"})
    assert response.status_code == 200, response.text
    for fmt, path in files.items():
        text = path.read_bytes().decode("utf-8")  # strict: every file is valid UTF-8
        assert not FORBIDDEN_IN_FILES.search(text), fmt
    assert json.loads(files["json"].read_text())["segments"][0]["text"] == "Good morning[2J"
