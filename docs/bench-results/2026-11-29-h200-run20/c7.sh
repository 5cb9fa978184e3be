#!/bin/bash
# Run 20 call 7: the resident top-k, third version (blocked masks for the gather and compaction) — the Double Sparsity and graph
# tests; the top-k bodies side by side (operator bench); end to end with --ds_topk_algo
# resident against auto; ncu of the resident kernel at 64 pairs × 32K.
FINAL=$OUT
export OUT=$PWD/out7
mkdir -p $OUT
STEPS=tests GPU_TESTS="double_sparsity_gpu_test double_sparsity_graph_gpu_test" \
  TOTAL_BUDGET=200 TEST_TIMEOUT=180 timeout 210 bash scripts/gpu-check.sh run > $OUT/run.txt 2>&1
grep -E "^=== .* rc=|FAILED|tests? from .* ran|PASSED" $OUT/gpu-check.log | head -30
export LD_LIBRARY_PATH=$PWD/.gpu-bundle/lib:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
bin=.gpu-bundle/bin
COMMON="--prefill=false --dense_algos pipelined --dense_waves 4 --ds_score_algos strided --ds_attention_algos pipelined --ds_other_waves 4"
timeout 150 $bin/dsinfer-attention-bench $COMMON --models llama3-8b,llama2-7b --batches 1,4,8 \
  --contexts 16384,32768 --ds_topk_algos auto,striped,cluster,resident --iters 10 \
  --json_out $OUT/topk_resident.json > $OUT/topk_resident.log 2>&1
echo "attention bench rc=$?"; grep -E "dense|1/16 fp16 r8" $OUT/topk_resident.log | cut -c1-200
for b in 8 4 16; do
  for algo in auto resident; do
    timeout 100 $bin/dsinfer-bench --attention dense,double_sparse --ds_ratio 16 --label_bits 16 \
      --models llama3-8b --batches $b --contexts 32768 --iters 7 --linear_algos auto \
      --dependent_launch on --long_prefill_layers 1 --ds_topk_algo $algo --ds_split_chain \
      --json_out $OUT/e2e_b${b}_$algo.json > $OUT/e2e_b${b}_$algo.log 2>&1
    echo "b$b $algo rc=$?"; grep -E "^(dense|double_sparse)|split sparse chain" $OUT/e2e_b${b}_$algo.log
  done
done
timeout 100 /usr/local/cuda/bin/ncu --set full -k regex:TopKSelectResident --launch-skip 3 --launch-count 1 \
  -o $OUT/ncu_resident $bin/dsinfer-attention-bench $COMMON --models llama3-8b --batches 8 \
  --contexts 32768 --ds_topk_algos resident --iters 3 > $OUT/ncu_resident_run.log 2>&1
timeout 60 /usr/local/cuda/bin/ncu --import $OUT/ncu_resident.ncu-rep --page details > $OUT/ncu_resident_details.txt 2>&1
timeout 60 /usr/local/cuda/bin/ncu --import $OUT/ncu_resident.ncu-rep --page source --csv --print-source sass > $OUT/ncu_resident_sass.csv 2>&1
grep -E "Duration|Elapsed Cycles|Registers|Achieved Occ" $OUT/ncu_resident_details.txt | head
rm -f $OUT/ncu_resident.ncu-rep
tar czf $FINAL/call7.tgz -C $OUT .
