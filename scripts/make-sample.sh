#!/usr/bin/env bash
# Generates the demo's sample video with ffmpeg (nothing is downloaded): 12 s, 720x1280,
# three shots with hard cuts, a fade, on-screen text ("LINK IN BIO"), a tone and silence.
set -euo pipefail
out=${1:-.fleet/sample.mp4}
[ -s "$out" ] && exit 0
mkdir -p "$(dirname "$out")"
font=/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf
[ -e "$font" ] || font=/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf
text="drawtext=fontfile=$font:text='LINK IN BIO':fontcolor=white:fontsize=64:x=(w-text_w)/2:y=h*0.75:box=1:boxcolor=black@0.6"
ffmpeg -v error -y \
  -f lavfi -i "testsrc2=size=720x1280:rate=30:duration=4" \
  -f lavfi -i "color=c=0xC03030:size=720x1280:rate=30:duration=4" \
  -f lavfi -i "mandelbrot=size=720x1280:rate=30,trim=duration=4" \
  -f lavfi -i "sine=frequency=440:sample_rate=48000:duration=8" \
  -f lavfi -i "anullsrc=r=48000:cl=mono,atrim=duration=4" \
  -filter_complex "[0:v]format=yuv420p,setsar=1[a];[1:v]format=yuv420p,setsar=1,$text[b];[2:v]format=yuv420p,setsar=1,fade=t=out:st=3:d=1[c];[a][b][c]concat=n=3:v=1:a=0[v];[3:a][4:a]concat=n=2:v=0:a=1[au]" \
  -map "[v]" -map "[au]" -c:v libx264 -preset veryfast -crf 28 -c:a aac -b:a 96k -shortest "$out"
echo "sample video: $out"
