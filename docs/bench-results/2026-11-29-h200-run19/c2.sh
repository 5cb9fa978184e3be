#!/usr/bin/env bash
# Run 19 call 2: the tensor-core GEMV's shapes side by side (DSINFER_GEMV_VARIANT, a scratch
# switch): 0 = 2 KiB pieces of 16 rows, up to 4 stages, one block an SM; 1 = the same at 2
# stages and two blocks; 2 = 4 KiB pieces of 16 rows where two stages fit; 3 = 4 KiB pieces of
# 8 rows, 2 stages, two blocks. Each: the GEMV kernel tests, then the linear table.
cd "$(dirname "$0")/.."
FINAL=$OUT
export OUT=$PWD/out2
mkdir -p $OUT
tar xJf .gpu-bundle/pack.txz -C .gpu-bundle
export LD_LIBRARY_PATH=$PWD/.gpu-bundle/lib:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
bin=.gpu-bundle/bin
ls $bin | head -30
for v in 0 1 2 3; do
  export DSINFER_GEMV_VARIANT=$v
  timeout 60 $bin/kernels_gpu_test --gtest_filter='*Gemv*' > $OUT/gemv_test_v$v.txt 2>&1
  echo "v$v test rc=$?"; tail -1 $OUT/gemv_test_v$v.txt
  timeout 90 $bin/dsinfer-bench --attention dense --models llama3-8b --batches 1 --contexts 256 \
    --iters 2 --graphs=false --linear_algos auto --dependent_launch on --long_prefill_layers 1 \
    --json_out $OUT/linear_v$v.json > $OUT/linear_v$v.log 2>&1
  echo "v$v bench rc=$?"; grep -E "^step" $OUT/linear_v$v.log
done
unset DSINFER_GEMV_VARIANT
timeout 150 /usr/local/cuda/bin/ncu --kernel-name regex:GemvKernel --launch-skip 3610 \
  --launch-count 2 --section SpeedOfLight --section MemoryWorkloadAnalysis \
  --section WarpStateStats --section Occupancy \
  $bin/dsinfer-bench --attention dense --models llama3-8b --batches 1 --contexts 256 --iters 2 \
  --graphs=false --linear_algos auto --dependent_launch on --long_prefill_layers 1 \
  > $OUT/ncu_gemv_v0.txt 2>&1
echo "ncu rc=$?"
tar czf $FINAL/call2.tgz -C $OUT .
