#!/bin/bash
# Run 33 call 4: the persistent chain's top-k as tasks over many blocks (call 3's one-block top-k
# took 100-400 us a pair): the block finishing a pair's scoring finds its boundary bucket, split
# chunks of 8192 scores (64 a thread) publish their counts and write winners and candidates, the
# block finishing a pair's last split chunk finishes it; scoring with the next group's rows in
# flight. double_sparsity_gpu_test, a trace build (chain-trace-call4.patch), the operator bench.
cd "$(git rev-parse --show-toplevel 2>/dev/null || pwd)"
FINAL=$OUT; OUT=$PWD/out4; mkdir -p $OUT
rm -rf .gpu-bundle/bin .gpu-bundle/lib; tar xJf .gpu-bundle/pack.txz -C .gpu-bundle
tar xJf .gpu-bundle/extra.txz -C .gpu-bundle
export LD_LIBRARY_PATH=$PWD/.gpu-bundle/lib:/usr/local/cuda/lib64
B=.gpu-bundle/bin
t0=$(date +%s); stamp() { echo "$1 rc $2 at $(( $(date +%s) - t0 )) s" >> $OUT/rcs.txt; }
timeout 240 $B/double_sparsity_gpu_test-new > $OUT/ds_test.log 2>&1; stamp ds_test $?
op() {  # name binary models batches contexts variants iters
  timeout 150 $B/$2 --prefill=false --dense_algos pipelined --dense_waves 4 \
    --ds_score_algos strided --ds_attention_algos pipelined --ds_other_waves 4 --iters $7 \
    --max_gib 100 --ds_variants "$6" --ds_topk_algos auto --models $3 \
    --batches $4 --contexts $5 --json_out $OUT/$1.json > $OUT/$1.log 2>&1
  stamp $1 $?
}
op trace-l3 dsinfer-attention-bench-trace llama3-8b 1,8 65536,262144 "1/16 fp16 r8" 3
op l3-b8 dsinfer-attention-bench-new llama3-8b 8 65536,131072,262144 "1/16 fp16 r8,1/8 fp16 r16" 20
op l2-b8 dsinfer-attention-bench-new llama2-7b 8 65536,262144 "1/16 fp16 r8" 20
op l3-small dsinfer-attention-bench-new llama3-8b 1,2,4 65536,262144 "1/16 fp16 r8" 20
cd $OUT/.. && tar czf $FINAL/call4.tgz out4
