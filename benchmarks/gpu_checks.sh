#!/usr/bin/env bash
# Every GPU check and benchmark of the project, in one run on a lent GPU machine (device tool:
# `run` with this command from the repo root, timeout_s 600). The machine has torch + CUDA,
# numpy, networkx and no flwr: the vectorised engine and the CLI's `run --engine vectorized`
# import no Flower, so the package runs from the working tree on PYTHONPATH. Results land in
# $OUT (the device tool brings them back): commit them under benchmarks/results/.
#
#   1. the cuda-marked tests: CPU and GPU runs of one config agree (SGD, Adam, digits), the GPU
#      run with tensor-native rounds; key compile replays CUDA graphs with the eager numbers and
#      launches fewer than half the eager round's kernels; draws equal the CPU's
#   2. vectorized_round.py --device cuda: N = 10, 1000 (Erdős–Rényi; also with key compile, i.e.
#      CUDA graphs) and 10,000, 100,000 (small-world k = 4), engine through the CLI against the
#      bare iteration
#   3. tensor_rounds.py --device cuda: tensor-native rounds against numpy rounds, N = 1000, 10,000
#
# In two calls where one is too short for all (a call runs at most 600 s): `gpu_checks.sh 1`
# (items 1 and 2 at N = 10, 1000), then `gpu_checks.sh 2` (the rest); no argument: all.
# None of it has run yet: no GPU has been lent to this project since it was written.
#
# Goals (issue 24): one round at N = 10 at most 2 ms, N = 1000 at most 5 ms, N = 10,000 at most
# 40 ms, N = 100,000 (sparse graph) at most 320 ms and 70 GB.
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
OUT="${OUT:-/tmp/gpu-checks}"
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total --format=csv | tee "$OUT/gpu.txt"
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)" | tee -a "$OUT/gpu.txt"
PART="${1:-all}"
if [[ "$PART" != 2 ]]; then
    timeout 300 python3 -m pytest -q -m cuda tests/test_devices.py tests/test_streams.py 2>&1 | tee "$OUT/cuda_tests.log"
    (cd benchmarks && timeout 280 python3 vectorized_round.py --device cuda --agents 10,1000) 2>&1 | tee "$OUT/vectorized_round_cuda.log"
fi
if [[ "$PART" != 1 ]]; then
    (cd benchmarks && timeout 300 python3 vectorized_round.py --device cuda --agents 10000,100000 --topology small-world \
        --compiled-agents "") 2>&1 | tee "$OUT/vectorized_round_cuda_small_world.log"
    (cd benchmarks && timeout 200 python3 tensor_rounds.py --device cuda --agents 1000,10000) 2>&1 | tee "$OUT/tensor_rounds_cuda.log"
fi
cp benchmarks/results/tensor_rounds-cuda.json "$OUT"/ 2>/dev/null || true
cp benchmarks/results/vectorized_round-cuda*.json "$OUT"/ 2>/dev/null || true
