#!/bin/bash
# Run 28 call 10: the candidate change — the cluster select on 16-bit keys (OrderKey16, two
# 8-bit radix passes, one block scan for the ordered compaction) in both the fused scorer +
# top-k and the cluster top-k — every GPU test, then the committed code (attn-bench-base,
# dsbench-base) beside it: the operator where kAuto takes the cluster top-k (batch 1-2, long
# rows) and the fused kernel (rows up to 8K), and end to end where they run.
cd "$(git rev-parse --show-toplevel 2>/dev/null || pwd)"
FINAL=$OUT; OUT=$PWD/out10; mkdir -p $OUT
STEPS=tests TOTAL_BUDGET=290 OUT=$OUT/check bash scripts/gpu-check.sh run > $OUT/tests.log 2>&1
echo "tests rc $?" >> $OUT/rcs.txt
tar xJf .gpu-bundle/extra.txz -C .gpu-bundle
export LD_LIBRARY_PATH=$PWD/.gpu-bundle/lib:/usr/local/cuda/lib64
B=.gpu-bundle/bin
common="--prefill=false --dense_algos pipelined --dense_waves 4 --ds_score_algos strided --ds_attention_algos pipelined --ds_other_waves 4 --iters 20 --max_gib 100"
run() {  # name, bin, args
  local name=$1 bin=$2; shift 2
  timeout 120 $B/$bin "$@" > $OUT/$name.log 2>&1
  echo "$name rc $?" >> $OUT/rcs.txt
}
for b in attn-bench-base dsinfer-attention-bench; do
  run op-cluster-$b $b $common --ds_topk_algos auto,cluster --models llama3-8b,llama2-7b --batches 1,2 --contexts 65536,262144 --json_out $OUT/op-cluster-$b.json
  run op-fused-$b $b $common --ds_topk_algos auto --models llama3-8b,llama2-7b --batches 1,8 --contexts 4096,8192 --json_out $OUT/op-fused-$b.json
done
e2e="--attention double_sparse --ds_ratio 16 --label_bits 16 --iters 10 --linear_algos auto --dependent_launch on --long_prefill_layers 1"
for b in dsbench-base dsinfer-bench; do
  run e2e-short-$b $b $e2e --models llama3-8b,llama2-7b --batches 1 --contexts 4096 --json_out $OUT/e2e-short-$b.json
  run e2e-l3b8-$b $b $e2e --models llama3-8b --batches 8 --contexts 4096 --json_out $OUT/e2e-l3b8-$b.json
  run e2e-long-$b $b $e2e --models llama3-8b --batches 1 --contexts 131072 --json_out $OUT/e2e-long-$b.json
done
cd $OUT/.. && tar czf $FINAL/call10.tgz out10
