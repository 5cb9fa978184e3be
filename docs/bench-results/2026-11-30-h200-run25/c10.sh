#!/bin/bash
# Run 25 call 10: the pipelined sparse attention merging 2-8 pieces in the kernel (a cluster
# per (sequence, KV head), SparsePipelinedClusterKernel) instead of DecodeCombineKernel. The
# Double Sparsity, graph and golden tests; the operator at batch 8, 32K / 64K / 256K, both head
# layouts, beside `base` (call 6's build), alternated twice; end to end at Llama-3-8B batch 8,
# 32K (dense beside it in the new build's runs), alternated twice.
FINAL=$OUT
export OUT=$PWD/out10
mkdir -p $OUT
STEPS=tests GPU_TESTS="double_sparsity_gpu_test double_sparsity_graph_gpu_test cuda_golden_test" TOTAL_BUDGET=130 TEST_TIMEOUT=110 timeout 140 bash scripts/gpu-check.sh run > $OUT/run.txt 2>&1
grep -E "^=== .* rc=|FAILED|tests? from .* ran|PASSED" $OUT/gpu-check.log | head -20
mkdir -p base && tar xJf .gpu-bundle/base25.txz -C base
export LD_LIBRARY_PATH=$PWD/.gpu-bundle/lib:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
B=.gpu-bundle/bin
COMMON="--prefill=false --dense_algos pipelined --dense_waves 4 --ds_score_algos strided --ds_topk_algos auto --ds_attention_algos pipelined --ds_other_waves 4 --iters 10"
for round in 1 2; do for v in new base; do
  bin=$B/dsinfer-attention-bench; [ $v != new ] && bin=base/dsinfer-attention-bench
  timeout 60 $bin $COMMON --models llama2-7b,llama3-8b --batches 8 --contexts 32768,65536,262144 \
    --json_out $OUT/op_${v}_r$round.json > $OUT/op_${v}_r$round.log 2>&1
  echo "op $v r$round rc=$?"
done; done
for round in 1 2; do for v in new base; do
  bin=$B/dsinfer-bench; modes=dense,double_sparse
  [ $v != new ] && bin=base/dsinfer-bench && modes=double_sparse
  timeout 70 $bin --attention $modes --ds_ratio 16 --label_bits 16 --models llama3-8b \
    --batches 8 --contexts 32768 --iters 7 --linear_algos auto --dependent_launch on \
    --long_prefill_layers 1 --json_out $OUT/e2e_${v}_r$round.json > $OUT/e2e_${v}_r$round.log 2>&1
  echo "e2e $v r$round rc=$?"; grep -E "^(dense|double_sparse)" $OUT/e2e_${v}_r$round.log | cut -c1-100
done; done
cd $OUT/.. && tar czf $FINAL/call10.tgz out10
