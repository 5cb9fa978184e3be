#!/bin/bash
# Run 22 call 8: radix passes skip a digit wholly below bit 13, which cannot split the keys of
# stored fp16 scores (DigitSplitsScores: the resident top-k's 9-bit pass, the two-read finish's
# 9-bit pass, the cluster's last 10-bit pass, the in-memory passes' last digit) — the Double
# Sparsity, graph and offload tests; the top-k bodies and the operator beside e3165f9's bench
# (c4), alternated twice; end to end beside it (Llama-3-8B batch 8, Llama-2-7B batch 2, 32K).
FINAL=$OUT
export OUT=$PWD/out8
mkdir -p $OUT
STEPS=tests GPU_TESTS="double_sparsity_gpu_test double_sparsity_graph_gpu_test offload_gpu_test" TOTAL_BUDGET=200 TEST_TIMEOUT=120 timeout 210 bash scripts/gpu-check.sh run > $OUT/run.txt 2>&1
grep -E "^=== .* rc=|FAILED|tests? from .* ran|PASSED" $OUT/gpu-check.log | head -40
export LD_LIBRARY_PATH=$PWD/.gpu-bundle/lib:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
B=.gpu-bundle/bin
mkdir -p c4 && tar xJf .gpu-bundle/c4bench.txz -C c4
COMMON="--prefill=false --dense_algos pipelined --dense_waves 4 --ds_score_algos strided --ds_attention_algos pipelined --ds_other_waves 4 --iters 10"
for round in 1 2; do for v in new c4; do
  bin=$B/dsinfer-attention-bench; [ $v != new ] && bin=$v/dsinfer-attention-bench
  timeout 100 $bin $COMMON --ds_topk_algos auto,cluster,one-block,two-read --models llama2-7b,llama3-8b --batches 1,8 \
    --contexts 16384,32768,65536,262144 \
    --json_out $OUT/op_${v}_r$round.json > $OUT/op_${v}_r$round.log 2>&1
  echo "op $v r$round rc=$?"
done; done
for round in 1 2; do for v in new c4; do
  bin=$B/dsinfer-bench; [ $v != new ] && bin=$v/dsinfer-bench
  for m in llama3-8b:8 llama2-7b:2; do
    timeout 80 $bin --attention dense,double_sparse --ds_ratio 16 --label_bits 16 \
      --models ${m%%:*} --batches ${m##*:} --contexts 32768 --iters 7 --linear_algos auto \
      --dependent_launch on --long_prefill_layers 1 \
      --json_out $OUT/e2e_${m%%:*}_${v}_r$round.json > $OUT/e2e_${m%%:*}_${v}_r$round.log 2>&1
    echo "e2e $m $v r$round rc=$?"; grep -E "^(dense|double_sparse)" $OUT/e2e_${m%%:*}_${v}_r$round.log | cut -c1-80
  done
done; done
cd $OUT/.. && tar czf $FINAL/call8.tgz out8
