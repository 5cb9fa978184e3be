#!/bin/bash
# Run 20 calls 14 and 15: call 13's one failure replayed (14), then with the test's kept set
# under the threshold margin (15) — kernels_gpu_test (with
# the failing row's values printed) at call 13's seed, and its sampling tests three times.
FINAL=$OUT
mkdir -p out15
rm -rf .gpu-bundle/bin .gpu-bundle/lib
tar xJf .gpu-bundle/pack.txz -C .gpu-bundle
xz -dc .gpu-bundle/kernels_gpu_test.xz > .gpu-bundle/bin/kernels_gpu_test && chmod +x .gpu-bundle/bin/kernels_gpu_test
export LD_LIBRARY_PATH=$PWD/.gpu-bundle/lib:/usr/local/cuda/lib64
DSINFER_TEST_SEED=297026146 timeout 120 .gpu-bundle/bin/kernels_gpu_test > out15/kernels_seed_297026146.txt 2>&1
echo "seed 297026146 rc=$?"; grep -E "seed|FAILED|Failure|drew|PASSED" out15/kernels_seed_297026146.txt | head -20
timeout 120 .gpu-bundle/bin/kernels_gpu_test --gtest_filter='KernelsGpu.Sample*' --gtest_repeat=3 > out15/kernels_fresh.txt 2>&1
echo "fresh rc=$?"; grep -E "seed|FAILED|Failure|drew|PASSED" out15/kernels_fresh.txt | head -20
cp out15/* $FINAL/
