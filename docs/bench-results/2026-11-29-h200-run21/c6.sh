#!/bin/bash
# Run 21 call 6: ncu (full set, SASS counters) of the striped top-k with OwnedSplit at 256K
# (sampled band) — Llama-2 heads batch 8 (256 pairs) and Llama-3 heads batch 8 (64 pairs).
FINAL=$OUT; export OUT=$PWD/out6; mkdir -p $OUT
tar xJf .gpu-bundle/pack.txz -C .gpu-bundle
export LD_LIBRARY_PATH=$PWD/.gpu-bundle/lib:/usr/local/cuda/lib64
B=.gpu-bundle/bin
COMMON="--prefill=false --dense_algos pipelined --dense_waves 4 --ds_score_algos strided --ds_attention_algos pipelined --ds_other_waves 4 --iters 3 --ds_topk_algos auto --batches 8 --contexts 262144"
NCU=/usr/local/cuda/bin/ncu
for m in llama2-7b llama3-8b; do
  timeout 200 $NCU --set full --import-source yes -k regex:TopKSelectStriped --launch-skip 2 --launch-count 1 -o $OUT/ncu_$m $B/dsinfer-attention-bench $COMMON --models $m > $OUT/ncu_${m}_run.log 2>&1
  echo "ncu $m rc=$?"
  timeout 60 $NCU --import $OUT/ncu_$m.ncu-rep --page details > $OUT/ncu_${m}_details.txt 2>&1
  timeout 60 $NCU --import $OUT/ncu_$m.ncu-rep --page source --csv --print-source sass > $OUT/ncu_${m}_sass.csv 2>&1
  gzip -f $OUT/ncu_${m}_sass.csv; rm -f $OUT/ncu_$m.ncu-rep
done
cd $OUT/.. && tar czf $FINAL/call6.tgz out6
