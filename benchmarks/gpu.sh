#!/usr/bin/env bash
# The GPU checks, in one pass, on a machine with one CUDA GPU (run from the repository root):
#
#     bash benchmarks/gpu.sh OUTDIR
#     python benchmarks/gpu_report.py OUTDIR      # the markdown tables for the README
#
# 1. the GPU tests (pytest -m gpu);
# 2. CUDA latency of every roadmap step, synchronized after each iteration (roadmap.measure.latency):
#    fused against unfused, contiguous against channels_last, at batch 1 and batch 256;
# 3. torch.compile latency of the two endpoints (fused), beside their eager numbers above;
# 4. AMP training throughput of `roadmap train` against a plain timm loop
#    (benchmarks/train_throughput.py) on synthetic data at 224 px;
#    and the training step alone with the batch on the GPU (benchmarks/train_step.py);
# 5. `torchrun --nproc_per_node=1` end to end: a short AMP training run of the last step.
#
# Every step writes OUTDIR/<name>.out and .err and its exit status to OUTDIR/status.txt; one
# failing step does not stop the others. Each step has a time limit (STEP_TIMEOUT seconds).
set -u
OUT_DIR=${1:?usage: bash benchmarks/gpu.sh OUTDIR}
PY=${PYTHON:-python3}
STEP_TIMEOUT=${STEP_TIMEOUT:-150}
mkdir -p "$OUT_DIR"
export PYTHONUNBUFFERED=1
ROADMAP="$PY -m roadmap"

step() {
    local name=$1
    shift
    local started=$SECONDS
    echo "== $name: $*"
    timeout "$STEP_TIMEOUT" "$@" >"$OUT_DIR/$name.out" 2>"$OUT_DIR/$name.err"
    local rc=$?
    echo "$name rc=$rc seconds=$((SECONDS - started))" | tee -a "$OUT_DIR/status.txt"
    [ "$rc" = 0 ] || tail -5 "$OUT_DIR/$name.err"
}

{
    nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv
    $PY -c "import platform, torch, timm; print('torch', torch.__version__, 'cuda',
torch.version.cuda, 'timm', timm.__version__, 'python', platform.python_version());
print(torch.cuda.get_device_name())"
    nproc
} >"$OUT_DIR/machine.txt" 2>&1
cat "$OUT_DIR/machine.txt"

step pytest_gpu $PY -m pytest -q -p no:cacheprovider -m gpu tests/

LAT="$ROADMAP latency --all --device cuda --format json"
step latency_b1_fused $LAT --batch 1 --warmup 20 --iters 200
step latency_b1_unfused $LAT --batch 1 --warmup 20 --iters 200 --unfused
step latency_b1_channels_last $LAT --batch 1 --warmup 20 --iters 200 --channels-last
step latency_b256_fused $LAT --batch 256 --warmup 5 --iters 40
step latency_b256_unfused $LAT --batch 256 --warmup 5 --iters 40 --unfused
step latency_b256_channels_last $LAT --batch 256 --warmup 5 --iters 40 --channels-last

for network in mobilenetv3_large alternating_se; do
    step "compile_b1_$network" $ROADMAP latency --upto "$network" --device cuda --format json \
        --backend compile --batch 1 --warmup 10 --iters 200
done
step compile_b256_alternating_se $ROADMAP latency --upto alternating_se --device cuda \
    --format json --backend compile --batch 256 --warmup 5 --iters 40

step train_amp $PY benchmarks/train_throughput.py --device cuda --amp --workers 8 \
    --img-size 224 --batch-size 256 --images 5120 --epochs 3 --rounds 2 \
    --write "$OUT_DIR/train_amp.md"

step train_step $PY benchmarks/train_step.py --device cuda --steps mobilenetv3_large,alternating_se

step torchrun torchrun --standalone --nproc_per_node=1 -m roadmap train --upto alternating_se \
    --data synthetic:5120 --recipe quick --epochs 2 --img-size 224 --batch-size 256 \
    --device cuda --amp --workers 8 --out "$OUT_DIR/runs"
cat "$OUT_DIR/status.txt"
