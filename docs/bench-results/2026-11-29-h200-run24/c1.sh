#!/bin/bash
# Run 24 call 1: the fixed-row scorer's full pages without per-item bounds, addresses a step
# from the last run's, 4-bit r 8 items consecutive (16-byte row loads, 8-byte score stores);
# the engine's score rows padded to 8 scores. Double Sparsity, graph and golden GPU tests; the
# operator beside the previous bench (prev: run 23 call 10's build, = 803ff3b but 4-bit r 64 in
# place), alternated twice: batch 8 both head layouts, 64K-256K; the new scorer's SASS.
# (This form — "V1" — was not committed: 4-bit r 64 ran ~30% slower than 803ff3b.)
FINAL=$OUT
export OUT=$PWD/out1
mkdir -p $OUT
STEPS=tests GPU_TESTS="double_sparsity_gpu_test double_sparsity_graph_gpu_test cuda_golden_test" TOTAL_BUDGET=200 TEST_TIMEOUT=150 timeout 205 bash scripts/gpu-check.sh run > $OUT/run.txt 2>&1
grep -E "^=== .* rc=|FAILED|tests? from .* ran|PASSED" $OUT/gpu-check.log | head -20
export LD_LIBRARY_PATH=$PWD/.gpu-bundle/lib:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
B=.gpu-bundle/bin
mkdir -p prev && tar xJf .gpu-bundle/prev24.txz -C prev
COMMON="--prefill=false --dense_algos pipelined --dense_waves 4 --ds_score_algos strided --ds_topk_algos auto --ds_attention_algos pipelined --ds_other_waves 4 --iters 10"
for round in 1 2; do for v in new prev; do
  bin=$B/dsinfer-attention-bench; [ $v != new ] && bin=$v/dsinfer-attention-bench
  timeout 45 $bin $COMMON --models llama2-7b,llama3-8b --batches 8 \
    --contexts 65536,131072,262144 \
    --json_out $OUT/op_b8_${v}_r$round.json > $OUT/op_b8_${v}_r$round.log 2>&1
  echo "op b8 $v r$round rc=$?"
done; done
timeout 60 /usr/local/cuda/bin/cuobjdump -sass $B/dsinfer-attention-bench 2>&1 | awk '/Function : .*LabelScoresFixedKernelI6__halfLi4ELi8ELi1E/{p=1} p&&/Function : /&&!/LabelScoresFixedKernelI6__halfLi4ELi8ELi1E/{p=0} p' > $OUT/score4r8_sass.txt
cd $OUT/.. && tar czf $FINAL/call1.tgz out1
