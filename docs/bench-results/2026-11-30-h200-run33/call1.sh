#!/bin/bash
# Run 33 call 1: the persistent chain (LaunchDsChain, ds_chain.cu), first time on a GPU:
# double_sparsity_gpu_test (every chain case now also through the persistent launch against
# the twins), then the operator bench (its selection and output checked against the three
# launches', then timed) at Llama-3 and Llama-2 heads, batch 1-8, 64K-256K.
cd "$(git rev-parse --show-toplevel 2>/dev/null || pwd)"
FINAL=$OUT; OUT=$PWD/out1; mkdir -p $OUT
rm -rf .gpu-bundle/bin .gpu-bundle/lib; tar xJf .gpu-bundle/pack.txz -C .gpu-bundle
export LD_LIBRARY_PATH=$PWD/.gpu-bundle/lib:/usr/local/cuda/lib64
B=.gpu-bundle/bin
t0=$(date +%s); stamp() { echo "$1 rc $2 at $(( $(date +%s) - t0 )) s" >> $OUT/rcs.txt; }
nvidia-smi > $OUT/smi.txt 2>&1
timeout 240 $B/double_sparsity_gpu_test > $OUT/ds_test.log 2>&1; stamp ds_test $?
op() {  # name models batches contexts variants
  timeout 150 $B/dsinfer-attention-bench --prefill=false --dense_algos pipelined --dense_waves 4 \
    --ds_score_algos strided --ds_attention_algos pipelined --ds_other_waves 4 --iters 20 \
    --max_gib 100 --ds_variants "$5" --ds_topk_algos auto --models $2 \
    --batches $3 --contexts $4 --json_out $OUT/$1.json > $OUT/$1.log 2>&1
  stamp $1 $?
}
op l3-b8 llama3-8b 8 65536,131072,262144 "1/16 fp16 r8,1/8 fp16 r16"
op l2-b8 llama2-7b 8 65536,131072,262144 "1/16 fp16 r8,1/8 fp16 r16"
op l3-small llama3-8b 1,2,4 65536,262144 "1/16 fp16 r8"
cd $OUT/.. && tar czf $FINAL/call1.tgz out1
