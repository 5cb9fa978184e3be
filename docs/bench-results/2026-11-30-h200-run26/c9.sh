#!/bin/bash
# Run 26 call 9 (the review's refactor: one checked DeviceTimer serves dsinfer-bench and
# dsinfer-attention-bench, whose TimeUs and ColdTimeUs had their own event code): both
# benchmarks once, to see them time as before (call 8's operator; call 5's end to end).
FINAL=$OUT
export OUT=$PWD/out9
mkdir -p $OUT
tar xJf .gpu-bundle/pack.txz -C .gpu-bundle
mkdir -p nb && tar xJf .gpu-bundle/timer.txz -C nb
export LD_LIBRARY_PATH=$PWD/.gpu-bundle/lib:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
timeout 120 nb/dsinfer-attention-bench --prefill=false --dense_algos pipelined --dense_waves 4 \
  --ds_score_algos strided --ds_topk_algos auto --ds_attention_algos pipelined \
  --ds_other_waves 4 --iters 10 --models llama2-7b,llama3-8b --batches 8 --contexts 65536 \
  --json_out $OUT/op.json > $OUT/op.log 2>&1
echo "op rc=$?"; grep -E "^llama" $OUT/op.log | grep -E "dense|fp16 r8" | cut -c1-100
grep -o "cold L2 [0-9.]*" $OUT/op.log | head -4
timeout 120 nb/dsinfer-bench --attention dense,double_sparse --ds_ratio 16 --label_bits 16 \
  --models llama3-8b --batches 8 --contexts 32768 --iters 7 --linear_algos auto \
  --dependent_launch on --long_prefill_layers 1 --json_out $OUT/e2e.json > $OUT/e2e.log 2>&1
echo "e2e rc=$?"; grep -E "^(dense|double_sparse)" $OUT/e2e.log | cut -c1-100
cd $OUT/.. && tar czf $FINAL/call9.tgz out9
