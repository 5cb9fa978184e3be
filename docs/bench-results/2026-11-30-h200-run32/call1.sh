#!/bin/bash
# Run 32 call 1: where the two-block striped top-k's time goes (Llama-3 heads, 1/16 fp16 r 8,
# 32-64 pairs, 64K-256K): an experiment build stamping %globaltimer at each phase of
# TopKSelectStripedPartsKernel (entry, segment start, read 1's histogram, the pair histogram and
# boundary, read 2's ordered split, the cluster barrier, block 0's finish), printed per launch
# (DSINFER_EXP_TRACE, eager launches only); then the operator beside the committed bench.
cd "$(git rev-parse --show-toplevel 2>/dev/null || pwd)"
FINAL=$OUT; OUT=$PWD/out1; mkdir -p $OUT
rm -rf .gpu-bundle/bin .gpu-bundle/lib; tar xJf .gpu-bundle/pack.txz -C .gpu-bundle
tar xJf .gpu-bundle/extra.txz -C .gpu-bundle
export LD_LIBRARY_PATH=$PWD/.gpu-bundle/lib:/usr/local/cuda/lib64
B=.gpu-bundle/bin
nvidia-smi -L > $OUT/gpu.txt
t0=$(date +%s); stamp() { echo "$1 rc $2 at $(( $(date +%s) - t0 )) s" >> $OUT/rcs.txt; }
op() {  # name binary models batches contexts iters
  timeout 100 $B/$2 --prefill=false --dense_algos pipelined --dense_waves 4 \
    --ds_score_algos strided --ds_attention_algos pipelined --ds_other_waves 4 --iters $6 \
    --max_gib 100 --ds_variants "1/16 fp16 r8" --ds_topk_algos auto --models $3 \
    --batches $4 --contexts $5 --json_out $OUT/$1.json > $OUT/$1.log 2>&1
  stamp $1 $?
}
DSINFER_EXP_TRACE=1 op trace dsinfer-attention-bench-trace llama3-8b 4,8 65536,131072,262144 3
for rep in 1 2; do
  op base-$rep dsinfer-attention-bench llama3-8b 4,8 65536,131072,262144 20
  op stamps-$rep dsinfer-attention-bench-trace llama3-8b 4,8 65536,131072,262144 20
done
cd $OUT/.. && tar czf $FINAL/call1.tgz out1
