#!/bin/bash
# Run 23 call 6: kStriped on a cluster of two blocks per pair where the pairs number at most
# half the SMs (TopKSelectStripedHalvesKernel) — the Double Sparsity and graph GPU tests; the
# operator beside call 4's bench (c4) and bfc615e's (prev), alternated twice: Llama-3 heads
# batch 8 and Llama-2 heads batch 2 (64 pairs) at 64K-256K, batch 4 Llama-3 heads (32 pairs,
# the cluster kernel: unchanged); end to end Llama-3-8B batch 8 at 64K beside c4.
FINAL=$OUT
export OUT=$PWD/out6
mkdir -p $OUT
STEPS=tests GPU_TESTS="double_sparsity_gpu_test double_sparsity_graph_gpu_test" TOTAL_BUDGET=170 TEST_TIMEOUT=160 timeout 180 bash scripts/gpu-check.sh run > $OUT/run.txt 2>&1
grep -E "^=== .* rc=|FAILED|tests? from .* ran|PASSED|OK .*TopK" $OUT/gpu-check.log | head -30
export LD_LIBRARY_PATH=$PWD/.gpu-bundle/lib:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
B=.gpu-bundle/bin
mkdir -p prev c4 && tar xJf .gpu-bundle/prev.txz -C prev && tar xJf .gpu-bundle/c4bench.txz -C c4
COMMON="--prefill=false --dense_algos pipelined --dense_waves 4 --ds_score_algos strided --ds_topk_algos auto --ds_attention_algos pipelined --ds_other_waves 4 --iters 10"
for round in 1 2; do for v in new c4 prev; do
  bin=$B/dsinfer-attention-bench; [ $v != new ] && bin=$v/dsinfer-attention-bench
  timeout 100 $bin $COMMON --models llama3-8b --batches 8 --contexts 65536,131072,262144 \
    --json_out $OUT/op_l3b8_${v}_r$round.json > $OUT/op_l3b8_${v}_r$round.log 2>&1
  echo "op l3b8 $v r$round rc=$?"
  timeout 100 $bin $COMMON --models llama2-7b --batches 2 --contexts 65536,131072,262144 \
    --json_out $OUT/op_l2b2_${v}_r$round.json > $OUT/op_l2b2_${v}_r$round.log 2>&1
  echo "op l2b2 $v r$round rc=$?"
done; done
for v in new c4; do
  bin=$B/dsinfer-bench; [ $v != new ] && bin=$v/dsinfer-bench
  timeout 150 $bin --attention dense,double_sparse --ds_ratio 16 --label_bits 16 \
    --models llama3-8b --batches 8 --contexts 65536 --iters 5 --linear_algos auto \
    --dependent_launch on --long_prefill_layers 1 \
    --json_out $OUT/e2e_l3b8_64k_$v.json > $OUT/e2e_l3b8_64k_$v.log 2>&1
  echo "e2e $v rc=$?"; grep -E "^(dense|double_sparse)" $OUT/e2e_l3b8_64k_$v.log | cut -c1-90
done
cd $OUT/.. && tar czf $FINAL/call6.tgz out6
