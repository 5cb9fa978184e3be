#!/bin/bash
# Run 24 call 3: the committed form — 803ff3b's fixed-row scorer plus, for 4-byte rows (4-bit
# r 8), a warp's full pages with consecutive items first; the engine's score rows padded to 8
# scores (ScoreRowStride). Every GPU test (the smokes in a later call: the models and base.txz do not travel together); the operator beside 803ff3b's
# bench (base), alternated twice: batch 8 both head layouts, 64K-256K; PyTorch SDPA at batch 8
# (Llama-2 heads) in the same call.
FINAL=$OUT
export OUT=$PWD/out3
mkdir -p $OUT
STEPS=tests TOTAL_BUDGET=260 TEST_TIMEOUT=150 timeout 270 bash scripts/gpu-check.sh run > $OUT/run.txt 2>&1
grep -E "^=== .* rc=|FAILED|tests? from .* ran|PASSED|smoke" $OUT/gpu-check.log | head -40
export LD_LIBRARY_PATH=$PWD/.gpu-bundle/lib:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
B=.gpu-bundle/bin
mkdir -p base && tar xJf .gpu-bundle/base.txz -C base
COMMON="--prefill=false --dense_algos pipelined --dense_waves 4 --ds_score_algos strided --ds_topk_algos auto --ds_attention_algos pipelined --ds_other_waves 4 --iters 10"
for round in 1 2; do for v in new base; do
  bin=$B/dsinfer-attention-bench; [ $v != new ] && bin=$v/dsinfer-attention-bench
  timeout 45 $bin $COMMON --models llama2-7b,llama3-8b --batches 8 \
    --contexts 65536,131072,262144 \
    --json_out $OUT/op_b8_${v}_r$round.json > $OUT/op_b8_${v}_r$round.log 2>&1
  echo "op b8 $v r$round rc=$?"
done; done
timeout 150 env PYTHONUNBUFFERED=1 python3 scripts/bench_sdpa_decode.py --batches 8 \
  --contexts 65536,131072,262144 --out $OUT/sdpa_decode.json --ours $OUT/op_b8_new_r1.json \
  > $OUT/sdpa.log 2>&1; echo "sdpa rc=$?"
tail -12 $OUT/sdpa.log
cd $OUT/.. && tar czf $FINAL/call3.tgz out3
