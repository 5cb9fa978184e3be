#!/bin/bash
# Run 26 call 1: the decode attention's pieces merged by each (sequence or row, head group)'s
# last block (piece counters) instead of a combine kernel, in the sparse and the dense decode.
# Every GPU test; the operator bench (both merges timed side by side, their outputs compared bit
# for bit); end to end against the previous build (base1) alternated: Llama-3-8B batch 8 at 32K
# twice, Llama-2-7B batch 8 at 30K once, dense and Double Sparsity (1/16 fp16 r 8).
FINAL=$OUT
export OUT=$PWD/out1
mkdir -p $OUT
STEPS=tests TOTAL_BUDGET=230 TEST_TIMEOUT=150 timeout 240 bash scripts/gpu-check.sh run > $OUT/run.txt 2>&1
grep -E "^=== .* rc=|FAILED|tests? from .* ran|PASSED" $OUT/gpu-check.log | head -40
export LD_LIBRARY_PATH=$PWD/.gpu-bundle/lib:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
mkdir -p base && tar xJf .gpu-bundle/base1.txz -C base
B=.gpu-bundle/bin
OPS="--prefill=false --dense_algos pipelined --dense_waves 4 --ds_score_algos strided \
  --ds_topk_algos auto --ds_attention_algos pipelined --ds_other_waves 4 --iters 10"
timeout 150 $B/dsinfer-attention-bench $OPS --models llama3-8b --batches 8 \
  --contexts 32768,65536,262144 --json_out $OUT/op_l3_b8.json > $OUT/op_l3_b8.log 2>&1
echo "op l3 b8 rc=$?"; grep -E "^llama" $OUT/op_l3_b8.log | cut -c1-60
timeout 80 $B/dsinfer-attention-bench $OPS --models llama2-7b,llama3-8b --batches 1 \
  --contexts 65536 --json_out $OUT/op_b1.json > $OUT/op_b1.log 2>&1
echo "op b1 rc=$?"
grep -ho "merged in place [0-9.]*, combine kernel [0-9.]*" $OUT/op_*.log
for r in 1 2; do for bin in new base; do
  D=$B; [ $bin = base ] && D=base
  timeout 60 $D/dsinfer-bench --attention dense,double_sparse --ds_ratio 16 --label_bits 16 \
    --models llama3-8b --batches 8 --contexts 32768 --iters 7 --linear_algos auto \
    --dependent_launch on --long_prefill_layers 1 \
    --json_out $OUT/e2e_l3_b8_32k_${bin}_r$r.json > $OUT/e2e_l3_b8_32k_${bin}_r$r.log 2>&1
  echo "e2e l3 $bin r$r rc=$?"; grep -E "^(dense|double_sparse)" $OUT/e2e_l3_b8_32k_${bin}_r$r.log | cut -c1-90
done; done
for bin in new base; do
  D=$B; [ $bin = base ] && D=base
  timeout 90 $D/dsinfer-bench --attention dense,double_sparse --ds_ratio 16 --label_bits 16 \
    --models llama2-7b --batches 8 --contexts 30720 --iters 7 --linear_algos auto \
    --dependent_launch on --long_prefill_layers 1 \
    --json_out $OUT/e2e_l2_b8_30k_${bin}.json > $OUT/e2e_l2_b8_30k_${bin}.log 2>&1
  echo "e2e l2 $bin rc=$?"; grep -E "^(dense|double_sparse)" $OUT/e2e_l2_b8_30k_${bin}.log | cut -c1-90
done
cd $OUT/.. && tar czf $FINAL/call1.tgz out1
