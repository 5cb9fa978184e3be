#!/bin/bash
# Run 28 call 9: the fused kernel at 512 threads (no ring), 16-bit keys and the two-pass
# select, in its kAuto domain (rows up to 8K) and beyond: high bytes counted by ballot bit
# planes (bench-mA) or by match_any atomics as before (bench-mB), against the committed code
# (attn-bench-base); the twins test on mA.
cd "$(git rev-parse --show-toplevel 2>/dev/null || pwd)"
FINAL=$OUT; OUT=$PWD/out9; mkdir -p $OUT
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
for b in attn-bench-base bench-mA bench-mB; do
  run $b $b X=1 --models llama2-7b,llama3-8b --batches 1,4,8 --contexts 2048,4096,8192,16384
done
timeout 240 $B/dstest-mA --gtest_brief=1 > $OUT/ds_test.log 2>&1; echo "ds test rc $?" | tee -a $OUT/ds_test.log
tail -3 $OUT/ds_test.log
cd $OUT/.. && tar czf $FINAL/call9.tgz out9
