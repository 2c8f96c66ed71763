"""`hushdrop watch` serving the page: ten uploads go through, /readyz says ready, /metrics
counts them, and the page stops with the service."""

from __future__ import annotations

import re
import socket

import httpx

from tests.harness import WatchRun, base_config, cheap_wav, wait_for
from tests.web.conftest import csrf_of, free_port, keep_for_review


def metric(text: str, name: str) -> float:
    found = re.search(rf"^{re.escape(name)} (\S+)$", text, re.M)
    assert found, f"{name} missing from\n{text}"
    return float(found.group(1))


def test_ten_uploads_through_a_watching_service_show_in_metrics(tmp_path):
    port = free_port()
    run = WatchRun(tmp_path / "site", base_config(web={"enabled": True, "listen": f"127.0.0.1:{port}"}))
    run.start()
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: "web page at" in run.log_text(), 30, "the web page")
        with httpx.Client(base_url=url, timeout=60) as http:
            token = csrf_of(http)
            headers = {"Origin": url, "X-CSRF-Token": token}
            for n in range(10):
                response = http.post("/api/uploads", params={"name": f"client-call-{n}.wav"}, content=cheap_wav(n, 1.0), headers=headers)
                assert response.status_code == 201, response.text
            wait_for(lambda: len(run.done_names()) == 10, 180, "ten jobs to be done")
            ready = http.get("/readyz")
            assert ready.status_code == 200, ready.text
            jobs = http.get("/api/jobs").json()["jobs"]
            assert [j["state"] for j in jobs] == ["done"] * 10
            text = http.get("/metrics").text
    finally:
        code = run.stop()
    assert code == 0, run.log_text()
    assert metric(text, 'hushdrop_jobs_total{outcome="done"}') == 10
    assert metric(text, "hushdrop_job_duration_seconds_count") == 10
    assert metric(text, 'hushdrop_job_duration_seconds_bucket{le="+Inf"}') == 10
    assert metric(text, 'hushdrop_stage_duration_seconds_count{stage="transcribe"}') == 10
    assert metric(text, "hushdrop_audio_seconds_total") == 10.0
    assert metric(text, 'hushdrop_queue_jobs{state="claimed"}') == 0
    assert metric(text, "hushdrop_oldest_queued_job_age_seconds") == 0
    assert metric(text, "hushdrop_workers") == 1
    assert "client-call" not in text and ".wav" not in text
    excerpt = "\n".join(
        line for line in text.splitlines()
        if line.startswith(("hushdrop_jobs_total", "hushdrop_job_duration_seconds_count", "hushdrop_job_duration_seconds_sum",
                            "hushdrop_stage_duration_seconds_count", "hushdrop_stage_duration_seconds_sum",
                            "hushdrop_audio_seconds_total", "hushdrop_queue_jobs", "hushdrop_oldest", "hushdrop_workers",
                            "hushdrop_build_info"))
    )
    print(excerpt)
    (tmp_path / "metrics.txt").write_text(text)
    keep_for_review("metrics-after-ten-jobs.txt", text=text)
    # the page went away with the service
    try:
        httpx.get(url + "/healthz", timeout=2)
        raise AssertionError("the page still answers after `watch` stopped")
    except httpx.TransportError:
        pass


def test_a_taken_port_costs_the_page_not_the_folder(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        run = WatchRun(tmp_path / "site", base_config(web={"enabled": True, "listen": f"127.0.0.1:{port}"}))
        run.start()
        try:
            wait_for(lambda: "the web page is not served" in run.log_text(), 30, "the reason in the log")
            assert "another program uses the port" in run.log_text()
            run.drop("after.wav", cheap_wav(1))
            wait_for(lambda: run.done_names() == ["after.wav"], 90, "the folder to keep working")
        finally:
            code = run.stop()
    assert code == 0, run.log_text()
