#!/bin/bash
# run 27 call 2: ncu durations of the guided top-k's two kernels beside the resident and striped
# top-k, Llama-3 heads batch 8 at 32K / 64K (the first variants), clocks not locked.
cd "$(git rev-parse --show-toplevel 2>/dev/null || pwd)"
FINAL=$OUT; OUT=$PWD/out2; mkdir -p $OUT
tar xJf .gpu-bundle/pack.txz -C .gpu-bundle
export LD_LIBRARY_PATH=$PWD/.gpu-bundle/lib:/usr/local/cuda/lib64
B=.gpu-bundle/bin
for ctx in 32768 65536; do
timeout 240 /usr/local/cuda/bin/ncu --clock-control none --kernel-name regex:"Guided|TopKSelect" \
  --launch-count 40 --metrics gpu__time_duration.sum,launch__grid_size,launch__block_size \
  --csv $B/dsinfer-attention-bench --prefill=false --dense_algos pipelined --dense_waves 4 \
  --ds_score_algos strided --ds_topk_algos auto --ds_attention_algos pipelined --ds_other_waves 4 \
  --iters 2 --models llama3-8b --batches 8 --contexts $ctx > $OUT/ncu_guided_${ctx}-call2.csv 2> $OUT/ncu_guided_${ctx}-call2.err
done
tar czf $FINAL/call2.tgz -C $OUT .
