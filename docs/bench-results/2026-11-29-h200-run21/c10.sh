#!/bin/bash
# Run 21 call 10: the committed code (e3675fe) beside 037cee7's benches in one call: the
# operator sweep (both head layouts, batch 1 / 8 / 32, 4K-256K; one run each, new then prev)
# and end to end at 32K (Llama-3-8B batch 8, Llama-2-7B batch 2; alternated twice).
FINAL=$OUT; export OUT=$PWD/out10; mkdir -p $OUT
tar xJf .gpu-bundle/pack.txz -C .gpu-bundle
export LD_LIBRARY_PATH=$PWD/.gpu-bundle/lib:/usr/local/cuda/lib64
B=.gpu-bundle/bin
mkdir -p prev && tar xJf .gpu-bundle/prev.txz -C prev
COMMON="--prefill=false --dense_algos pipelined --dense_waves 4 --ds_score_algos strided --ds_topk_algos auto --ds_attention_algos pipelined --ds_other_waves 4 --iters 10"
for v in new prev; do
  bin=$B/dsinfer-attention-bench; [ $v = prev ] && bin=prev/dsinfer-attention-bench
  timeout 200 $bin $COMMON --models llama2-7b,llama3-8b --batches 1,8,32 \
    --json_out $OUT/op_all_${v}_r1.json > $OUT/op_all_${v}_r1.log 2>&1
  echo "op $v rc=$?"
done
for round in 1 2; do for v in new prev; do
  bin=$B/dsinfer-bench; [ $v = prev ] && bin=prev/dsinfer-bench
  for m in llama3-8b:8 llama2-7b:2; do
    timeout 80 $bin --attention dense,double_sparse --ds_ratio 16 --label_bits 16 \
      --models ${m%%:*} --batches ${m##*:} --contexts 32768 --iters 7 --linear_algos auto \
      --dependent_launch on --long_prefill_layers 1 \
      --json_out $OUT/e2e_${m%%:*}_${v}_r$round.json > $OUT/e2e_${m%%:*}_${v}_r$round.log 2>&1
    echo "e2e $m $v r$round rc=$?"; grep -E "^(dense|double_sparse)" $OUT/e2e_${m%%:*}_${v}_r$round.log | cut -c1-80
  done
done; done
cd $OUT/.. && tar czf $FINAL/call10.tgz out10
