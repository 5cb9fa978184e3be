#!/bin/bash
# Run 33 call 6: the sparse attention's combine, for up to kEarlyCombinePieces pieces, as a
# one-part kernel (a thread a channel, HD threads a block) that starts beside the attention
# (whose blocks let it: LetDependentsStart) and waits there, so that it merges as soon as the
# attention ends (call 5's ncu: the eight-part combine 4.3-4.5 us at base clocks).
# double_sparsity_gpu_test, then the operator bench, new against the tree's, alternated twice.
cd "$(git rev-parse --show-toplevel 2>/dev/null || pwd)"
FINAL=$OUT; OUT=$PWD/out6; mkdir -p $OUT
rm -rf .gpu-bundle/bin .gpu-bundle/lib; tar xJf .gpu-bundle/pack.txz -C .gpu-bundle
tar xJf .gpu-bundle/extra.txz -C .gpu-bundle
export LD_LIBRARY_PATH=$PWD/.gpu-bundle/lib:/usr/local/cuda/lib64
B=.gpu-bundle/bin
t0=$(date +%s); stamp() { echo "$1 rc $2 at $(( $(date +%s) - t0 )) s" >> $OUT/rcs.txt; }
timeout 200 $B/double_sparsity_gpu_test-new > $OUT/ds_test.log 2>&1; stamp ds_test $?
op() {  # name binary models batches contexts
  timeout 100 $B/$2 --prefill=false --dense_algos pipelined --dense_waves 4 \
    --ds_score_algos strided --ds_attention_algos pipelined --ds_other_waves 4 --iters 20 \
    --max_gib 100 --ds_variants "1/16 fp16 r8" --ds_topk_algos auto --models $3 \
    --batches $4 --contexts $5 --json_out $OUT/$1.json > $OUT/$1.log 2>&1
  stamp $1 $?
}
for rep in 1 2; do
  for v in tree new; do
    op l3-$v-$rep dsinfer-attention-bench-$v llama3-8b 1,2,4,8 65536,131072,262144
    op l2-$v-$rep dsinfer-attention-bench-$v llama2-7b 1,8 65536,262144
  done
done
cd $OUT/.. && tar czf $FINAL/call6.tgz out6
