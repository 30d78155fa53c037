#!/bin/bash
# The own styles' v2 retraining (issue 14, docs/TRAINING.md "The v2 recipe")
# as one resumable queue: a CPU session can end before a style's 1500
# iterations do, so every call picks up where the last one stopped. Styles
# run in the order given, JOBS at a time (one thread each: two one-thread
# runs use two cores better than one two-thread run), each resuming from its
# build/train/STYLE_v2/latest.pt when there is one; a finished style leaves
# build/train/STYLE_v2/done and is skipped; a style whose train.py is
# already running is waited for, never started twice. The exports are a
# moving average of the weights (--ema 0.995, about the last 200
# iterations), as single checkpoints jitter while the step size is large.
# 1500 iterations from a warm start, not the 5000 from random weights
# planned first: that run spanned four sessions, and its checkpoints did
# not survive to the next one (great_wave was lost at 2100); 1500 lets the
# cosine schedule and the average finish in about 2.2 hours of one core
# (bf16, Zen 4).
#
# A style starts from a trained style's weights (train.py --init, INIT;
# "none" for random ones): great_wave from starry_night v2 reached in 750
# iterations the style distance a random start had at 1500 (docs/TRAINING.md).
#
#   bash tools/retrain_styles.sh [STYLE ...]     (default: shipwreck)
#   JOBS=2 ITERATIONS=1500 NICE=10 TRAIN_DIR=build/train
#   INIT=models/starry_night.safetensors          (environment, the defaults)
#
# starry_night and the_scream v2 came from a GPU (tools/gpu_session.sh styles,
# 2026-11-30) and shipped, great_wave v2 from this queue's warm start
# (2026-12-01); shipwreck made a texture overlay from a random start on the
# GPU and from a warm start with content weight 1, and shipped from a warm
# start with content weight 3 (2026-12-01, 1000 iterations on two cores;
# models/README.md), the weight train.py gives it (STYLE_SETTINGS).
#
# Logs: build/train/STYLE_v2.log (appended). Stop with
# `pkill -f tools/retrain_styles.sh; pkill -f tools/train.py`: the next call
# loses at most the iterations since the last checkpoint (50).
set -u
cd "$(dirname "$0")/.." || exit 1
SHARED=${STYLIZE_SHARED:-../shared}
PY=${PY:-/usr/bin/python3}
JOBS=${JOBS:-2}
ITERATIONS=${ITERATIONS:-1500}
INIT=${INIT:-models/starry_night.safetensors}
NICE=${NICE:-10}
TRAIN_DIR=${TRAIN_DIR:-build/train}
[ $# -gt 0 ] || set -- shipwreck

train_one() {  # style: runs to the end or until killed
    local s=$1 dir=$TRAIN_DIR/$1_v2
    # a run started by hand (or by another queue) goes on; this one waits for it
    while pgrep -f -- "--checkpoint-dir $dir " > /dev/null; do sleep 30; done
    local start_from=()
    if [ -f "$dir/latest.pt" ]; then
        start_from=(--resume)
    elif [ "$INIT" != none ] && [ "$(basename "$INIT" .safetensors)" != "$s" ]; then
        start_from=(--init "$INIT")  # a fresh start from a trained style
    fi
    mkdir -p "$dir"
    echo "[$(date -u +%FT%TZ)] $s: ${start_from[*]:-start}" >> "$TRAIN_DIR/${s}_v2.log"
    nice -n "$NICE" "$PY" tools/train.py --style "$SHARED/styles/$s.jpg" --tin --size 256 --batch 4 \
        --iterations "$ITERATIONS" --threads 1 --checkpoint-every 50 --keep 2 --ema 0.995 \
        --checkpoint-dir "$dir" -o "$dir/$s.safetensors" "${start_from[@]}" \
        >> "$TRAIN_DIR/${s}_v2.log" 2>&1
    local rc=$?
    if [ $rc -eq 0 ]; then
        touch "$dir/done"
    else
        echo "[$(date -u +%FT%TZ)] $s: train.py exit $rc" >> "$TRAIN_DIR/${s}_v2.log"
    fi
    return $rc
}

for s in "$@"; do
    [ -f "$SHARED/styles/$s.jpg" ] || { echo "retrain_styles: no painting $SHARED/styles/$s.jpg" >&2; exit 1; }
done
for s in "$@"; do
    if [ -f "$TRAIN_DIR/${s}_v2/done" ]; then
        echo "retrain_styles: $s is done ($TRAIN_DIR/${s}_v2/$s.safetensors)"
        continue
    fi
    while [ "$(jobs -rp | wc -l)" -ge "$JOBS" ]; do wait -n; done
    echo "retrain_styles: $s (log $TRAIN_DIR/${s}_v2.log)"
    train_one "$s" &
done
wait
