"""The page in a real browser against a real service: Debian's Chromium, driven by Playwright,
talking to `hushdrop watch` with the web page on a free loopback port and the real model.

Screenshots (desktop and phone width) are saved under the test's tmp folder, and copied to
$HUSHDROP_REVIEW_DIR when it is set, for a person to look at.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import pytest
import soundfile

from tests.helpers import SPEECH_EN, words
from tests.harness import WatchRun, base_config, wait_for
from tests.web.conftest import free_port, keep_for_review

CHROMIUM = Path("/usr/bin/chromium")
FLAGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync",
    "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
    f"--use-file-for-fake-audio-capture={SPEECH_EN}",
]
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}

if not CHROMIUM.exists() and os.environ.get("HUSHDROP_NO_BROWSER") != "1":
    raise RuntimeError(
        "the browser tests need Debian's Chromium at /usr/bin/chromium: `make test-deps` installs it "
        "(apt-get install chromium); set HUSHDROP_NO_BROWSER=1 to skip them knowingly"
    )
pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="HUSHDROP_NO_BROWSER=1 and no /usr/bin/chromium")


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    port = free_port()
    run = WatchRun(
        tmp_path_factory.mktemp("browser") / "site",
        base_config(web={"enabled": True, "listen": f"127.0.0.1:{port}"}, profile={"originals": "keep"}),
    )
    run.url = f"http://127.0.0.1:{port}"
    run.start()
    wait_for(lambda: "web page at" in run.log_text(), 30, "the web page")
    yield run
    code = run.stop()
    assert code == 0, run.log_text()


@pytest.fixture(scope="module")
def screens(tmp_path_factory):
    folder = tmp_path_factory.mktemp("screens")
    return folder


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=FLAGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser, site):
    context = browser.new_context(viewport=DESKTOP, accept_downloads=True, locale="en-GB",
                                  permissions=["microphone", "clipboard-read", "clipboard-write"])
    requests: list[str] = []
    problems: list[str] = []
    context.on("request", lambda request: requests.append(request.url))
    page = context.new_page()
    page.on("pageerror", lambda error: problems.append(str(error)))
    page.on("console", lambda message: problems.append(message.text) if message.type == "error" else None)
    page.set_default_timeout(30_000)
    yield page
    context.close()
    own = urlparse(site.url).netloc
    outside = [u for u in requests if urlparse(u).scheme not in ("data", "blob") and urlparse(u).netloc != own]
    assert outside == [], f"the page asked another host: {outside}"
    assert problems == [], problems
    assert requests, "the page made no request at all?"


def shoot(page, screens: Path, name: str) -> None:
    """Desktop and phone width, full page; kept in the tmp folder and copied for the lead."""
    for label, size in (("desktop", DESKTOP), ("phone", PHONE)):
        page.set_viewport_size(size)
        page.wait_for_timeout(300)  # the waveforms redraw at the new width
        target = screens / f"{name}-{label}.png"
        page.screenshot(path=str(target), full_page=True)
        keep_for_review(target.name, source=target)
    page.set_viewport_size(DESKTOP)


def row(page, name: str, state: str):
    return page.locator(f'#queue tr[data-name="{name}"][data-state="{state}"]')


def test_a_file_goes_from_the_picker_through_the_queue_to_an_editable_result(page, site, screens, tmp_path):
    long = tmp_path / "long.wav"  # two minutes: the engine reports progress as it goes
    samples, rate = soundfile.read(SPEECH_EN, dtype="int16")
    soundfile.write(long, np.tile(samples, 4), rate, subtype="PCM_16")
    page.goto(site.url + "/")
    assert page.locator("#recorder").is_visible() and page.locator("#mic-insecure").is_hidden()
    page.select_option("#default-language", "en")  # these uploads' own language, not the profile's (auto)
    page.set_input_files("#files", [str(long), str(SPEECH_EN)])
    facts = page.locator('#chosen li[data-name="speech_en.wav"] .facts[data-duration]')
    facts.wait_for()
    assert "00:00:31.92" in facts.inner_text() and "16000 Hz" in facts.inner_text() and "Channels 1" in facts.inner_text()
    page.locator('#chosen li[data-name="long.wav"] .facts[data-duration]').wait_for()
    assert page.locator("#chosen select.language").first.input_value() == "en"
    shoot(page, screens, "1-upload")

    page.click("#upload")
    page.locator('#chosen li[data-name="speech_en.wav"] .status', has_text="Uploaded").wait_for()

    def transcribing():
        running = page.locator('#queue tr[data-name="long.wav"][data-state="processing"]')
        return running.count() == 1 and float(running.get_attribute("data-progress") or 0) >= 0.25 \
            and "left" in running.locator("td.time").inner_text()

    wait_for(transcribing, 180, "long.wav to be part-way through transcribe, with the time left shown")
    shoot(page, screens, "2-in-progress")
    row(page, "speech_en.wav", "done").wait_for(timeout=240_000)
    assert row(page, "long.wav", "done").count() == 1

    [job] = [j for j in site.jobs() if j["name"] == "speech_en.wav"]
    assert job["language"] == "en"  # the choice reached the job through the ledger
    page.click('#queue tr[data-name="speech_en.wav"] a.button')
    page.wait_for_url(f"**/jobs/{job['id']}")
    transcript = page.locator("#transcript")
    transcript.wait_for()
    heard = words(transcript.inner_text())
    for word in ("morning", "garden", "tomatoes", "saturday"):
        assert word in heard, transcript.inner_text()
    assert page.locator("#duration").inner_text() == "00:00:31.92"
    assert page.locator("audio#audio").count() == 1  # originals: keep → it can be played
    assert "whisper base cpu · ~550.0 MB per worker" in page.locator(".facts-grid").inner_text()  # the catalogue's figure
    shoot(page, screens, "3-result")

    # a segment click seeks the original
    second = page.locator("#transcript li.seg").nth(1)
    second.locator(".stamp").click()
    start = float(second.get_attribute("data-start"))
    position = page.evaluate("() => document.getElementById('audio').currentTime")
    assert abs(position - start) < 1.5, (position, start)

    # the .srt download is the outbox's file, byte for byte
    outbox = site.outbox / "default"
    with page.expect_download() as info:
        page.click('a[data-format="srt"]')
    assert Path(info.value.path()).read_bytes() == (outbox / "speech_en.srt").read_bytes()

    # edit a segment: every output is written again; the engine's text stays in the JSON
    page.click("#edit")
    first = page.locator("#transcript li.seg .text").first
    first.fill("Good morning, everyone at the Hushdrop garden.")
    page.click("#save")
    page.locator("#transcript li.seg.edited").first.wait_for(timeout=15_000)
    assert "Hushdrop garden" in (outbox / "speech_en.txt").read_text()
    assert "Hushdrop garden" in (outbox / "speech_en.srt").read_text()
    record = json.loads((outbox / "speech_en.json").read_text())
    edited = [s for s in record["segments"] if s.get("edited")]
    assert len(edited) == 1 and edited[0]["raw_text"] and "Hushdrop" not in edited[0]["raw_text"]

    # copy all: the stamped text, as the .txt has it
    page.click("#copy")
    page.locator("#edit-status", has_text="Copied").wait_for()
    copied = page.evaluate("() => navigator.clipboard.readText()")
    assert copied.startswith("[00:00:00] Good morning, everyone at the Hushdrop garden.\n"), copied
    assert copied.splitlines() == (outbox / "speech_en.txt").read_text().splitlines()

    # search across transcripts, from the header
    page.fill("header input[name=q]", "tomatoes")
    page.press("header input[name=q]", "Enter")
    page.locator("ol.hits li", has_text="speech_en.wav").wait_for()
    assert page.locator("ol.hits mark").first.inner_text().lower() == "tomatoes"
    shoot(page, screens, "4-search")

    # the same page in Simplified Chinese, by the switch
    page.goto(site.url + "/")
    page.click("a.switch")
    page.locator("h2", has_text="添加录音").wait_for()
    shoot(page, screens, "5-upload-zh")
    page.click("a.switch")


def test_a_microphone_take_is_recorded_played_sent_and_transcribed(page, site, screens):
    page.goto(site.url + "/")
    page.click("#rec")
    page.locator("#rec.on").wait_for()
    page.wait_for_timeout(4000)
    shoot(page, screens, "6-recording")
    page.wait_for_timeout(5000)
    page.click("#rec")
    facts = page.locator("#take-facts[data-duration]")
    facts.wait_for()
    assert float(facts.get_attribute("data-duration")) > 8
    page.click("#take-play")
    page.wait_for_timeout(500)
    assert page.locator("#take-play").inner_text() == "Pause"
    page.click("#take-play")
    page.click("#take-send")
    page.locator("#take-status", has_text="Uploaded").wait_for()
    name = page.locator("#take-status").inner_text().split("(")[-1].rstrip(")")
    assert name.startswith("recording-") and name.endswith(".webm")
    row(page, name, "done").wait_for(timeout=240_000)
    page.click(f'#queue tr[data-name="{name}"] a.button')
    transcript = page.locator("#transcript")
    transcript.wait_for()
    heard = words(transcript.inner_text())
    assert "morning" in heard and {"planning", "meeting", "garden"} & set(heard), transcript.inner_text()


def test_off_a_secure_origin_the_record_button_gives_way_to_an_explanation(browser, site):
    """Seen from a plain-HTTP LAN name the browser will not open the microphone: the page says why.
    (The name is routed inside the browser to the loopback server: nothing goes to the network.)"""
    context = browser.new_context(viewport=DESKTOP)
    seen: list[str] = []

    def to_loopback(route):
        seen.append(route.request.url)
        local = route.request.url.replace("http://hushdrop.lan:8765", site.url)
        route.fulfill(response=route.fetch(url=local, headers={**route.request.headers, "host": urlparse(site.url).netloc}))

    context.route("**/*", to_loopback)
    page = context.new_page()
    page.goto("http://hushdrop.lan:8765/")
    explanation = page.locator("#mic-insecure")
    explanation.wait_for()
    assert "tls_cert" in explanation.inner_text() and "127.0.0.1" in explanation.inner_text()
    assert page.locator("#recorder").is_hidden() and page.evaluate("() => window.isSecureContext") is False
    # the page keeps polling: a request still being routed when the context closes is dropped, not an error
    context.unroute_all(behavior="ignoreErrors")
    context.close()
    assert seen and all(u.startswith("http://hushdrop.lan:8765/") for u in seen)
