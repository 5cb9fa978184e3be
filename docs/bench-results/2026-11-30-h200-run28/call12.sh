#!/bin/bash
# Run 28 call 12: the final code (16-bit cluster select in the fused kernel and the cluster
# top-k): the engine-level GPU tests that run the cluster top-k, then end to end where kAuto
# takes it (Llama-3-8B batch 1 at 128K, batch 2 at 256K) beside the committed code.
cd "$(git rev-parse --show-toplevel 2>/dev/null || pwd)"
FINAL=$OUT; OUT=$PWD/out12; mkdir -p $OUT
rm -rf .gpu-bundle/bin .gpu-bundle/lib; tar xJf .gpu-bundle/pack.txz -C .gpu-bundle
tar xJf .gpu-bundle/extra.txz -C .gpu-bundle
export LD_LIBRARY_PATH=$PWD/.gpu-bundle/lib:/usr/local/cuda/lib64
B=.gpu-bundle/bin
for t in double_sparsity_graph_gpu_test offload_gpu_test kernels_gpu_test; do
  timeout 60 $B/$t-new --gtest_brief=1 > $OUT/$t.log 2>&1; echo "$t rc $?" >> $OUT/rcs.txt
done
e2e="--attention double_sparse --ds_ratio 16 --label_bits 16 --iters 10 --linear_algos auto --dependent_launch on --long_prefill_layers 1 --models llama3-8b"
for b in dsbench-base dsbench-new; do
  timeout 100 $B/$b $e2e --batches 1 --contexts 131072 --json_out $OUT/e2e-b1-$b.json > $OUT/e2e-b1-$b.log 2>&1; echo "e2e-b1-$b rc $?" >> $OUT/rcs.txt
  timeout 100 $B/$b $e2e --batches 2 --contexts 262144 --json_out $OUT/e2e-b2-$b.json > $OUT/e2e-b2-$b.log 2>&1; echo "e2e-b2-$b rc $?" >> $OUT/rcs.txt
done
cd $OUT/.. && tar czf $FINAL/call12.tgz out12
