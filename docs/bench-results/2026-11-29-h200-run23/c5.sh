#!/bin/bash
# Run 23 call 5: ncu of the 4-bit r 8 scorer and of the striped top-k at Llama-2 heads batch 8,
# 64K (the 9x shape): where their time goes.
FINAL=$OUT
export OUT=$PWD/out5
mkdir -p $OUT
tar xJf .gpu-bundle/pack.txz -C .gpu-bundle
export LD_LIBRARY_PATH=$PWD/.gpu-bundle/lib:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
B=.gpu-bundle/bin
NCU=/usr/local/cuda/bin/ncu
COMMON="--prefill=false --dense_algos pipelined --dense_waves 4 --ds_score_algos strided --ds_topk_algos auto --ds_attention_algos pipelined --ds_other_waves 4 --iters 1"
for k in "score4:LabelScoresFixedKernel.*Li4ELi8E" "striped:TopKSelectStriped"; do
  name=${k%%:*}; re=${k#*:}
  timeout 150 $NCU --set full --import-source yes --kernel-name-base mangled \
    -k regex:$re --launch-skip 1 --launch-count 1 -o $OUT/$name \
    $B/dsinfer-attention-bench $COMMON --models llama2-7b --batches 8 --contexts 65536 \
    > $OUT/ncu_$name.log 2>&1
  echo "ncu $name rc=$?"
  $NCU --import $OUT/$name.ncu-rep --page details > $OUT/${name}_details.txt 2>&1
  $NCU --import $OUT/$name.ncu-rep --page source --csv --print-source sass \
    2>/dev/null | gzip > $OUT/${name}_sass.csv.gz
  rm -f $OUT/$name.ncu-rep
done
cd $OUT/.. && tar czf $FINAL/call5.tgz out5
