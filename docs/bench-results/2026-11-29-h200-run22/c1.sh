#!/bin/bash
# Run 22 call 1: fp16 score rows (scorer stores fp16 bits, every top-k reads them) — every GPU
# test and the three server smokes; then the operator beside d250f08's bench (batch 8 both head
# layouts 16K-256K, alternated twice; batch 1 and 32 once) and end to end (Llama-3-8B batch 8,
# Llama-2-7B batch 2, 32K; new then prev).
FINAL=$OUT
export OUT=$PWD/out1
mkdir -p $OUT
STEPS=tests TOTAL_BUDGET=300 TEST_TIMEOUT=150 timeout 310 bash scripts/gpu-check.sh run > $OUT/run.txt 2>&1
grep -E "^=== .* rc=|FAILED|tests? from .* ran|PASSED" $OUT/gpu-check.log | head -40
export LD_LIBRARY_PATH=$PWD/.gpu-bundle/lib:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
B=.gpu-bundle/bin
mkdir -p prev && tar xJf .gpu-bundle/prev.txz -C prev
COMMON="--prefill=false --dense_algos pipelined --dense_waves 4 --ds_score_algos strided --ds_topk_algos auto --ds_attention_algos pipelined --ds_other_waves 4 --iters 10"
for round in 1 2; do for v in new prev; do
  bin=$B/dsinfer-attention-bench; [ $v = prev ] && bin=prev/dsinfer-attention-bench
  timeout 100 $bin $COMMON --models llama2-7b,llama3-8b --batches 8 \
    --contexts 16384,65536,131072,262144 \
    --json_out $OUT/op_b8_${v}_r$round.json > $OUT/op_b8_${v}_r$round.log 2>&1
  echo "op b8 $v r$round rc=$?"
done; done
for v in new prev; do
  bin=$B/dsinfer-attention-bench; [ $v = prev ] && bin=prev/dsinfer-attention-bench
  timeout 100 $bin $COMMON --models llama2-7b,llama3-8b --batches 1,32 --contexts 16384,65536 \
    --json_out $OUT/op_b1_32_${v}.json > $OUT/op_b1_32_${v}.log 2>&1
  echo "op b1/32 $v rc=$?"
done
for v in new prev; do
  bin=$B/dsinfer-bench; [ $v = prev ] && bin=prev/dsinfer-bench
  for m in llama3-8b:8 llama2-7b:2; do
    timeout 80 $bin --attention dense,double_sparse --ds_ratio 16 --label_bits 16 \
      --models ${m%%:*} --batches ${m##*:} --contexts 32768 --iters 7 --linear_algos auto \
      --dependent_launch on --long_prefill_layers 1 \
      --json_out $OUT/e2e_${m%%:*}_${v}.json > $OUT/e2e_${m%%:*}_${v}.log 2>&1
    echo "e2e $m $v rc=$?"; grep -E "^(dense|double_sparse)" $OUT/e2e_${m%%:*}_${v}.log | cut -c1-80
  done
done
cd $OUT/.. && tar czf $FINAL/call1.tgz out1
