#!/bin/bash
# Run 25 call 8 (the final code; dsinfer-bench's memory estimate now counts the label rows
# instead of a ninth of the KV): the end-to-end shape as near as the H200 holds it —
# Llama-2-7B batch 8, dense and Double Sparsity (1/16 fp16 r 8), at 30K and 28K tokens of
# context (32K needs 128 GiB of KV: it does not fit beside the weights), twice.
FINAL=$OUT
export OUT=$PWD/out8
mkdir -p $OUT
tar xJf .gpu-bundle/pack.txz -C .gpu-bundle
export LD_LIBRARY_PATH=$PWD/.gpu-bundle/lib:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
B=.gpu-bundle/bin
for r in 1 2; do for ctx in 30720 28672; do
  timeout 140 $B/dsinfer-bench --attention dense,double_sparse --ds_ratio 16 --label_bits 16 \
    --models llama2-7b --batches 8 --contexts $ctx --iters 7 --linear_algos auto \
    --dependent_launch on --long_prefill_layers 1 \
    --json_out $OUT/e2e_llama2-7b_b8_${ctx}_r$r.json > $OUT/e2e_llama2-7b_b8_${ctx}_r$r.log 2>&1
  echo "e2e $ctx r$r rc=$?"; grep -E "^(dense|double_sparse)|skipped" $OUT/e2e_llama2-7b_b8_${ctx}_r$r.log | cut -c1-100
done; done
cd $OUT/.. && tar czf $FINAL/call8.tgz out8
