#!/usr/bin/env bash
# The GPU figures, in about 10 minutes on one GPU: the throughput table on MNIST (float32 / bf16, eager /
# compiled) and the defaults a user types on MNIST, Wavelet Flow against both Glows at one budget.
#
#   bash benchmarks/gpu.sh [DATA_DIR] [OUT_DIR]
#
# DATA_DIR holds mnist.npz (default ../shared/data); OUT_DIR receives throughput_gpu.json, defaults_gpu.json and
# the log (default benchmarks/results/gpu). It needs PyTorch with CUDA and this package's dependencies (numpy,
# pillow, tqdm, safetensors, matplotlib); the package itself runs from this checkout (PYTHONPATH), nothing is
# installed. Every figure is written with the GPU's name (nvidia-smi) and the CPU model.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${1:-../shared/data}
OUT=${2:-benchmarks/results/gpu}
BUDGET=${WAVELETFLOW_GPU_BUDGET:-90}
mkdir -p "$OUT"
export PYTHONPATH="$PWD/src:$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 PYTHONWARNINGS=ignore
PY=${PYTHON:-python3}
wf() { "$PY" -m waveletflow "$@"; }
{
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
  "$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name(0))"
  # 1. images/s of one training step per level and per Glow, float32 and bf16, eager and compiled (~4 min)
  "$PY" -m benchmarks.throughput --device cuda --datasets mnist --steps 20 --data-dir "$DATA" \
      --out "$OUT/throughput_gpu.json"
  # 2. the defaults against each other: each model for $BUDGET s, then the test bits/dim (~5 min)
  rm -rf "$OUT/runs"
  for model in waveletflow glow glow-residual; do
    wf train --data "$DATA/mnist.npz" --out "$OUT/runs/$model" --model "$model" --time-budget "$BUDGET" \
        --device cuda --quiet --no-curves
    wf evaluate "$OUT/runs/$model" --data "$DATA/mnist.npz" --limit 2000 --json --device cuda \
        > "$OUT/runs/$model.eval.json"
  done
  "$PY" - "$OUT" "$BUDGET" <<'EOF'
import json, sys, pathlib
from benchmarks.machine import machine
out, budget = pathlib.Path(sys.argv[1]), float(sys.argv[2])
rows = []
for model in ("waveletflow", "glow", "glow-residual"):
    run = json.loads((out / "runs" / model / "run.json").read_text())
    ev = json.loads((out / "runs" / f"{model}.eval.json").read_text())
    steps = [json.loads(p.read_text())["step"] for p in sorted((out / "runs" / model).glob("level_*/state.json"))]
    rows.append({"model": model, "budget_s": budget, "test_bpd": ev["bits_per_dim"], "steps": steps,
                 "training": run.get("training"), "capacity": run.get("capacity")})
(out / "defaults_gpu.json").write_text(json.dumps({"machine": machine(), "rows": rows}, indent=1) + "\n")
print(json.dumps(rows, indent=1))
EOF
  rm -rf "$OUT/runs"
} 2>&1 | tee "$OUT/gpu.log"
