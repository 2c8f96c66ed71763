"""The tuning set: our own synthesised speech, for choosing thresholds (never the held-out set).

Sentences written for this project, in five languages, spoken by espeak-ng with a few of its
voice variants and speeds, rendered to 16 kHz mono WAV in ``bench/results/tuning/`` (made on
first use, never committed). ``bench/cleaning.py --set tuning`` mixes them with white noise,
mains hum (50 and 60 Hz) and babble made from *other* clips of this set, as ``bench/noise.py``
mixes the held-out clips, and reads them with the chain and the bare engine.

    .venv/bin/python -m bench.tuning_speech        # (re)make the clips, print the manifest
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

from bench.common import RESULTS, SAMPLE_RATE, Clip

FOLDER = RESULTS / "tuning"

# (language, espeak-ng voice, words per minute, text): each about 8 to 14 seconds spoken
SENTENCES: list[tuple[str, str, int, str]] = [
    ("en", "en-us", 150, "The library opens at nine on weekdays. Children may borrow four books at a time, "
     "and the reading room stays quiet until noon."),
    ("en", "en-gb+f3", 140, "Our train was delayed by twenty minutes because of a signal fault near the bridge, "
     "so we missed the first part of the concert."),
    ("en", "en-us+m3", 160, "Please remember to switch off the lights in the kitchen, water the plants on the balcony, "
     "and lock the back door before you leave."),
    ("de", "de", 140, "Der Bus fährt jeden Morgen um sieben Uhr vom Marktplatz ab. Wer zu spät kommt, "
     "muss eine halbe Stunde auf den nächsten warten."),
    ("de", "de+f2", 135, "Im Sommer fahren wir oft an den See. Dort schwimmen die Kinder, "
     "und wir lesen im Schatten der alten Bäume."),
    ("es", "es", 145, "El mercado del barrio abre los sábados por la mañana. Allí compramos fruta fresca, "
     "pan y queso para toda la semana."),
    ("es", "es+f4", 140, "Mi hermano trabaja en un hospital de la ciudad. Cada noche vuelve a casa en bicicleta "
     "y cena con nosotros."),
    ("fr", "fr-fr", 145, "La réunion commence à dix heures dans la grande salle. Nous parlerons du budget "
     "et des projets pour l'année prochaine."),
    ("fr", "fr-fr+m2", 140, "Le boulanger ouvre sa boutique très tôt le matin. Les croissants sont encore chauds "
     "quand les premiers clients arrivent."),
    ("en", "en-gb", 150, "The bakery on the corner sells fresh bread every morning, and on Fridays "
     "they also make a lemon cake that disappears before lunch."),
    ("en", "en-us+f2", 145, "If the printer runs out of paper again, the spare boxes are in the cupboard "
     "under the stairs, behind the old vacuum cleaner."),
    ("en", "en-gb+m4", 155, "We counted forty two birds at the lake this weekend, including a pair of swans "
     "and a heron standing very still in the reeds."),
    ("en", "en-us+f4", 140, "The new schedule starts next month. Meetings move to Tuesday afternoons, "
     "and the monthly report is due on the last Friday."),
    ("de", "de+m3", 140, "Nach dem Regen ist die Straße nass und glatt. Bitte fahr langsam "
     "und pass auf die Kinder auf dem Schulweg auf."),
    ("de", "de+f4", 135, "Unsere Nachbarn haben einen kleinen Garten mit Tomaten, Bohnen und Erdbeeren. "
     "Im Herbst pflanzen sie Tulpen."),
    ("es", "es+m3", 145, "La biblioteca cierra a las ocho de la tarde. Si quieres estudiar más tiempo, "
     "puedes ir a la sala de lectura del centro."),
    ("es", "es+f2", 140, "Este verano viajamos al norte en tren. Vimos montañas verdes, pueblos pequeños "
     "y un río muy tranquilo."),
    ("zh", "cmn", 130, "今天天气很好，我们一起去公园散步吧。下午我还要去超市买一些水果和蔬菜。"),
    ("zh", "cmn+f3", 125, "我的朋友住在北京，他每天坐地铁去上班。周末他喜欢在家里看书和做饭。"),
    ("zh", "cmn+m3", 130, "这个城市的图书馆很大，里面有很多中文和英文的书。学生们经常在那里学习到晚上。"),
]


def _render(voice: str, speed: int, text: str, target: Path) -> None:
    espeak, ffmpeg = shutil.which("espeak-ng"), shutil.which("ffmpeg")
    if espeak is None or ffmpeg is None:
        raise SystemExit("bench: the tuning set needs espeak-ng and ffmpeg on PATH (apt-get install espeak-ng ffmpeg)")
    with tempfile.TemporaryDirectory(prefix="hushdrop-tuning-") as tmp:
        raw = Path(tmp) / "raw.wav"
        subprocess.run([espeak, "-v", voice, "-s", str(speed), "-w", str(raw), text], check=True)
        # half a second of quiet either side, as a recording has: the VAD and the noise floor need pauses
        subprocess.run([ffmpeg, "-hide_banner", "-loglevel", "error", "-y", "-i", str(raw),
                        "-af", "adelay=500,apad=pad_dur=0.5", "-ac", "1", "-ar", str(SAMPLE_RATE),
                        "-c:a", "pcm_s16le", str(target)], check=True)


def tuning_clips(languages: set[str] | None = None) -> list[Clip]:
    """The tuning set's clips (rendered on first use), as :class:`bench.common.Clip` entries."""
    import soundfile

    FOLDER.mkdir(parents=True, exist_ok=True)
    clips = []
    counts: dict[str, int] = {}
    for language, voice, speed, text in SENTENCES:
        counts[language] = counts.get(language, 0) + 1
        if languages and language not in languages:
            continue
        clip_id = f"tune_{language}_{counts[language]}"
        path = FOLDER / f"{clip_id}.wav"
        if not path.is_file():
            _render(voice, speed, text, path)
        info = soundfile.info(str(path))
        clips.append(Clip(clip_id, path, language, info.frames / info.samplerate, text, "tuning"))
    return clips


def tuning_long_clips(languages: set[str] | None = None) -> list[Clip]:
    """One recording per language: that language's tuning clips joined in order (a second of quiet
    between sentences, each clip's own half-second either side), 35 to 80 s of speech that the voice
    detector keeps as one window and Whisper decodes in several 30 s pieces, as it does a meeting."""
    import numpy as np
    import soundfile

    by_language: dict[str, list[Clip]] = {}
    for clip in tuning_clips(languages):
        by_language.setdefault(clip.language, []).append(clip)
    joined = []
    for language, clips in by_language.items():
        path = FOLDER / f"tunelong_{language}.wav"
        if not path.is_file():
            audio = np.concatenate([soundfile.read(str(c.path), dtype="float32")[0] for c in clips])
            soundfile.write(str(path), audio, SAMPLE_RATE, subtype="PCM_16")
        duration = soundfile.info(str(path)).frames / SAMPLE_RATE
        joined.append(Clip(f"tunelong_{language}", path, language, duration, " ".join(c.reference for c in clips), "tuning"))
    return joined


if __name__ == "__main__":
    for clip in tuning_clips():
        print(f"{clip.id}\t{clip.language}\t{clip.duration_s:.1f} s\t{clip.path}")
