#!/bin/bash
# Run 26 call 7 (an experiment build: the fixed-row scorer loads a warp's next run while it
# scores the current — kScorePrefetch, so far 4-bit r 8 only — for fp16 r 8 labels too, one
# score head; ptxas: 64 registers and 24 bytes of spills instead of 56 and none). The Double
# Sparsity and graph tests; the operator beside the committed build (base1), Llama-3 heads batch
# 8 at 32K / 64K and Llama-2 heads batch 8 at 64K; end to end (graph steps, Double Sparsity
# 1/16 fp16 r 8) alternated twice: Llama-3-8B batch 8 at 32K and 64K, Llama-2-7B batch 8 at 30K.
FINAL=$OUT
export OUT=$PWD/out7
mkdir -p $OUT
STEPS=tests GPU_TESTS="double_sparsity_gpu_test double_sparsity_graph_gpu_test" TOTAL_BUDGET=150 TEST_TIMEOUT=140 timeout 160 bash scripts/gpu-check.sh run > $OUT/run.txt 2>&1
grep -E "^=== .* rc=|FAILED|tests? from .* ran|PASSED" $OUT/gpu-check.log | head -20
export LD_LIBRARY_PATH=$PWD/.gpu-bundle/lib:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
mkdir -p base && tar xJf .gpu-bundle/base1.txz -C base
OPS="--prefill=false --dense_algos pipelined --dense_waves 4 --ds_score_algos strided \
  --ds_topk_algos auto --ds_attention_algos pipelined --ds_other_waves 4 --iters 10"
for bin in new base; do
  D=.gpu-bundle/bin; [ $bin = base ] && D=base
  timeout 100 $D/dsinfer-attention-bench $OPS --models llama3-8b --batches 8 --contexts 32768,65536 \
    --json_out $OUT/op_l3_$bin.json > $OUT/op_l3_$bin.log 2>&1; echo "op l3 $bin rc=$?"
  timeout 100 $D/dsinfer-attention-bench $OPS --models llama2-7b --batches 8 --contexts 65536 \
    --json_out $OUT/op_l2_$bin.json > $OUT/op_l2_$bin.log 2>&1; echo "op l2 $bin rc=$?"
done
grep -hE "fp16 r8" $OUT/op_*.log | cut -c1-120
for r in 1 2; do for cfg in llama3-8b:32768 llama2-7b:30720 llama3-8b:65536; do for bin in new base; do
  IFS=: read model ctx <<< "$cfg"; D=.gpu-bundle/bin; [ $bin = base ] && D=base
  n=e2e_${model}_b8_${ctx}_${bin}_r$r
  timeout 60 $D/dsinfer-bench --attention double_sparse --ds_ratio 16 --label_bits 16 \
    --models $model --batches 8 --contexts $ctx --iters 7 --linear_algos auto \
    --dependent_launch on --long_prefill_layers 1 --json_out $OUT/$n.json > $OUT/$n.log 2>&1
  echo "$n rc=$? $(grep -E '^double_sparse' $OUT/$n.log | cut -c1-90)"
done; done; done
cd $OUT/.. && tar czf $FINAL/call7.tgz out7
