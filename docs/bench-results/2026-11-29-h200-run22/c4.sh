#!/bin/bash
# Run 22 call 4: the fp16 bits keyed two at a time (OrderKeys4: a paired max and add in fp16,
# then a sign flip) in the striped top-k's histogram and sample, the cluster top-k's load and
# the resident top-k's load — the Double Sparsity, graph and offload tests; the operator
# beside call 2's bench (c2, the commit 85e2722) alternated twice (batch 8 both head layouts
# 16K-256K; batch 1 and 32 at 16K / 64K); end to end beside it (Llama-3-8B batch 8,
# Llama-2-7B batch 2, 32K) alternated twice.
FINAL=$OUT
export OUT=$PWD/out4
mkdir -p $OUT
STEPS=tests GPU_TESTS="double_sparsity_gpu_test double_sparsity_graph_gpu_test offload_gpu_test" TOTAL_BUDGET=200 TEST_TIMEOUT=120 timeout 210 bash scripts/gpu-check.sh run > $OUT/run.txt 2>&1
grep -E "^=== .* rc=|FAILED|tests? from .* ran|PASSED" $OUT/gpu-check.log | head -40
export LD_LIBRARY_PATH=$PWD/.gpu-bundle/lib:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
B=.gpu-bundle/bin
mkdir -p c2 && tar xJf .gpu-bundle/c2bench.txz -C c2
COMMON="--prefill=false --dense_algos pipelined --dense_waves 4 --ds_score_algos strided --ds_topk_algos auto --ds_attention_algos pipelined --ds_other_waves 4 --iters 10"
for round in 1 2; do for v in new c2; do
  bin=$B/dsinfer-attention-bench; [ $v != new ] && bin=$v/dsinfer-attention-bench
  timeout 100 $bin $COMMON --models llama2-7b,llama3-8b --batches 8 \
    --contexts 16384,65536,131072,262144 \
    --json_out $OUT/op_b8_${v}_r$round.json > $OUT/op_b8_${v}_r$round.log 2>&1
  echo "op b8 $v r$round rc=$?"
  timeout 100 $bin $COMMON --models llama2-7b,llama3-8b --batches 1,32 --contexts 16384,65536 \
    --json_out $OUT/op_b1_32_${v}_r$round.json > $OUT/op_b1_32_${v}_r$round.log 2>&1
  echo "op b1/32 $v r$round rc=$?"
done; done
for round in 1 2; do for v in new c2; do
  bin=$B/dsinfer-bench; [ $v != new ] && bin=$v/dsinfer-bench
  for m in llama3-8b:8 llama2-7b:2; do
    timeout 80 $bin --attention dense,double_sparse --ds_ratio 16 --label_bits 16 \
      --models ${m%%:*} --batches ${m##*:} --contexts 32768 --iters 7 --linear_algos auto \
      --dependent_launch on --long_prefill_layers 1 \
      --json_out $OUT/e2e_${m%%:*}_${v}_r$round.json > $OUT/e2e_${m%%:*}_${v}_r$round.log 2>&1
    echo "e2e $m $v r$round rc=$?"; grep -E "^(dense|double_sparse)" $OUT/e2e_${m%%:*}_${v}_r$round.log | cut -c1-80
  done
done; done
cd $OUT/.. && tar czf $FINAL/call4.tgz out4
