#!/usr/bin/env bash
# Run 19 call 4: the tensor-core GEMV with its loads in a producer warp (variants 5-7) beside
# call 3's best (2): 5 = 2 KiB pieces of 16 rows, up to 4 stages; 6 = the same, up to 8 stages;
# 7 = 4 KiB pieces where two stages fit, up to 4; one block an SM. Each: the GEMV kernel
# tests, the linear table, decode end to end (Llama-3-8B, 32K, batch 4, 8, 16).
cd "$(dirname "$0")/.."
FINAL=$OUT
export OUT=$PWD/out4
mkdir -p $OUT
tar xJf .gpu-bundle/pack.txz -C .gpu-bundle
export LD_LIBRARY_PATH=$PWD/.gpu-bundle/lib:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
bin=.gpu-bundle/bin
for v in 5 6 7 2; do
  export DSINFER_GEMV_VARIANT=$v
  timeout 60 $bin/kernels_gpu_test --gtest_filter='*Gemv*' > $OUT/gemv_test_v$v.txt 2>&1
  echo "v$v test rc=$?"; tail -1 $OUT/gemv_test_v$v.txt
  algos=auto; [ $v = 5 ] && algos=auto,cublas
  timeout 100 $bin/dsinfer-bench --attention dense,double_sparse --ds_ratio 16 --label_bits 16 \
    --models llama3-8b --batches 4,8,16 --contexts 32768 --iters 7 --linear_algos $algos \
    --dependent_launch on --long_prefill_layers 1 \
    --json_out $OUT/e2e_v$v.json > $OUT/e2e_v$v.log 2>&1
  echo "v$v bench rc=$?"; grep -E "^step|^(dense|double_sparse)" $OUT/e2e_v$v.log
done
tar czf $FINAL/call4.tgz -C $OUT .
