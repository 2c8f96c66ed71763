#!/usr/bin/env bash
# Regenerates the synthetic speech clips under tests/data/ with espeak-ng.
# The texts are written for this project; nothing here comes from elsewhere.
# Needs espeak-ng and ffmpeg (apt-get install espeak-ng ffmpeg); tests use the committed results.
#
#   ./make_speech.sh          every clip
#   ./make_speech.sh de       only speech_de (any of: en de)
set -euo pipefail
cd "$(dirname "$0")"
FFMPEG=${FFMPEG:-ffmpeg}

# make_clip NAME VOICE SPEED: speech_NAME.wav from speech_NAME.txt, read by espeak-ng's VOICE
make_clip() {
  local name=$1 voice=$2 speed=$3
  espeak-ng -v "$voice" -s "$speed" -w "speech_$name.raw.wav" -f "speech_$name.txt"
  # 16 kHz mono 16-bit: small to commit, and what the engine hears anyway
  "$FFMPEG" -hide_banner -loglevel error -y -i "speech_$name.raw.wav" -ac 1 -ar 16000 -c:a pcm_s16le "speech_$name.wav"
  rm -f "speech_$name.raw.wav"
  echo "wrote $(pwd)/speech_$name.wav ($(stat -c %s "speech_$name.wav") bytes)"
}

# English: the clip most tests transcribe
make_en() {
  cat > speech_en.txt <<'TEXT'
Good morning everyone. This is the weekly planning meeting for the garden project.
First, the tomatoes are growing well, but the beans need more water.
Second, we will build a new fence next to the old shed on Saturday.
Please bring gloves, a hammer, and some nails if you have them.
The weather forecast says it will be sunny and warm all weekend.
After the work is done, we will share lunch under the big apple tree.
Thank you for listening, and see you on Saturday morning.
TEXT
  make_clip en en-us 150
}

# German, about 19 s of everyday sentences: what `task: translate` turns into English
# (tests/engines/test_translate.py)
make_de() {
  cat > speech_de.txt <<'TEXT'
Guten Morgen. Heute ist das Wetter schön und warm.
Ich gehe mit meinem Hund in den Park.
Am Nachmittag kaufe ich Brot, Milch und Äpfel im Supermarkt.
Meine Schwester kommt am Abend zum Essen.
Wir kochen zusammen eine Suppe mit Kartoffeln und Karotten.
TEXT
  make_clip de de 140
}

clips=("$@")
[ ${#clips[@]} -gt 0 ] || clips=(en de)
for name in "${clips[@]}"; do
  case $name in
    en) make_en ;;
    de) make_de ;;
    *) echo "unknown clip '$name': use en or de" >&2; exit 2 ;;
  esac
done
