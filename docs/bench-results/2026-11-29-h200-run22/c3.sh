#!/bin/bash
# Run 22 call 3: the committed code (85e2722's kernels; call 2's pack) — every GPU test; end to
# end at 32K beside d250f08's dsinfer-bench (fp16 labels r 8 1/16: Llama-3-8B batch 1 / 8 / 16,
# Llama-2-7B batch 2 / 4; new then prev, twice for Llama-3-8B batch 8 and Llama-2-7B batch 2).
FINAL=$OUT
export OUT=$PWD/out3
mkdir -p $OUT
STEPS=tests TOTAL_BUDGET=260 TEST_TIMEOUT=130 timeout 270 bash scripts/gpu-check.sh run > $OUT/run.txt 2>&1
grep -E "^=== .* rc=|FAILED|tests? from .* ran|PASSED" $OUT/gpu-check.log | head -40
export LD_LIBRARY_PATH=$PWD/.gpu-bundle/lib:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
B=.gpu-bundle/bin
mkdir -p prev && tar xJf .gpu-bundle/prev.txz -C prev
for round in 1 2; do for v in new prev; do
  bin=$B/dsinfer-bench; [ $v = prev ] && bin=prev/dsinfer-bench
  ms="llama3-8b:8 llama2-7b:2"; [ $round = 1 ] && ms="llama3-8b:1,8,16 llama2-7b:2,4"
  for m in $ms; do
    timeout 90 $bin --attention dense,double_sparse --ds_ratio 16 --label_bits 16 \
      --models ${m%%:*} --batches ${m##*:} --contexts 32768 --iters 7 --linear_algos auto \
      --dependent_launch on --long_prefill_layers 1 \
      --json_out $OUT/e2e_${m%%:*}_${v}_r$round.json > $OUT/e2e_${m%%:*}_${v}_r$round.log 2>&1
    echo "e2e $m $v r$round rc=$?"; grep -E "^(dense|double_sparse)" $OUT/e2e_${m%%:*}_${v}_r$round.log | cut -c1-90
  done
done; done
cd $OUT/.. && tar czf $FINAL/call3.tgz out3
