#!/usr/bin/env bash
# The GPU figures of issues 9 and 12 in one prepared run (about 5 minutes on one H100):
#   1. the Flax MNIST example CNN, seconds per epoch on full MNIST: nnlab (auto = scanned epoch,
#      per-step engine, bfloat16) against the Flax example loop, and training seconds to 99% test
#      accuracy with compilation apart (benchmarks/flax_cnn.py);
#   2. 8 vmapped CNN seeds against one model, nn.Conv and patches @ kernel (benchmarks/seeds_vmap.py);
#   3. one training step of the ResNet study on the GPU and on the same machine's CPU, 1 and 3
#      members (benchmarks/study_step.py; this project's 2-core CPU is measured with the same command).
# Each part runs under its own time limit and a failing part does not stop the others.
#
#     NNLAB_DATA_DIR=../shared/data benchmarks/gpu.sh benchmarks/results/gpu
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:-benchmarks/results/gpu}
py=${PYTHON:-python3}
mkdir -p "$out"
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

part() {
  local limit=$1 name=$2
  shift 2
  echo "== $name: $* (limit ${limit} s)"
  local start=$SECONDS
  timeout "$limit" "$@" 2>&1 | tee "$out/$name.log"
  echo "== $name: exit ${PIPESTATUS[0]} after $((SECONDS - start)) s"
}

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$out/device.txt"
"$py" -c "import jax, flax, optax, numpy; print('jax', jax.__version__, 'flax', flax.__version__, 'optax',
optax.__version__, 'numpy', numpy.__version__, jax.devices())" | tee -a "$out/device.txt"

part 150 flax_cnn "$py" benchmarks/flax_cnn.py --epochs 4 --engines auto,step --bf16 --no-torch \
  --json "$out/flax_cnn_gpu.json"
part 120 seeds_vmap "$py" benchmarks/seeds_vmap.py --skip-mlp --members 8 --epochs 3 --json "$out/seeds_vmap_gpu.json"
for members in 1 3; do
  part 45 "study_step_gpu_s$members" "$py" benchmarks/study_step.py --members "$members" \
    --json "$out/study_step_gpu_s$members.json"
done
part 60 study_step_hostcpu_s1 env JAX_PLATFORMS=cpu "$py" benchmarks/study_step.py --json "$out/study_step_hostcpu_s1.json"
