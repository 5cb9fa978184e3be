#!/bin/bash
# Run 24 call 2: the fixed-row scorer, second form ("V2", not committed): strided items in one
# loop with per-run bounds (no separate last-page code), consecutive 4-bit r 8 items on full
# pages, the aggregation a compile-time constant there. Double Sparsity GPU tests; the operator
# beside 803ff3b's bench (base) and call 1's (v1), alternated twice: batch 8 both head layouts,
# 64K-256K; SASS of the 4-bit r 64 (run-time heads) and r 8 (one head) scorers, new and base.
FINAL=$OUT
export OUT=$PWD/out2
mkdir -p $OUT
STEPS=tests GPU_TESTS="double_sparsity_gpu_test" TOTAL_BUDGET=120 TEST_TIMEOUT=110 timeout 125 bash scripts/gpu-check.sh run > $OUT/run.txt 2>&1
grep -E "^=== .* rc=|FAILED|tests? from .* ran|PASSED" $OUT/gpu-check.log | head -20
export LD_LIBRARY_PATH=$PWD/.gpu-bundle/lib:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
B=.gpu-bundle/bin
for v in base v1; do mkdir -p $v && tar xJf .gpu-bundle/$v.txz -C $v; done
COMMON="--prefill=false --dense_algos pipelined --dense_waves 4 --ds_score_algos strided --ds_topk_algos auto --ds_attention_algos pipelined --ds_other_waves 4 --iters 10"
for round in 1 2; do for v in new base v1; do
  bin=$B/dsinfer-attention-bench; [ $v != new ] && bin=$v/dsinfer-attention-bench
  timeout 45 $bin $COMMON --models llama2-7b,llama3-8b --batches 8 \
    --contexts 65536,131072,262144 \
    --json_out $OUT/op_b8_${v}_r$round.json > $OUT/op_b8_${v}_r$round.log 2>&1
  echo "op b8 $v r$round rc=$?"
done; done
for v in new base; do
  bin=$B/dsinfer-attention-bench; [ $v != new ] && bin=$v/dsinfer-attention-bench
  timeout 60 /usr/local/cuda/bin/cuobjdump -sass $bin > /tmp/sass_$v.txt 2>&1
  for k in Li4ELi64ELi0E Li4ELi8ELi1E; do
    awk -v k="LabelScoresFixedKernelI6__half$k" '/Function : /{p=index($0,k)>0} p' /tmp/sass_$v.txt > $OUT/sass_${v}_$k.txt
  done
done
cd $OUT/.. && tar czf $FINAL/call2.tgz out2
