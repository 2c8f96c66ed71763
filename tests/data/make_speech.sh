#!/usr/bin/env bash
# Regenerates the synthetic speech clips under tests/data/ with espeak-ng.
# The texts are written for this project; nothing here comes from elsewhere.
# Needs espeak-ng and ffmpeg (apt-get install espeak-ng ffmpeg); tests use the committed results.
set -euo pipefail
cd "$(dirname "$0")"
FFMPEG=${FFMPEG:-ffmpeg}

cat > speech_en.txt <<'TEXT'
Good morning everyone. This is the weekly planning meeting for the garden project.
First, the tomatoes are growing well, but the beans need more water.
Second, we will build a new fence next to the old shed on Saturday.
Please bring gloves, a hammer, and some nails if you have them.
The weather forecast says it will be sunny and warm all weekend.
After the work is done, we will share lunch under the big apple tree.
Thank you for listening, and see you on Saturday morning.
TEXT

espeak-ng -v en-us -s 150 -w speech_en.raw.wav -f speech_en.txt
# 16 kHz mono 16-bit: small to commit, and what the engine hears anyway
"$FFMPEG" -hide_banner -loglevel error -y -i speech_en.raw.wav -ac 1 -ar 16000 -c:a pcm_s16le speech_en.wav
rm -f speech_en.raw.wav
echo "wrote $(pwd)/speech_en.wav ($(stat -c %s speech_en.wav) bytes)"
