#!/usr/bin/env bash
# Issue 11 on the H200: one device call (scripts/README_gpu.md). Host prep first:
#   bash scripts/prepare_device_issue11.sh
# then the run tool with
#   command="bash scripts/device_issue11.sh"  carry=[".whl", ".data"]  timeout_s=600
# MODE ($1): all (Jacobian timing, then training in what is left of LIMIT s), time, train.
# Env overrides (CPU dry run: README_gpu.md): LIMIT TIME_S CHUNKS CAND TIME_ARGS TRAIN_ARGS OUT SITE.
S=$(date +%s); MODE=${1:-all}; LIMIT=${LIMIT:-570}; TIME_S=${TIME_S:-180}
export PYTHONUNBUFFERED=1 PIFS_DATA_DIR=$PWD/.data OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"; exec > >(tee "$OUT/device.log") 2>&1
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target ${SITE:=/tmp/site} .whl/*.whl || exit 1
export PYTHONPATH=$SITE:$PWD
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv
python3 -c "import torch,diffusers;print('torch',torch.__version__,'diffusers',diffusers.__version__,torch.cuda.is_available() and torch.cuda.get_device_name())" || exit 1
if [ "$MODE" != train ]; then
  timeout -s INT $TIME_S python3 benchmarks/gpu_full_jacobian.py --budget-s $((TIME_S - 40)) \
    --chunks ${CHUNKS:-128,256,512,1024,2048} --sweep-columns 2048 --precisions fp32,tf32 \
    --out-md "$OUT/timing.md" --out-json "$OUT/timing.json" ${TIME_ARGS:-}
  echo "timing: rc $? after $(( $(date +%s) - S )) s"
fi
if [ "$MODE" != time ]; then
  M=$(python3 -c "print(round(max(0.5, min(8, ($LIMIT - ($(date +%s) - $S) - 50) / 60)), 2))")
  echo "training for $M min"
  python3 scripts/gpu_train_cifar10.py --out "$OUT/ckpt" --minutes $M --candidate ${CAND:-ddpm-c32} ${TRAIN_ARGS:-}
  echo "training: rc $? after $(( $(date +%s) - S )) s"
fi
ls -la "$OUT" "$OUT/ckpt" 2>/dev/null
