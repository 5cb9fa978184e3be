#!/bin/bash
# Run 21 call 1 (code 037cee7): operator baseline at 64K/128K batch 8, and ncu of the 4-bit r8 and
# fp16 r8 fixed scorers and of the auto top-k at Llama-2 heads batch 8, 64K.
FINAL=$OUT; export OUT=$PWD/out1; mkdir -p $OUT
tar xJf .gpu-bundle/pack.txz -C .gpu-bundle
export LD_LIBRARY_PATH=$PWD/.gpu-bundle/lib:/usr/local/cuda/lib64
B=.gpu-bundle/bin
nvidia-smi --query-gpu=name,clocks.max.sm,clocks.sm --format=csv | tee $OUT/gpu.txt
COMMON="--prefill=false --dense_algos pipelined --dense_waves 4 --ds_score_algos strided --ds_attention_algos pipelined --ds_other_waves 4"
timeout 200 $B/dsinfer-attention-bench $COMMON --models llama2-7b,llama3-8b --batches 8 --contexts 65536,131072 --ds_topk_algos auto --iters 10 --json_out $OUT/base.json > $OUT/base.log 2>&1
echo "base rc=$?"
NCU=/usr/local/cuda/bin/ncu
ONE="$COMMON --models llama2-7b --batches 8 --contexts 65536 --ds_topk_algos auto --iters 3"
run_ncu() {  # name regex
  timeout 120 $NCU --set full --import-source yes --kernel-name-base mangled -k regex:$2 --launch-skip 2 --launch-count 1 -o $OUT/ncu_$1 $B/dsinfer-attention-bench $ONE > $OUT/ncu_$1_run.log 2>&1
  echo "ncu $1 rc=$?"
  timeout 60 $NCU --import $OUT/ncu_$1.ncu-rep --page details > $OUT/ncu_$1_details.txt 2>&1
  timeout 60 $NCU --import $OUT/ncu_$1.ncu-rep --page source --csv --print-source sass > $OUT/ncu_$1_sass.csv 2>&1
  gzip -f $OUT/ncu_$1_sass.csv; rm -f $OUT/ncu_$1.ncu-rep
}
run_ncu score4r8 'LabelScoresFixedKernelI6__halfLi4ELi8ELi1E'
run_ncu score16r8 'LabelScoresFixedKernelI6__halfLi16ELi8ELi1E'
run_ncu topk 'TopKSelect'
cd $OUT/.. && tar czf $FINAL/call1.tgz out1
