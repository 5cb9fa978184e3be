#!/bin/bash
# Run 21 call 13: the final review's refactor (WarpInclusiveSum and WarpTotalsBefore shared by the
# striped, thread-owned and resident splits; the same kernels) — the Double Sparsity and
# graph tests, and the top-k beside fb7c9e3's bench (4K-256K), one run each.
FINAL=$OUT; export OUT=$PWD/out13; mkdir -p $OUT
STEPS=tests GPU_TESTS="double_sparsity_gpu_test double_sparsity_graph_gpu_test" \
  TOTAL_BUDGET=200 TEST_TIMEOUT=180 timeout 210 bash scripts/gpu-check.sh run > $OUT/run.txt 2>&1
grep -E "^=== .* rc=|FAILED|tests? from .* ran|PASSED" $OUT/gpu-check.log | head -30
export LD_LIBRARY_PATH=$PWD/.gpu-bundle/lib:/usr/local/cuda/lib64
B=.gpu-bundle/bin
mkdir -p prev && tar xJf .gpu-bundle/prevB.txz -C prev
COMMON="--prefill=false --dense_algos pipelined --dense_waves 4 --ds_score_algos strided --ds_attention_algos pipelined --ds_other_waves 4 --iters 10 --ds_topk_algos auto --batches 8 --contexts 4096,32768,65536,262144"
for round in 1; do
  for v in new prev; do
    bin=$B/dsinfer-attention-bench; [ $v = prev ] && bin=prev/dsinfer-attention-bench
    timeout 100 $bin $COMMON --models llama2-7b,llama3-8b \
      --json_out $OUT/op_b8_${v}_r$round.json > $OUT/op_b8_${v}_r$round.log 2>&1
    echo "$v r$round rc=$?"
  done
done
grep -E "1/16 fp16 r8|1/16 4bit r8 " $OUT/op_b8_*_r1.log | cut -c1-150
cd $OUT/.. && tar czf $FINAL/call13.tgz out13
