#!/bin/bash
# Run 21 call 2: the fixed-row scorer's loop (a warp keeps its KV head; base + immediate
# offsets; no 64-bit division) and the one-LOP3 4-bit code: the Double Sparsity tests, then the
# operator bench beside the previous commit's (037cee7), alternated, and ncu of the new scorer.
FINAL=$OUT; export OUT=$PWD/out2; mkdir -p $OUT
STEPS=tests GPU_TESTS="double_sparsity_gpu_test double_sparsity_graph_gpu_test" \
  TOTAL_BUDGET=300 TEST_TIMEOUT=280 timeout 320 bash scripts/gpu-check.sh run > $OUT/run.txt 2>&1
grep -E "^=== .* rc=|FAILED|tests? from .* ran|PASSED" $OUT/gpu-check.log | head -30
export LD_LIBRARY_PATH=$PWD/.gpu-bundle/lib:/usr/local/cuda/lib64
B=.gpu-bundle/bin
mkdir -p prev && tar xJf .gpu-bundle/prev.txz -C prev
COMMON="--prefill=false --dense_algos pipelined --dense_waves 4 --ds_score_algos strided --ds_topk_algos auto --ds_attention_algos pipelined --ds_other_waves 4 --iters 10"
for round in 1 2; do
  for v in new prev; do
    bin=$B/dsinfer-attention-bench; [ $v = prev ] && bin=prev/dsinfer-attention-bench
    timeout 150 $bin $COMMON --models llama2-7b,llama3-8b --batches 8 --contexts 65536,131072,262144 \
      --json_out $OUT/op_b8_${v}_r$round.json > $OUT/op_b8_${v}_r$round.log 2>&1
    echo "b8 $v r$round rc=$?"
    timeout 60 $bin $COMMON --models llama2-7b,llama3-8b --batches 1 --contexts 16384 \
      --json_out $OUT/op_b1_${v}_r$round.json > $OUT/op_b1_${v}_r$round.log 2>&1
    echo "b1 $v r$round rc=$?"
  done
done
grep -E "ds 1/16 4bit r8" $OUT/op_b8_*_r1.log | cut -c1-140
NCU=/usr/local/cuda/bin/ncu
timeout 120 $NCU --set full --import-source yes --kernel-name-base mangled -k regex:'LabelScoresFixedKernelI6__halfLi4ELi8ELi1E' --launch-skip 2 --launch-count 1 -o $OUT/ncu_score4r8 $B/dsinfer-attention-bench $COMMON --models llama2-7b --batches 8 --contexts 65536 --iters 3 > $OUT/ncu_run.log 2>&1
timeout 60 $NCU --import $OUT/ncu_score4r8.ncu-rep --page details > $OUT/ncu_score4r8_details.txt 2>&1
timeout 60 $NCU --import $OUT/ncu_score4r8.ncu-rep --page source --csv --print-source sass > $OUT/ncu_score4r8_sass.csv 2>&1
gzip -f $OUT/ncu_score4r8_sass.csv; rm -f $OUT/ncu_score4r8.ncu-rep
for b in 8; do for v in new prev; do
  bin=$B/dsinfer-bench; [ $v = prev ] && bin=prev/dsinfer-bench
  timeout 100 $bin --attention dense,double_sparse --ds_ratio 16 --label_bits 16 --models llama3-8b \
    --batches $b --contexts 32768 --iters 7 --linear_algos auto --dependent_launch on \
    --long_prefill_layers 1 --json_out $OUT/e2e_l3_b${b}_$v.json > $OUT/e2e_l3_b${b}_$v.log 2>&1
  echo "e2e b$b $v rc=$?"; grep -E "^(dense|double_sparse)" $OUT/e2e_l3_b${b}_$v.log | cut -c1-150
done; done
cd $OUT/.. && tar czf $FINAL/call2.tgz out2
