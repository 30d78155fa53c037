#!/bin/sh
# The README's demo: stylize a few seconds of a real video and a still with
# the real ffmpeg built by `make`, and leave the results in build/demo/.
# Model: the shipped candy style (pytorch/examples'; it looks best on the demo clip), else any in
# models/, else the pretrained mosaic from
# ../shared converted on the fly. Input: ../shared/media/cockatoo.mp4, else
# FFmpeg's testsrc2 pattern.
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
build=${BUILD:-$top/build}
out=$build/demo
ffmpeg=$build/bin/ffmpeg
shared=${STYLIZE_SHARED:-$top/../shared}
mkdir -p "$out"

[ -x "$ffmpeg" ] || { echo "demo: $ffmpeg is missing: run make first" >&2; exit 1; }

model=$top/models/candy.safetensors
[ -f "$model" ] || model=$(ls "$top"/models/*.safetensors 2>/dev/null | head -n 1 || true)
if [ -z "$model" ]; then
    [ -f "$shared/models/mosaic.pth" ] || { echo "demo: no model in models/ and no $shared/models/mosaic.pth" >&2; exit 1; }
    model=$out/mosaic.safetensors
    [ -f "$model" ] || /usr/bin/python3 "$top/tools/convert_model.py" "$shared/models/mosaic.pth" -o "$model" \
        --style mosaic --source "pytorch/examples fast_neural_style (via ../shared)" --license BSD-3-Clause
fi
echo "demo: model $model"

if [ -f "$shared/media/cockatoo.mp4" ]; then
    input="-i $shared/media/cockatoo.mp4"
else
    input="-f lavfi -i testsrc2=size=1280x720:rate=20"
fi

# 3 seconds at 640 px wide: the portable backend takes about a second a frame.
start=$(date +%s)
# shellcheck disable=SC2086
"$ffmpeg" -hide_banner -loglevel error -stats -y $input -t 3 \
    -vf "scale=640:-2,stylize=model=$model" -c:v libx264 -crf 18 -pix_fmt yuv420p -c:a copy "$out/stylized.mp4"
# The same first frame, original | stylized.
# shellcheck disable=SC2086
"$ffmpeg" -hide_banner -loglevel error -y $input -frames:v 1 \
    -filter_complex "[0:v]scale=640:-2,split[a][b];[b]stylize=model=$model[s];[a][s]hstack" "$out/side_by_side.png"
echo "demo: done in $(( $(date +%s) - start )) s"
echo "demo: video: $out/stylized.mp4"
echo "demo: first frame, original | stylized: $out/side_by_side.png"
