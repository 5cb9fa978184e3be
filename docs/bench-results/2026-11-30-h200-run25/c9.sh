#!/bin/bash
# Run 25 call 9 (the final code): ncu's speed-of-light, launch and occupancy sections of one
# Double Sparsity chain's kernels at Llama-3 heads batch 8, 64K, 1/16 fp16 r 8 (the scorer, the
# striped top-k, the pipelined sparse attention and its combine): where the chain's fixed
# costs sit (the attention's ~10 us beside its bytes).
FINAL=$OUT
export OUT=$PWD/out9
mkdir -p $OUT
tar xJf .gpu-bundle/pack.txz -C .gpu-bundle
export LD_LIBRARY_PATH=$PWD/.gpu-bundle/lib:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
B=.gpu-bundle/bin
NCU=/usr/local/cuda/bin/ncu
COMMON="--prefill=false --dense_algos pipelined --dense_waves 4 --ds_score_algos strided --ds_topk_algos auto --ds_attention_algos pipelined --ds_other_waves 4 --iters 1"
# The 1/8 variants run first (three launches each, eagerly, then timed): skip into 1/16 fp16 r 8.
timeout 200 $NCU --section SpeedOfLight --section LaunchStats --section Occupancy \
  -k regex:"LabelScores|TopKSelect|SparsePipelined|DecodeCombine" --launch-count 60 \
  -o $OUT/chain $B/dsinfer-attention-bench $COMMON --models llama3-8b --batches 8 \
  --contexts 65536 > $OUT/ncu_chain.log 2>&1
echo "ncu rc=$?"
$NCU --import $OUT/chain.ncu-rep --page details > $OUT/chain_details.txt 2>&1
$NCU --import $OUT/chain.ncu-rep --page raw --csv --metrics gpu__time_duration.sum,dram__throughput.avg.pct_of_peak_sustained_elapsed,launch__grid_size,launch__block_size > $OUT/chain_raw.csv 2>&1
rm -f $OUT/chain.ncu-rep
grep -E "^  [A-Za-z_].*\(|Duration|DRAM Throughput|Grid Size" $OUT/chain_details.txt | head -80
cd $OUT/.. && tar czf $FINAL/call9.tgz out9
