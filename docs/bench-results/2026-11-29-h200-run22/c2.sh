#!/bin/bash
# Run 22 call 2: the striped top-k's split classifying the fp16 bits in pairs (OwnedSplit, no
# conversion) — the Double Sparsity, graph and offload tests; then the operator beside call 1's
# bench (c1: fp16 scores converted to fp32 in the split) and d250f08's (prev: fp32 scores):
# batch 8 both head layouts 16K-256K alternated twice, batch 1 and 32 at 16K / 64K once.
FINAL=$OUT
export OUT=$PWD/out2
mkdir -p $OUT
STEPS=tests GPU_TESTS="double_sparsity_gpu_test double_sparsity_graph_gpu_test offload_gpu_test" TOTAL_BUDGET=200 TEST_TIMEOUT=120 timeout 210 bash scripts/gpu-check.sh run > $OUT/run.txt 2>&1
grep -E "^=== .* rc=|FAILED|tests? from .* ran|PASSED" $OUT/gpu-check.log | head -40
export LD_LIBRARY_PATH=$PWD/.gpu-bundle/lib:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
B=.gpu-bundle/bin
mkdir -p prev c1 && tar xJf .gpu-bundle/prev.txz -C prev && tar xJf .gpu-bundle/c1bench.txz -C c1
COMMON="--prefill=false --dense_algos pipelined --dense_waves 4 --ds_score_algos strided --ds_topk_algos auto --ds_attention_algos pipelined --ds_other_waves 4 --iters 10"
for round in 1 2; do for v in new c1 prev; do
  bin=$B/dsinfer-attention-bench; [ $v != new ] && bin=$v/dsinfer-attention-bench
  timeout 100 $bin $COMMON --models llama2-7b,llama3-8b --batches 8 \
    --contexts 16384,65536,131072,262144 \
    --json_out $OUT/op_b8_${v}_r$round.json > $OUT/op_b8_${v}_r$round.log 2>&1
  echo "op b8 $v r$round rc=$?"
done; done
for v in new c1 prev; do
  bin=$B/dsinfer-attention-bench; [ $v != new ] && bin=$v/dsinfer-attention-bench
  timeout 100 $bin $COMMON --models llama2-7b,llama3-8b --batches 1,32 --contexts 16384,65536 \
    --json_out $OUT/op_b1_32_${v}.json > $OUT/op_b1_32_${v}.log 2>&1
  echo "op b1/32 $v rc=$?"
done
cd $OUT/.. && tar czf $FINAL/call2.tgz out2
