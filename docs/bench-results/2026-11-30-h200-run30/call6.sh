#!/bin/bash
# Run 30 call 6 (an experiment build: the resident top-k's fallback inlined, *-rinl, against
# the final code's bench in the pack): double_sparsity_gpu_test on it; the operator where kAuto
# takes the resident kernel (rows of 8K-47K): Llama-3 heads batch 8 / 16 / 32 and Llama-2 heads
# batch 2 / 8 at 16K / 32K / 40K, alternated three times.
cd "$(git rev-parse --show-toplevel 2>/dev/null || pwd)"
FINAL=$OUT; OUT=$PWD/out6; mkdir -p $OUT
rm -rf .gpu-bundle/bin .gpu-bundle/lib; tar xJf .gpu-bundle/pack.txz -C .gpu-bundle
tar xJf .gpu-bundle/extra.txz -C .gpu-bundle
export LD_LIBRARY_PATH=$PWD/.gpu-bundle/lib:/usr/local/cuda/lib64
B=.gpu-bundle/bin
t0=$(date +%s); stamp() { echo "$1 rc $2 at $(( $(date +%s) - t0 )) s" >> $OUT/rcs.txt; }
timeout 150 $B/double_sparsity_gpu_test-rinl > $OUT/ds_test.log 2>&1; stamp ds_test $?
op() {  # name binary models batches
  timeout 90 $B/$2 --prefill=false --dense_algos pipelined --dense_waves 4 \
    --ds_score_algos strided --ds_attention_algos pipelined --ds_other_waves 4 --iters 20 \
    --max_gib 100 --ds_variants "1/16 fp16 r8" --ds_topk_algos auto --models $3 \
    --batches $4 --contexts 16384,32768,40000 \
    --json_out $OUT/$1.json > $OUT/$1.log 2>&1
  stamp $1 $?
}
for rep in 1 2 3; do
  case $rep in 1) order="cur rinl";; 2) order="rinl cur";; 3) order="cur rinl";; esac
  for v in $order; do
    bin=dsinfer-attention-bench; [ $v = rinl ] && bin=dsinfer-attention-bench-rinl
    op op-l3-$v-$rep $bin llama3-8b 8,16,32
    op op-l2-$v-$rep $bin llama2-7b 2,8
  done
done
cd $OUT/.. && tar czf $FINAL/call6.tgz out6
