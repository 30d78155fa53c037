#!/bin/bash
# One session on a GPU machine (docs/CUDA.md "On a GPU machine", issue 17),
# run from the repository root there, with .gpu/ made by tools/gpu_pack.sh
# on the build machine beside it. Everything it measures or trains lands in
# $OUT (default /tmp/gpu_out): logs, the benchmark tables, and results.tar.gz
# with the trained models and their loss logs.
#
#   bash tools/gpu_session.sh check       CUDA tests + benchmark (+ ffmpeg at 4K)
#   bash tools/gpu_session.sh styles S1 S2
#         issue 14's v2 recipe (docs/TRAINING.md) on the GPU: every own style,
#         and great_wave with twice the content weight, for S1 s at once
#         (batch 8, weight average); then each one's _live twin for S2 s,
#         warm-started from the shipped twin (tools/distill.py --init).
#         Results: $OUT/results.tar.gz, .gpu/run/v/VARIANT/STYLE{,_live}.safetensors
#   bash tools/gpu_session.sh train S1 S2 S3
#         S1 s: train the own styles (tools/train.py) and distil the _live
#         twins of the reference styles at the same time; then S2 s: distil
#         the _live twins of the freshly trained styles; the CUDA tests run
#         alongside (S3 s at most); the benchmark runs last, on an idle GPU.
#
# Every step has a time limit, so a hang or a failure costs its step only.
set -u
OUT=${OUT:-/tmp/gpu_out}
LOGS=${GPU_LOGS:-/tmp/gpu_logs}  # packed into $OUT/logs.tar.gz at the end (few files come back)
mkdir -p "$OUT" "$LOGS"
T0=$(date +%s)
say() { echo "[$(( $(date +%s) - T0 )) s] $*" | tee -a "$LOGS/session.txt"; }

# -- the build and data carried in .gpu/ ------------------------------------
if [ -f .gpu/pack.tar.xz ] && [ ! -x build/bin/stylize-image ]; then
    tar xJf .gpu/pack.tar.xz -C .gpu || { say "cannot unpack .gpu/pack.tar.xz"; exit 1; }
    mkdir -p build/bin && cp -a .gpu/bin/* build/bin/
fi
export STYLIZE_SHARED=$PWD/.gpu/shared
export STYLIZE_BUILD=$PWD/build
PY=${PY:-python3}
CUDNN=$($PY -c 'import nvidia.cudnn, os; print(os.path.join(list(nvidia.cudnn.__path__)[0], "lib"))' 2>/dev/null)
export LD_LIBRARY_PATH=$PWD/.gpu/lib${CUDNN:+:$CUDNN}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
export OMP_NUM_THREADS=2 PYTHONUNBUFFERED=1
RUN=.gpu/run
mkdir -p $RUN/models $RUN/teachers

{
    nvidia-smi
    nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv
    $PY -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, "cudnn", torch.backends.cudnn.version(), torch.cuda.get_device_name(0))'
    echo "cudnn lib: $CUDNN"; ls "$CUDNN" 2>/dev/null | head
    nproc; uname -a
} > "$LOGS/machine.txt" 2>&1

teachers() {
    for t in mosaic candy; do
        [ -f $RUN/teachers/$t.safetensors ] && continue
        $PY tools/convert_model.py .gpu/shared/models/$t.pth -o $RUN/teachers/$t.safetensors \
            --dtype fp16 --style $t --license BSD-3-Clause >> "$LOGS/convert.txt" 2>&1
    done
}

cuda_info() {
    timeout 60 build/bin/stylize-image -m $RUN/teachers/mosaic.safetensors --backend cuda --info \
        > "$LOGS/cuda_info.txt" 2>&1
    say "stylize-image --backend cuda --info: exit $?"
}

cuda_tests() {  # $1: time limit
    timeout "$1" $PY -m pytest -q -ra -p no:cacheprovider tests/test_cuda.py -k "not is_built_when_configured" \
        > "$LOGS/test_cuda.txt" 2>&1
    say "tests/test_cuda.py: exit $? ($(tail -1 "$LOGS/test_cuda.txt"))"
}

cuda_ref_tests() {  # $1: time limit
    STYLIZE_TEST_BACKEND=cuda STYLIZE_TEST_PRECISION=fp32 timeout "$1" $PY -m pytest -q -ra \
        -p no:cacheprovider tests/test_reference.py -k "not asan" > "$LOGS/test_reference_cuda.txt" 2>&1
    say "tests/test_reference.py on cuda: exit $? ($(tail -1 "$LOGS/test_reference_cuda.txt"))"
}

bench() {  # $1: sizes
    for prec in ${BENCH_PREC:-fp16 bf16}; do
        for mode in tin full; do
            timeout ${BENCH_LIMIT:-120} $PY tools/bench_cuda.py --build build --model $RUN/teachers/mosaic.safetensors \
                --sizes "$1" --precision $prec --mode $mode --frames ${BENCH_FRAMES:-20} --warmup 3 \
                $( [ $prec = bf16 ] && echo --no-torch ) \
                --output "$LOGS/bench_${mode}_${prec}.md" > "$LOGS/bench_${mode}_${prec}.txt" 2>&1
            say "bench $mode $prec: exit $?"
        done
    done
}

ffmpeg_4k() {
    local clip=$RUN/in4k.mp4
    timeout 60 build/bin/ffmpeg -hide_banner -y -f lavfi -i testsrc2=size=3840x2160:rate=30 -frames:v 90 \
        -c:v libx264 -preset ultrafast -pix_fmt yuv420p $clip > "$LOGS/ffmpeg_4k_make.txt" 2>&1
    for mode in ${FFMPEG_MODES:-tin full}; do
        timeout ${BENCH_LIMIT:-120} build/bin/ffmpeg -hide_banner -benchmark -y -i $clip \
            -vf stylize=model=$RUN/teachers/mosaic.safetensors:backend=cuda:mode=$mode \
            -c:v libx264 -preset ultrafast -f null /dev/null > "$LOGS/ffmpeg_4k_$mode.txt" 2>&1
        say "ffmpeg 4K $mode: exit $? $(grep -o 'bench: utime=.*' "$LOGS/ffmpeg_4k_$mode.txt" | tail -1) $(grep -o 'speed=[^ ]*' "$LOGS/ffmpeg_4k_$mode.txt" | tail -1)"
    done
}

train_style() {  # style budget
    $PY tools/train.py --style .gpu/shared/styles/$1.jpg --content .gpu/shared/content/photos \
        --size 256 --batch 8 --iterations 1000000 --time-budget "$2" --tin --tin-prob 0.3 \
        --style-scales 1,2,4 --checkpoint-every 500 --log-every 50 --preview none --threads 2 \
        --vgg .gpu/shared/vgg19 --checkpoint-dir $RUN/train/$1 -o $RUN/models/$1.safetensors \
        > "$LOGS/train_$1.txt" 2>&1
    say "train $1: exit $? ($(tail -1 "$LOGS/train_$1.txt"))"
}

distill() {  # teacher-path name budget
    $PY tools/distill.py --teacher "$1" -o $RUN/models/$2_live.safetensors --style-name $2_live \
        --content .gpu/shared/content/photos --vgg .gpu/shared/vgg19 --time-budget "$3" \
        --threads 2 --checkpoint-every 1000 --log-every 50 --checkpoint-dir $RUN/distill/$2 \
        > "$LOGS/distill_$2.txt" 2>&1
    say "distill $2: exit $? ($(tail -1 "$LOGS/distill_$2.txt"))"
}

# The v2 recipe (retrain_styles.sh) with batch 8 and a time budget: the
# learning-rate schedule follows the clock, so a run ends annealed whatever
# the GPU's speed. VARIANT names the folder, so that every twin's `teacher`
# is STYLE.safetensors as shipped.
train_v2() {  # style variant budget [train.py options]
    local s=$1 v=$2 t=$3
    shift 3
    mkdir -p $RUN/v/$v
    timeout $((t + 90)) $PY tools/train.py --style .gpu/shared/styles/$s.jpg --style-name $s \
        --content .gpu/shared/content/photos --vgg .gpu/shared/vgg19 --tin --size 256 --batch 8 \
        --iterations 1000000 --time-budget "$t" --ema 0.995 --checkpoint-every 500 --keep 1 \
        --log-every 50 --preview none --threads 2 --checkpoint-dir $RUN/train/$v \
        -o $RUN/v/$v/$s.safetensors "$@" > "$LOGS/train_$v.txt" 2>&1
    say "train $v: exit $? ($(tail -1 "$LOGS/train_$v.txt"))"
}

distill_v2() {  # style variant budget init-model
    [ -f $RUN/v/$2/$1.safetensors ] || { say "distill $2: no teacher"; return 1; }
    timeout $(($3 + 90)) $PY tools/distill.py --teacher $RUN/v/$2/$1.safetensors \
        -o $RUN/v/$2/$1_live.safetensors --style-name $1_live --init "$4" \
        --content .gpu/shared/content/photos --vgg .gpu/shared/vgg19 --time-budget "$3" \
        --threads 2 --checkpoint-every 1000 --log-every 50 --checkpoint-dir $RUN/distill/$2 \
        > "$LOGS/distill_$2.txt" 2>&1
    say "distill $2: exit $? ($(tail -1 "$LOGS/distill_$2.txt"))"
}

wait_for_model() {  # a style's training has exported its final model
    while pgrep -f "train.py --style .gpu/shared/styles/$1.jpg" > /dev/null; do sleep 2; done
    [ -f $RUN/models/$1.safetensors ]
}

pack() {
    tar czf "$OUT/results.tar.gz" $RUN/models $RUN/train/*/loss.csv $RUN/distill/*/loss.csv 2>/dev/null
    say "packed $(du -h "$OUT/results.tar.gz" | cut -f1)"
}

STYLES="starry_night great_wave the_scream shipwreck"
[ "${1:-}" = styles ] || teachers
profile() {  # where the time goes at 4K (STYLIZE_CUDA_PROFILE) and the GPU's load meanwhile
    nvidia-smi dmon -s u -d 1 > "$LOGS/dmon.txt" 2>&1 &
    local dmon=$!
    for mode in tin full; do
        for size in 1080p 4k; do
            STYLIZE_CUDA_PROFILE=1 timeout 60 build/bin/stylize-bench -m $RUN/teachers/mosaic.safetensors \
                --backend cuda --precision fp16 --mode $mode --size $size --frames 10 --warmup 2 \
                > "$LOGS/profile_${mode}_$size.txt" 2>&1
            say "profile $mode $size: $(grep -o '"ms_median":[^,]*' "$LOGS/profile_${mode}_$size.txt") $(grep 'cuda profile' "$LOGS/profile_${mode}_$size.txt")"
        done
    done
    if [ -n "${PROFILE_BF16:-}" ]; then
        STYLIZE_CUDA_PROFILE=1 timeout 60 build/bin/stylize-bench -m $RUN/teachers/mosaic.safetensors \
            --backend cuda --precision bf16 --mode tin --size 4k --frames 10 --warmup 2 \
            > "$LOGS/profile_tin_4k_bf16.txt" 2>&1
        say "profile tin 4k bf16: $(grep -o '"ms_median":[^,]*' "$LOGS/profile_tin_4k_bf16.txt") $(grep 'cuda profile' "$LOGS/profile_tin_4k_bf16.txt")"
    fi
    kill $dmon 2>/dev/null
}

case "${1:-check}" in
diag)
    cuda_info
    profile
    cuda_tests 120
    ;;
check)
    cuda_info
    cuda_tests 150
    bench 1080p,4k
    ffmpeg_4k
    cuda_ref_tests 120
    ;;
probe)  # a minute of every training process at once: throughput and sanity
    cuda_info
    for s in $STYLES; do train_style $s "${2:-60}" & done
    for t in mosaic candy; do distill $RUN/teachers/$t.safetensors $t "${2:-60}" & done
    cuda_tests 150
    wait
    BENCH_PREC=fp16 BENCH_LIMIT=60 BENCH_FRAMES=10 bench 1080p,4k
    BENCH_LIMIT=45 ffmpeg_4k
    pack
    ;;
styles)
    S1=${2:-320} S2=${3:-160}
    nvidia-smi dmon -s u -d 5 > "$LOGS/dmon.txt" 2>&1 &
    dmon=$!
    pids=()
    for s in ${V2_STYLES:-$STYLES}; do
        train_v2 $s $s "$S1" & pids+=($!)  # (shipwreck's content weight 3 is train.py's)
    done
    [ -n "${V2_STYLES:-}" ] || { train_v2 great_wave great_wave_cw2 "$S1" --content-weight 2 & pids+=($!); }
    wait "${pids[@]}"
    # the teachers come back even if the distillation overruns the call
    tar czf "$OUT/teachers.tar.gz" $RUN/v $RUN/train/*/loss.csv 2>/dev/null
    pids=()
    for v in $(ls $RUN/v); do
        s=${v%_cw2}
        init=models/${s}_live.safetensors
        [ -f $init ] || init=models/starry_night_live.safetensors  # a new style: any twin's layout
        distill_v2 $s $v "$S2" $init & pids+=($!)
    done
    wait "${pids[@]}"
    kill $dmon 2>/dev/null
    tar czf "$OUT/results.tar.gz" $RUN/v $RUN/train/*/loss.csv $RUN/distill/*/loss.csv 2>/dev/null
    say "packed $(du -h "$OUT/results.tar.gz" | cut -f1)"
    ;;
train)
    # S1: own styles; S2: their _live twins; the reference styles' twins get S1 + S2
    S1=${2:-200} S2=${3:-160}
    for s in $STYLES; do train_style $s "$S1" & done
    for t in mosaic candy; do distill $RUN/teachers/$t.safetensors $t "$((S1 + S2 + 20))" & done
    cuda_tests 130
    cuda_ref_tests 90
    for s in $STYLES; do wait_for_model $s; distill $RUN/models/$s.safetensors $s "$S2" & done
    wait
    pack
    tar czf "$OUT/logs.tar.gz" -C "$(dirname "$LOGS")" "$(basename "$LOGS")"
    PROFILE_BF16=1 profile
    BENCH_PREC=fp16 BENCH_LIMIT=40 BENCH_FRAMES=10 bench 1080p,4k
    BENCH_LIMIT=40 FFMPEG_MODES=tin ffmpeg_4k
    ;;
esac
say "done"
tar czf "$OUT/logs.tar.gz" -C "$(dirname "$LOGS")" "$(basename "$LOGS")"
