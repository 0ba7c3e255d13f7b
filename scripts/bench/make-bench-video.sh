#!/usr/bin/env bash
# The GPU benchmark's video (a benchmark input, not test ground truth): 30 s, 1080x1920, 30 fps,
# H.264 + AAC. Three 10 s scenes with hard cuts and a fade: a face (scikit-image's astronaut,
# NASA, public domain) slowly zooming under a boxed caption; a busy grass texture panning with
# the face moving across it and a second caption; a fade from black into a brick wall with a
# cat (CC0) and a third caption. Sound: a tone with noise.
#
#   scripts/bench/make-bench-video.sh OUT.mp4
# The images come from the scikit-image wheel (PyPI), fetched into .fleet/bench/.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
OUT="${1:?usage: make-bench-video.sh OUT.mp4}"
IMG="$ROOT/.fleet/bench/img"
FONT=/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf
if [ ! -f "$IMG/astronaut.png" ]; then
    mkdir -p "$ROOT/.fleet/bench/whl" "$IMG"
    python3 -m pip download -q --no-deps --only-binary=:all: scikit-image==0.25.2 -d "$ROOT/.fleet/bench/whl"
    unzip -q -o -j "$ROOT"/.fleet/bench/whl/scikit_image-0.25.2-*.whl \
        skimage/data/astronaut.png skimage/data/grass.png skimage/data/brick.png \
        skimage/data/chelsea.png -d "$IMG"
fi
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
printf 'LINK IN BIO' > "$T/c1"; printf 'SALE 50%% OFF TODAY' > "$T/c2"; printf 'Follow for more' > "$T/c3"
cap() { echo "drawtext=fontfile=$FONT:textfile=$1:expansion=none:fontsize=$2:fontcolor=white:box=1:boxcolor=black@0.75:boxborderw=18:x=(w-text_w)/2:y=$3"; }
ffmpeg -v error -y \
  -loop 1 -framerate 30 -t 10 -i "$IMG/astronaut.png" \
  -loop 1 -framerate 30 -t 10 -i "$IMG/grass.png" \
  -loop 1 -framerate 30 -t 10 -i "$IMG/brick.png" \
  -loop 1 -framerate 30 -t 10 -i "$IMG/chelsea.png" \
  -loop 1 -framerate 30 -t 10 -i "$IMG/astronaut.png" \
  -f lavfi -t 30 -i "sine=frequency=440:sample_rate=44100,volume=0.3" \
  -filter_complex "
    [0:v]scale=2160:-1,zoompan=z='1+0.0015*on':x='iw/2-(iw/zoom/2)':y='ih/2-(ih/zoom/2)':d=1:s=1080x1920:fps=30,$(cap "$T/c1" 72 'h*0.72'),setsar=1[a];
    [1:v]scale=-1:1920,crop=1080:1920:'mod(t*120,iw-1080)':0,setsar=1[g];
    [4:v]scale=420:420,setsar=1[f];
    [g][f]overlay=x='40+t*55':y=500,$(cap "$T/c2" 64 'h*0.78'),setsar=1[b];
    [2:v]scale=-1:1920,crop=1080:1920,setsar=1[w];
    [3:v]scale=700:-1,setsar=1[cat];
    [w][cat]overlay=x=190:y=600,fade=t=in:st=0:d=1.5,$(cap "$T/c3" 60 'h*0.15'),setsar=1[c];
    [a][b][c]concat=n=3:v=1:a=0,format=yuv420p[v]" \
  -map "[v]" -map 5:a -r 30 -c:v libx264 -preset veryfast -crf 23 -c:a aac -b:a 96k -t 30 "$OUT"
echo "wrote $OUT ($(du -h "$OUT" | cut -f1))"
