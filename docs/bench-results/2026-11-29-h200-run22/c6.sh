#!/bin/bash
# Run 22 call 6 (code e3165f9): ncu of the resident top-k at Llama-3 heads batch 8, 32K (the
# end-to-end shape, 64 pairs) and batch 1, 16K (8 pairs); the operator at 16K / 32K, batch 1
# and 8, both head layouts.
FINAL=$OUT; export OUT=$PWD/out6; mkdir -p $OUT
tar xJf .gpu-bundle/pack.txz -C .gpu-bundle
export LD_LIBRARY_PATH=$PWD/.gpu-bundle/lib:/usr/local/cuda/lib64
B=.gpu-bundle/bin
COMMON="--prefill=false --dense_algos pipelined --dense_waves 4 --ds_score_algos strided --ds_attention_algos pipelined --ds_other_waves 4"
timeout 100 $B/dsinfer-attention-bench $COMMON --models llama2-7b,llama3-8b --batches 1,8 --contexts 16384,32768 --ds_topk_algos auto --iters 10 --json_out $OUT/op_32k.json > $OUT/op_32k.log 2>&1
echo "op rc=$?"
NCU=/usr/local/cuda/bin/ncu
run_ncu() {  # name batches contexts
  timeout 120 $NCU --set full --import-source yes --kernel-name-base mangled -k regex:TopKSelectResident --launch-skip 2 --launch-count 1 -o $OUT/ncu_$1 $B/dsinfer-attention-bench $COMMON --models llama3-8b --batches $2 --contexts $3 --ds_topk_algos auto --iters 3 > $OUT/ncu_$1_run.log 2>&1
  echo "ncu $1 rc=$?"
  timeout 60 $NCU --import $OUT/ncu_$1.ncu-rep --page details > $OUT/ncu_$1_details.txt 2>&1
  timeout 60 $NCU --import $OUT/ncu_$1.ncu-rep --page source --csv --print-source sass > $OUT/ncu_$1_sass.csv 2>&1
  gzip -f $OUT/ncu_$1_sass.csv; rm -f $OUT/ncu_$1.ncu-rep
}
run_ncu resident_l3_b8_32k 8 32768
run_ncu resident_l3_b1_16k 1 16384
cd $OUT/.. && tar czf $FINAL/call6.tgz out6
