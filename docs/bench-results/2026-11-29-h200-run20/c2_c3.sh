#!/bin/bash
# Run 20 calls 2 and 3: gemm_lt_probe (built here with nvcc -O2 -arch=sm_90 gemm_lt_probe.cu
# -lcublasLt -lcublas): call 2 cublasGemmEx's default against every cuBLASLt heuristic
# candidate at 1-16 rows on Llama-3-8B's decode shapes; call 3 (the source kept here) each
# candidate also with split-K forced to 1-16 and each reduction scheme, at 4-16 rows.
FINAL=$OUT; mkdir -p out
export LD_LIBRARY_PATH=/usr/local/cuda/lib64
nvidia-smi --query-gpu=name,clocks.max.sm --format=csv | tee out/gpu.txt
timeout 300 .gpu-bundle/gemm_lt_probe 2>&1 | tee out/gemm_lt_probe.txt
cp out/* $FINAL/
