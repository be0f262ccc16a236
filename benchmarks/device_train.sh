#!/usr/bin/env bash
# GPU checks of the training step (issue 5), prepared for a lent device machine, about 6 minutes on an H100:
#   1. the CUDA tests of p3m.train.step (CUDA-graph step vs eager step, trainer with train.cuda_graph + resume)
#      and of prepare_batch (uint8 batches converted on the GPU, bit-identical to the CPU);
#   2. benchmarks.bench_train: the eager bf16 + channels_last baseline and each lever, measured in one run (the JSON is
#      rewritten after each mode, so a cut-off run keeps what it measured; the whole script ends within 10 min).
# Run it with the device tool: command "bash benchmarks/device_train.sh", timeout_s 600.
# Needs only the machine's own python3 (torch, pytest, numpy, opencv, pyyaml, tqdm, safetensors are there).
# Results go to $OUT (the device tool brings them back); copy the JSON to benchmarks/results/.
set -u
export PYTHONPATH=src PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/p3m-device}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)"
timeout 110 python3 -m pytest -q -p no:cacheprovider tests/test_train_step.py tests/test_train_data.py -k cuda -rs 2>&1 | tee "$OUT/cuda_tests.txt"
timeout 480 python3 -m benchmarks.bench_train --device cuda --steps 20 \
    --modes "${MODES:-bf16+cl,bf16+cl+fused,bf16+cl+graph,bf16+cl+graph+unpool-nhwc,bf16+cl+fused+compile-ro,bf16+cl+fused+compile-ro+unpool-nhwc}" \
    --json "$OUT/h100_train_levers.json" 2>&1 | tee "$OUT/bench_train.txt"
