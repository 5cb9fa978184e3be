#!/bin/bash
# Run 28 call 8: the fused kernel where kAuto takes it (rows up to 8K, at most 2^18 rows a
# launch): the committed code (attn-bench-base) against this run's kernel (bench-s80: 16-bit
# keys, the two-pass select, ballot histogram, fp16 rows through a ring, 1024 threads for
# fp16 r 8 / 4-bit with one score head), each twice, alternating.
cd "$(git rev-parse --show-toplevel 2>/dev/null || pwd)"
FINAL=$OUT; OUT=$PWD/out8; mkdir -p $OUT
rm -rf .gpu-bundle/bin .gpu-bundle/lib; tar xJf .gpu-bundle/pack.txz -C .gpu-bundle
tar xJf .gpu-bundle/extra.txz -C .gpu-bundle
export LD_LIBRARY_PATH=$PWD/.gpu-bundle/lib:/usr/local/cuda/lib64
B=.gpu-bundle/bin
common="--prefill=false --dense_algos pipelined --dense_waves 4 --ds_score_algos strided --ds_topk_algos auto --ds_attention_algos pipelined --ds_other_waves 4 --iters 20 --max_gib 100"
run() {  # name, bin, env, args
  local name=$1 bin=$2 envv=$3; shift 3
  env $envv timeout 150 $B/$bin $common --json_out $OUT/$name.json "$@" > $OUT/$name.log 2>&1
  echo "$name rc $?" >> $OUT/rcs.txt
}
for rep in 1 2; do
  for b in attn-bench-base bench-s80; do
    run $b-$rep $b X=1 --models llama2-7b,llama3-8b --batches 1,4,8 --contexts 2048,4096,8192
  done
done
cd $OUT/.. && tar czf $FINAL/call8.tgz out8
