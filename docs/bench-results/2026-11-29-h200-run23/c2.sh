#!/bin/bash
# Run 23 call 2: OwnedSplit with 32 keys a thread a tile (kOwnedChunks 8: half the tiles, so
# half the per-tile scans and barriers) — the Double Sparsity GPU tests; the operator beside
# bfc615e's bench (prev) alternated twice: batch 8 both head layouts 64K-256K, batch 32 64K.
FINAL=$OUT
export OUT=$PWD/out2
mkdir -p $OUT
STEPS=tests GPU_TESTS="double_sparsity_gpu_test" TOTAL_BUDGET=150 TEST_TIMEOUT=140 timeout 160 bash scripts/gpu-check.sh run > $OUT/run.txt 2>&1
grep -E "^=== .* rc=|FAILED|tests? from .* ran|PASSED" $OUT/gpu-check.log | head -20
export LD_LIBRARY_PATH=$PWD/.gpu-bundle/lib:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
B=.gpu-bundle/bin
mkdir -p prev && tar xJf .gpu-bundle/prev.txz -C prev
COMMON="--prefill=false --dense_algos pipelined --dense_waves 4 --ds_score_algos strided --ds_topk_algos auto --ds_attention_algos pipelined --ds_other_waves 4 --iters 10"
for round in 1 2; do for v in new prev; do
  bin=$B/dsinfer-attention-bench; [ $v != new ] && bin=$v/dsinfer-attention-bench
  timeout 100 $bin $COMMON --models llama2-7b,llama3-8b --batches 8 \
    --contexts 65536,131072,262144 \
    --json_out $OUT/op_b8_${v}_r$round.json > $OUT/op_b8_${v}_r$round.log 2>&1
  echo "op b8 $v r$round rc=$?"
  timeout 60 $bin $COMMON --models llama2-7b,llama3-8b --batches 32 --contexts 65536 \
    --json_out $OUT/op_b32_${v}_r$round.json > $OUT/op_b32_${v}_r$round.log 2>&1
  echo "op b32 $v r$round rc=$?"
done; done
cd $OUT/.. && tar czf $FINAL/call2.tgz out2
