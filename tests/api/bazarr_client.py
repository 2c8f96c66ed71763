"""The requests Bazarr's Whisper provider sends, byte for byte, for the tests to send to hushdrop.

Source: morpheus65535/bazarr, ``custom_libs/subliminal_patch/providers/whisperai.py`` (read at
commit 920853daee558751c3abe5755cb04613d28b281c); line numbers below are that file's.

- Audio (``encode_audio_stream``, lines 149-180): ffmpeg decodes the video's audio to raw
  16 kHz mono signed 16-bit little-endian PCM on stdout, through Bazarr's vendored ffmpeg-python,
  whose argv is ``[ffmpeg, -nostdin, -threads, 0, -i, PATH, -f, s16le, -ac, 1, -acodec,
  pcm_s16le, -af, aresample=async=1, -ar, 16000, -, -map, LANG_MAP]`` (ffmpeg-python sorts
  the output options and puts global args last). ``-map`` therefore comes after the output
  and ffmpeg ignores it ("Trailing option(s) found"): Bazarr's choice of an audio stream by
  language never takes effect, ffmpeg picks its default stream. The body is that raw PCM, with no
  WAV header.
- Session (lines 268-270): a ``requests.Session`` whose only own header is
  ``User-Agent: Subliminal/2.1`` (subliminal 2.1.0.dev). No Authorization header, no API key
  setting: the provider's settings are endpoint, response, timeout, loglevel, pass_video_name
  (bazarr/app/config.py lines 291-297, frontend/src/pages/Settings/Providers/list.ts lines
  585-626; its Test Connection button GETs ``http://HOST:PORT/status``, bazarr/app/ui.py
  lines 175-201). requests does send ``Authorization: Basic …`` when the endpoint URL carries
  ``user:password@`` (its ``prepare_auth``), so ``http://bazarr:TOKEN@host:8765`` is the one
  way Bazarr could present a token (hushdrop's API takes only Bearer tokens).
- ``POST {endpoint}/detect-language`` (lines 285-288): query ``encode=false`` (and
  ``video_file=<the video's full path>`` only when pass_video_name is on: the value is a set,
  ``{video_name}``, which requests drops when it holds None), multipart field ``audio_file``
  holding the PCM (``files={'audio_file': out}``: filename ``audio_file``, no Content-Type),
  timeout ``(response, timeout)`` = (5, 3600) s by default. The whole track is sent, not 30 s.
  The answer is read with ``r.json()`` (an undecodable body counts as ``{}``, lines 290-297):
  an empty dict means "could not detect"; otherwise ``results["language_code"]`` (an ISO 639-1
  code) and ``results["detected_language"]`` (a name, used when the code is not alpha-2;
  lines 183-188, 301). The status code is never looked at.
- ``POST {endpoint}/asr`` (lines 387-391): query ``task`` (``transcribe`` or ``translate``),
  ``language`` (Whisper's code of the audio's language from the table at lines 25-125, e.g.
  ``en``, ``de``, ``jw``, ``haw``; ``en`` for an unknown track when the wanted subtitle is
  English, lines 371-381), ``output=srt``, ``encode=false``, ``video_file`` as above; same
  multipart and timeout. The subtitle is ``r.content`` as it is (line 405), whatever the status.
  ``translate`` is asked only for English subtitles (lines 337-340).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import requests

USER_AGENT = "Subliminal/2.1"
RESPONSE_TIMEOUT_S = 5  # Bazarr's whisperai.response default: connect timeout
TRANSCRIPTION_TIMEOUT_S = 3600  # Bazarr's whisperai.timeout default: read timeout


def encode_audio_stream(path: Path, ffmpeg_path: str, audio_stream_language: str | None = None) -> bytes | None:
    """The raw PCM Bazarr sends for ``path`` (whisperai.py lines 149-180), or None where ffmpeg
    fails (Bazarr then sends nothing). ``audio_stream_language``: the ISO 639-2 code Bazarr maps
    a stream by, which lands in the trailing ``-map`` that ffmpeg ignores."""
    lang_map = f"0:m:language:{audio_stream_language}" if audio_stream_language else ""
    argv = [
        ffmpeg_path, "-nostdin", "-threads", "0", "-i", str(path),
        "-f", "s16le", "-ac", "1", "-acodec", "pcm_s16le", "-af", "aresample=async=1", "-ar", "16000", "-",
        "-map", lang_map,
    ]
    proc = subprocess.run(argv, capture_output=True)
    return proc.stdout if proc.returncode == 0 else None


def bazarr_session() -> requests.Session:
    """A session as the provider's ``initialize`` makes it (whisperai.py lines 268-270)."""
    session = requests.Session()
    session.headers["User-Agent"] = USER_AGENT
    return session


def detect_language(
    session: requests.Session, endpoint: str, pcm: bytes, video_name: str | None = None,
    response: int = RESPONSE_TIMEOUT_S, timeout: int = TRANSCRIPTION_TIMEOUT_S,
) -> requests.Response:
    """``POST {endpoint}/detect-language`` exactly as whisperai.py lines 285-288 send it."""
    return session.post(
        f"{endpoint.rstrip('/')}/detect-language",
        params={"encode": "false", "video_file": {video_name}},
        files={"audio_file": pcm},
        timeout=(response, timeout),
    )


def detected(answer: requests.Response) -> dict:
    """The answer as Bazarr reads it (whisperai.py lines 290-297): its JSON, or ``{}``."""
    try:
        return answer.json()
    except requests.exceptions.JSONDecodeError:
        return {}


def asr(
    session: requests.Session, endpoint: str, pcm: bytes, task: str, language: str, video_name: str | None = None,
    response: int = RESPONSE_TIMEOUT_S, timeout: int = TRANSCRIPTION_TIMEOUT_S,
) -> requests.Response:
    """``POST {endpoint}/asr`` exactly as whisperai.py lines 387-391 send it; Bazarr keeps
    ``.content`` as the subtitle, whatever the status."""
    return session.post(
        f"{endpoint.rstrip('/')}/asr",
        params={"task": task, "language": language, "output": "srt", "encode": "false", "video_file": {video_name}},
        files={"audio_file": pcm},
        timeout=(response, timeout),
    )
