#!/bin/bash
# Run 23 call 3: the striped top-k templated on the chunks a thread owns (8 where the pairs
# number at most the SMs, else 4) — the Double Sparsity GPU tests (with the new many-pairs
# test); the operator beside bfc615e's bench (prev) alternated twice at batch 8 (both head
# layouts, 64K-256K) and batch 4 / 16 (128 pairs) at 128K / 256K; PyTorch SDPA at the batch-8
# shapes; ncu source of the striped kernel at Llama-3 heads batch 8, 256K.
FINAL=$OUT
export OUT=$PWD/out3
mkdir -p $OUT
STEPS=tests GPU_TESTS="double_sparsity_gpu_test" TOTAL_BUDGET=170 TEST_TIMEOUT=160 timeout 180 bash scripts/gpu-check.sh run > $OUT/run.txt 2>&1
grep -E "^=== .* rc=|FAILED|tests? from .* ran|PASSED|^\[ +OK +\] .*TopK" $OUT/gpu-check.log | head -20
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
  timeout 60 $bin $COMMON --models llama2-7b --batches 4 --contexts 131072,262144 \
    --json_out $OUT/op_l2b4_${v}_r$round.json > $OUT/op_l2b4_${v}_r$round.log 2>&1
  timeout 60 $bin $COMMON --models llama3-8b --batches 16 --contexts 131072,262144 \
    --json_out $OUT/op_l3b16_${v}_r$round.json > $OUT/op_l3b16_${v}_r$round.log 2>&1
  echo "op 128 pairs $v r$round rc=$?"
done; done
timeout 120 env PYTHONUNBUFFERED=1 python3 scripts/bench_sdpa_decode.py --batches 8 \
  --contexts 65536,131072,262144 --out $OUT/sdpa_decode.json --ours $OUT/op_b8_new_r1.json \
  > $OUT/sdpa.log 2>&1; echo "sdpa rc=$?"
NCU=/usr/local/cuda/bin/ncu
timeout 120 $NCU --set full --import-source yes --kernel-name-base mangled \
  -k regex:TopKSelectStriped --launch-skip 1 --launch-count 1 -o $OUT/striped_l3b8_256k \
  $B/dsinfer-attention-bench $COMMON --iters 1 --ds_topk_algos striped \
  --models llama3-8b --batches 8 --contexts 262144 > $OUT/ncu_striped.log 2>&1
echo "ncu striped rc=$?"
$NCU --import $OUT/striped_l3b8_256k.ncu-rep --page details > $OUT/striped_details.txt 2>&1
$NCU --import $OUT/striped_l3b8_256k.ncu-rep --page source --csv --print-source sass \
  2>/dev/null | gzip > $OUT/striped_sass.csv.gz
rm -f $OUT/striped_l3b8_256k.ncu-rep
cd $OUT/.. && tar czf $FINAL/call3.tgz out3
