#!/bin/bash
# Run 23 call 4: OwnedSplit's next tile loaded into registers of its own (the candidates'
# scores from registers, no re-reads), winners stored with st.global.cg, the 8-chunk kernel
# compiled for one block a SM (80 registers) — all GPU tests; the operator beside call 3's
# bench (c3: 8 / 4 chunks, re-reads) and bfc615e's (prev), alternated twice: batch 8 both head
# layouts 64K-256K, 128 pairs at 128K / 256K, batch 32 at 64K.
FINAL=$OUT
export OUT=$PWD/out4
mkdir -p $OUT
STEPS=tests TOTAL_BUDGET=250 TEST_TIMEOUT=150 timeout 260 bash scripts/gpu-check.sh run > $OUT/run.txt 2>&1
grep -E "^=== .* rc=|FAILED|tests? from .* ran|PASSED" $OUT/gpu-check.log | head -30
export LD_LIBRARY_PATH=$PWD/.gpu-bundle/lib:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
B=.gpu-bundle/bin
mkdir -p prev c3 && tar xJf .gpu-bundle/prev.txz -C prev && tar xJf .gpu-bundle/c3bench.txz -C c3
COMMON="--prefill=false --dense_algos pipelined --dense_waves 4 --ds_score_algos strided --ds_topk_algos auto --ds_attention_algos pipelined --ds_other_waves 4 --iters 10"
for round in 1 2; do for v in new c3 prev; do
  bin=$B/dsinfer-attention-bench; [ $v != new ] && bin=$v/dsinfer-attention-bench
  timeout 100 $bin $COMMON --models llama2-7b,llama3-8b --batches 8 \
    --contexts 65536,131072,262144 \
    --json_out $OUT/op_b8_${v}_r$round.json > $OUT/op_b8_${v}_r$round.log 2>&1
  echo "op b8 $v r$round rc=$?"
  timeout 60 $bin $COMMON --models llama3-8b --batches 16 --contexts 131072,262144 \
    --json_out $OUT/op_l3b16_${v}_r$round.json > $OUT/op_l3b16_${v}_r$round.log 2>&1
  timeout 60 $bin $COMMON --models llama2-7b,llama3-8b --batches 32 --contexts 65536 \
    --json_out $OUT/op_b32_${v}_r$round.json > $OUT/op_b32_${v}_r$round.log 2>&1
  echo "op b16/b32 $v r$round rc=$?"
done; done
cd $OUT/.. && tar czf $FINAL/call4.tgz out4
