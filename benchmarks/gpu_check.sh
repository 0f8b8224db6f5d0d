#!/usr/bin/env bash
# One prepared GPU check, under 8 minutes: perf_eval on CUDA with a ViT-B/32-size randomly
# initialised CLIP at bf16 (224 px views, batch 1024, 3,000 SynthRef images). Prints the raw
# encoder's views/s against the runner's end to end for each view path (exact, resized, device:
# workers only decode, views drawn and resized on the GPU), the efficiency ratios, the device
# path's drawing alone, and each path's agreement with the exact views.
#   bash benchmarks/gpu_check.sh            # on a machine with an NVIDIA GPU and torch installed
# Wheels for packages the machine lacks may be put in .whl/ (installed offline, without deps).
set -euo pipefail
cd "$(dirname "$0")/.."
site=${REFBENCH_SITE:-/tmp/refbench-site}
mkdir -p "$site"
if compgen -G ".whl/*.whl" >/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --target "$site" .whl/*.whl
fi
python3 -m pip install -q --no-index --no-deps --no-build-isolation --no-compile --target "$site" . plugins/clip_shaded
export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 - <<'PY'
import torch, open_clip
print("torch", torch.__version__, "open_clip", open_clip.__version__, "cuda", torch.cuda.is_available())
PY
workers=$(( $(nproc) > 13 ? 12 : $(nproc) - 1 ))
python3 benchmarks/perf_eval.py --device cuda --arch ViT-B-32 --precision bf16 --batch-size 1024 \
    --workers "$workers" --random-init --images "${IMAGES:-3000}" --loop-images 100 --raw-views 8192 --skip c \
    --views exact resized device --repeats "${REPEATS:-2}" --data "${DATA:-/tmp/refbench-perf}"
