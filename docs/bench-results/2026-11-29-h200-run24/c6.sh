#!/bin/bash
# Run 24 call 6: the 4-bit r 32 scorer at one score head with its 33 query channels in
# registers (compiled for 3 blocks a SM, 80 registers) instead of a shared-memory load a
# channel. Double Sparsity and golden GPU tests; the operator beside call 5's bench (c5,
# d099c82), alternated twice: batch 8 both head layouts, 64K-256K; end to end with 4-bit labels
# (r 32) at 32K beside c5. (Rewritten from the session's record: a rebuild removed the copy.)
FINAL=$OUT
export OUT=$PWD/out6
mkdir -p $OUT
STEPS=tests GPU_TESTS="double_sparsity_gpu_test cuda_golden_test" TOTAL_BUDGET=120 TEST_TIMEOUT=110 timeout 125 bash scripts/gpu-check.sh run > $OUT/run.txt 2>&1
grep -E "^=== .* rc=|FAILED|tests? from .* ran|PASSED" $OUT/gpu-check.log | head -20
export LD_LIBRARY_PATH=$PWD/.gpu-bundle/lib:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
B=.gpu-bundle/bin
mkdir -p c5 && tar xJf .gpu-bundle/c5.txz -C c5
COMMON="--prefill=false --dense_algos pipelined --dense_waves 4 --ds_score_algos strided --ds_topk_algos auto --ds_attention_algos pipelined --ds_other_waves 4 --iters 10"
for round in 1 2; do for v in new c5; do
  bin=$B/dsinfer-attention-bench; [ $v != new ] && bin=$v/dsinfer-attention-bench
  timeout 45 $bin $COMMON --models llama2-7b,llama3-8b --batches 8 \
    --contexts 65536,131072,262144 \
    --json_out $OUT/op_b8_${v}_r$round.json > $OUT/op_b8_${v}_r$round.log 2>&1
  echo "op b8 $v r$round rc=$?"
done; done
for v in new c5; do
  bin=$B/dsinfer-bench; [ $v != new ] && bin=$v/dsinfer-bench
  timeout 70 $bin --attention dense,double_sparse --ds_ratio 16 --label_bits 4 \
    --models llama3-8b --batches 8 --contexts 32768 --iters 7 --linear_algos auto \
    --dependent_launch on --long_prefill_layers 1 \
    --json_out $OUT/e2e_llama3-8b_lb4_$v.json > $OUT/e2e_llama3-8b_lb4_$v.log 2>&1
  echo "e2e lb4 $v rc=$?"; grep -E "^(dense|double_sparse)" $OUT/e2e_llama3-8b_lb4_$v.log | cut -c1-80
done
cd $OUT/.. && tar czf $FINAL/call6.tgz out6
