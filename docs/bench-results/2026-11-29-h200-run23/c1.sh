#!/bin/bash
# Run 23 call 1: where the top-k's time goes at Llama-3 heads (64 pairs): every top-k kernel
# side by side (auto, striped, multi-block, cluster) at batch 8, 64K-256K, and Llama-2 heads
# batch 1 (32 pairs); ncu durations of the multi-block's three kernels and the striped kernel
# at Llama-3 heads batch 8, 256K; ncu source of the striped kernel there.
FINAL=$OUT
export OUT=$PWD/out1
mkdir -p $OUT
tar xJf .gpu-bundle/pack.txz -C .gpu-bundle
export LD_LIBRARY_PATH=$PWD/.gpu-bundle/lib:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
B=.gpu-bundle/bin
nvidia-smi --query-gpu=name,clocks.max.sm,clocks.max.mem --format=csv > $OUT/gpu.txt
COMMON="--prefill=false --dense_algos pipelined --dense_waves 4 --ds_score_algos strided --ds_attention_algos pipelined --ds_other_waves 4 --iters 10"
timeout 150 $B/dsinfer-attention-bench $COMMON --ds_topk_algos auto,striped,multi-block,cluster \
  --models llama3-8b --batches 8 --contexts 65536,131072,262144 \
  --json_out $OUT/op_l3b8.json > $OUT/op_l3b8.log 2>&1; echo "op l3b8 rc=$?"
timeout 120 $B/dsinfer-attention-bench $COMMON --ds_topk_algos auto,striped,multi-block,cluster \
  --models llama2-7b --batches 1 --contexts 65536,262144 \
  --json_out $OUT/op_l2b1.json > $OUT/op_l2b1.log 2>&1; echo "op l2b1 rc=$?"
NCU=/usr/local/cuda/bin/ncu
timeout 150 $NCU --section SpeedOfLight --section LaunchStats --kernel-name-base mangled \
  -k regex:TopK --launch-count 12 \
  $B/dsinfer-attention-bench $COMMON --iters 1 --ds_topk_algos multi-block,striped \
  --models llama3-8b --batches 8 --contexts 262144 > $OUT/ncu_durations.txt 2>&1
echo "ncu durations rc=$?"
timeout 150 $NCU --set full --import-source yes --kernel-name-base mangled \
  -k regex:TopKSelectStriped --launch-skip 1 --launch-count 1 -o $OUT/striped_l3b8_256k \
  $B/dsinfer-attention-bench $COMMON --iters 1 --ds_topk_algos striped \
  --models llama3-8b --batches 8 --contexts 262144 > $OUT/ncu_striped.log 2>&1
echo "ncu striped rc=$?"
$NCU --import $OUT/striped_l3b8_256k.ncu-rep --page details > $OUT/striped_details.txt 2>&1
$NCU --import $OUT/striped_l3b8_256k.ncu-rep --page source --csv --print-source sass \
  2>/dev/null | gzip > $OUT/striped_sass.csv.gz
rm -f $OUT/striped_l3b8_256k.ncu-rep
cd $OUT/.. && tar czf $FINAL/call1.tgz out1
