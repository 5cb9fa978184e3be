#!/bin/bash
# Run 21 call 5: call 4 with OwnedSplit ordered by warp scans and one exchange a tile (one
# barrier a tile): the Double Sparsity tests, the operator bench beside 037cee7 (alternated; the
# striped top-k is auto's choice past 47K-token rows at > 33 pairs and at <= 8K rows), and ncu.
FINAL=$OUT; export OUT=$PWD/out5; mkdir -p $OUT
STEPS=tests GPU_TESTS="double_sparsity_gpu_test double_sparsity_graph_gpu_test" \
  TOTAL_BUDGET=300 TEST_TIMEOUT=280 timeout 320 bash scripts/gpu-check.sh run > $OUT/run.txt 2>&1
grep -E "^=== .* rc=|FAILED|tests? from .* ran|PASSED" $OUT/gpu-check.log | head -30
export LD_LIBRARY_PATH=$PWD/.gpu-bundle/lib:/usr/local/cuda/lib64
B=.gpu-bundle/bin
mkdir -p prev && tar xJf .gpu-bundle/prev.txz -C prev
COMMON="--prefill=false --dense_algos pipelined --dense_waves 4 --ds_score_algos strided --ds_attention_algos pipelined --ds_other_waves 4 --iters 10"
for round in 1 2; do
  for v in new prev; do
    bin=$B/dsinfer-attention-bench; [ $v = prev ] && bin=prev/dsinfer-attention-bench
    timeout 150 $bin $COMMON --ds_topk_algos auto,striped --models llama2-7b,llama3-8b --batches 8 \
      --contexts 65536,131072,262144 --json_out $OUT/op_b8_${v}_r$round.json > $OUT/op_b8_${v}_r$round.log 2>&1
    echo "b8 $v r$round rc=$?"
    timeout 80 $bin $COMMON --ds_topk_algos auto --models llama2-7b,llama3-8b --batches 1,8 \
      --contexts 4096,16384 --json_out $OUT/op_short_${v}_r$round.json > $OUT/op_short_${v}_r$round.log 2>&1
    echo "short $v r$round rc=$?"
  done
done
grep -E "ds 1/16" $OUT/op_b8_new_r1.log | cut -c1-150
NCU=/usr/local/cuda/bin/ncu
timeout 120 $NCU --set full --import-source yes -k regex:TopKSelectStriped --launch-skip 2 --launch-count 1 -o $OUT/ncu_topk $B/dsinfer-attention-bench $COMMON --ds_topk_algos auto --models llama2-7b --batches 8 --contexts 65536 --iters 3 > $OUT/ncu_run.log 2>&1
timeout 60 $NCU --import $OUT/ncu_topk.ncu-rep --page details > $OUT/ncu_topk_details.txt 2>&1
timeout 60 $NCU --import $OUT/ncu_topk.ncu-rep --page source --csv --print-source sass > $OUT/ncu_topk_sass.csv 2>&1
gzip -f $OUT/ncu_topk_sass.csv; rm -f $OUT/ncu_topk.ncu-rep
cd $OUT/.. && tar czf $FINAL/call5.tgz out5
