#!/usr/bin/env bash
# Generates the demo's sample video with ffmpeg and espeak-ng (nothing is downloaded): 12 s,
# 720x1280: a hard cut at 4 s, a fade out to black and in from black at 7-9 s (one gradual
# transition, not a cut), on-screen text ("LINK IN BIO"), English speech for the first ~8 s,
# then a tone.
set -euo pipefail
out=${1:-.fleet/sample.mp4}
[ -s "$out" ] && exit 0
mkdir -p "$(dirname "$out")"
font=/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf
[ -e "$font" ] || font=/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf
text="drawtext=fontfile=$font:text='LINK IN BIO':fontcolor=white:fontsize=64:x=(w-text_w)/2:y=h*0.75:box=1:boxcolor=black@0.6"
speech="$(mktemp --suffix=.wav)"
trap 'rm -f "$speech"' EXIT
espeak-ng -v en-us -s 150 -w "$speech" \
  "Hello and welcome. Today I show you three quick editing tricks. Follow for more, and check the link in my bio."
ffmpeg -v error -y \
  -f lavfi -i "testsrc2=size=720x1280:rate=30:duration=4" \
  -f lavfi -i "color=c=0xC03030:size=720x1280:rate=30:duration=4" \
  -f lavfi -i "mandelbrot=size=720x1280:rate=30,trim=duration=4" \
  -i "$speech" \
  -f lavfi -i "sine=frequency=440:sample_rate=48000:duration=4" \
  -filter_complex "[0:v]format=yuv420p,setsar=1[a];[1:v]format=yuv420p,setsar=1,$text,fade=t=out:st=3:d=1[b];[2:v]format=yuv420p,setsar=1,fade=t=in:st=0:d=1[c];[a][b][c]concat=n=3:v=1:a=0[v];[3:a]aresample=48000,aformat=channel_layouts=mono,apad=whole_dur=8[s];[s][4:a]concat=n=2:v=0:a=1[au]" \
  -map "[v]" -map "[au]" -c:v libx264 -preset veryfast -crf 28 -c:a aac -b:a 96k -shortest "$out"
echo "sample video: $out"
