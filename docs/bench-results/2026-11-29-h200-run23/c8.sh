#!/bin/bash
# Run 23 call 8: the final top-k code (kStriped's two-block clusters from an eighth to half
# the SMs in pairs, kCluster below) — all GPU tests; the operator beside call 4's bench (c4)
# alternated twice at Llama-3 heads batch 2 / 4 / 8 (16 / 32 / 64 pairs), 64K-256K; end to
# end beside c4: Llama-3-8B batch 8 at 64K (the split chain's halves: 32 pairs), Llama-2-7B
# batch 1 at 128K (32 pairs).
FINAL=$OUT
export OUT=$PWD/out8
mkdir -p $OUT
STEPS=tests TOTAL_BUDGET=260 TEST_TIMEOUT=150 timeout 270 bash scripts/gpu-check.sh run > $OUT/run.txt 2>&1
grep -E "^=== .* rc=|FAILED|tests? from .* ran|PASSED" $OUT/gpu-check.log | head -30
export LD_LIBRARY_PATH=$PWD/.gpu-bundle/lib:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
B=.gpu-bundle/bin
mkdir -p c4 && tar xJf .gpu-bundle/c4bench.txz -C c4
COMMON="--prefill=false --dense_algos pipelined --dense_waves 4 --ds_score_algos strided --ds_topk_algos auto --ds_attention_algos pipelined --ds_other_waves 4 --iters 10"
for round in 1 2; do for v in new c4; do
  bin=$B/dsinfer-attention-bench; [ $v != new ] && bin=$v/dsinfer-attention-bench
  timeout 100 $bin $COMMON --models llama3-8b --batches 2,4,8 --contexts 65536,131072,262144 \
    --json_out $OUT/op_l3_${v}_r$round.json > $OUT/op_l3_${v}_r$round.log 2>&1
  echo "op l3 $v r$round rc=$?"
done; done
for m in llama3-8b:8:65536 llama2-7b:1:131072; do
  IFS=: read model b ctx <<< "$m"
  for v in new c4; do
    bin=$B/dsinfer-bench; [ $v != new ] && bin=$v/dsinfer-bench
    timeout 150 $bin --attention dense,double_sparse --ds_ratio 16 --label_bits 16 \
      --models $model --batches $b --contexts $ctx --iters 5 --linear_algos auto \
      --dependent_launch on --long_prefill_layers 1 \
      --json_out $OUT/e2e_${model}_b${b}_${ctx}_$v.json > $OUT/e2e_${model}_b${b}_${ctx}_$v.log 2>&1
    echo "e2e $m $v rc=$?"; grep -E "^(dense|double_sparse)" $OUT/e2e_${model}_b${b}_${ctx}_$v.log | cut -c1-90
  done
done
cd $OUT/.. && tar czf $FINAL/call8.tgz out8
