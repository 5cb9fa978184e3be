#!/bin/bash
# Run 32 call 6: call 5 with the finish's difference array summed by warp scans over
# conflict-free segments (a thread's 16 consecutive counters were a 16-way bank conflict a
# load) and FindBoundaryBucketInBlock's chunk reads rotated by the lane (likewise); as call 5:
# twin tests, operator new against the committed bench alternated twice (plus Llama-3 heads
# batch 8 at 32K, the resident top-k, which shares FindBoundaryBucketInBlock), phase trace.
cd "$(git rev-parse --show-toplevel 2>/dev/null || pwd)"
FINAL=$OUT; OUT=$PWD/out6; mkdir -p $OUT
rm -rf .gpu-bundle/bin .gpu-bundle/lib; tar xJf .gpu-bundle/pack.txz -C .gpu-bundle
tar xJf .gpu-bundle/extra.txz -C .gpu-bundle
export LD_LIBRARY_PATH=$PWD/.gpu-bundle/lib:/usr/local/cuda/lib64
B=.gpu-bundle/bin
t0=$(date +%s); stamp() { echo "$1 rc $2 at $(( $(date +%s) - t0 )) s" >> $OUT/rcs.txt; }
timeout 200 $B/double_sparsity_gpu_test-new > $OUT/ds_test.log 2>&1; stamp ds_test $?
op() {  # name binary models batches contexts iters
  timeout 100 $B/$2 --prefill=false --dense_algos pipelined --dense_waves 4 \
    --ds_score_algos strided --ds_attention_algos pipelined --ds_other_waves 4 --iters $6 \
    --max_gib 100 --ds_variants "1/16 fp16 r8" --ds_topk_algos auto --models $3 \
    --batches $4 --contexts $5 --json_out $OUT/$1.json > $OUT/$1.log 2>&1
  stamp $1 $?
}
for rep in 1 2; do
  for v in base new; do
    bin=dsinfer-attention-bench; [ $v = base ] || bin=dsinfer-attention-bench-$v
    op l3-$v-$rep $bin llama3-8b 4,8 32768,65536,131072,262144 20
    op l2-$v-$rep $bin llama2-7b 1,2,8 65536,131072,262144 20
  done
done
DSINFER_EXP_TRACE=1 op trace dsinfer-attention-bench-trace llama3-8b 4,8 131072,262144 3
cd $OUT/.. && tar czf $FINAL/call6.tgz out6
