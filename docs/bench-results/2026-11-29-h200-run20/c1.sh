#!/bin/bash
# Run 20 call 1: the top-k bodies at 16K-64K, batch 8, both head layouts (operator bench), and
# ncu (--set full, SASS source counters) of the striped and cluster top-k at 64 pairs × 32K.
FINAL=$OUT; export OUT=$PWD/out1; mkdir -p $OUT
tar xJf .gpu-bundle/pack.txz -C .gpu-bundle
export LD_LIBRARY_PATH=$PWD/.gpu-bundle/lib:/usr/local/cuda/lib64
B=.gpu-bundle/bin
nvidia-smi --query-gpu=name,clocks.max.sm,clocks.sm --format=csv | tee $OUT/gpu.txt
COMMON="--prefill=false --dense_algos pipelined --dense_waves 4 --ds_score_algos strided --ds_attention_algos pipelined --ds_other_waves 4"
timeout 150 $B/dsinfer-attention-bench $COMMON --models llama3-8b,llama2-7b --batches 8 --contexts 16384,32768,65536 --ds_topk_algos auto,striped,cluster,multi-block --iters 10 --json_out $OUT/topk_bodies.json 2>&1 | tee $OUT/topk_bodies.log
NCU=/usr/local/cuda/bin/ncu
for k in Striped Cluster; do
  lk=$(echo $k | tr A-Z a-z)
  timeout 120 $NCU --set full --import-source yes -k regex:TopKSelect$k --launch-skip 3 --launch-count 1 -o $OUT/ncu_$lk $B/dsinfer-attention-bench $COMMON --models llama3-8b --batches 8 --contexts 32768 --ds_topk_algos $lk --iters 3 > $OUT/ncu_${lk}_run.log 2>&1
  timeout 60 $NCU --import $OUT/ncu_$lk.ncu-rep --page details > $OUT/ncu_${lk}_details.txt 2>&1
  timeout 60 $NCU --import $OUT/ncu_$lk.ncu-rep --page source --csv --print-source sass > $OUT/ncu_${lk}_source_sass.csv 2>&1
done
cd $OUT/.. && tar czf $FINAL/call1.tgz out1
