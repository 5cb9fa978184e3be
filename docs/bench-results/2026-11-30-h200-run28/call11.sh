#!/bin/bash
# Run 28 call 11: the cluster top-k on 16-bit keys counting its first digit with a plain
# shared-memory atomic per key (as the fp32-key kernel did; call 10's match_any was slower
# there), against the committed code (attn-bench-base); the twins test.
cd "$(git rev-parse --show-toplevel 2>/dev/null || pwd)"
FINAL=$OUT; OUT=$PWD/out11; mkdir -p $OUT
rm -rf .gpu-bundle/bin .gpu-bundle/lib; tar xJf .gpu-bundle/pack.txz -C .gpu-bundle
tar xJf .gpu-bundle/extra.txz -C .gpu-bundle
export LD_LIBRARY_PATH=$PWD/.gpu-bundle/lib:/usr/local/cuda/lib64
B=.gpu-bundle/bin
common="--prefill=false --dense_algos pipelined --dense_waves 4 --ds_score_algos strided --ds_attention_algos pipelined --ds_other_waves 4 --iters 20 --max_gib 100"
run() {  # name, bin, args
  local name=$1 bin=$2; shift 2
  timeout 120 $B/$bin "$@" > $OUT/$name.log 2>&1
  echo "$name rc $?" >> $OUT/rcs.txt
}
for b in attn-bench-base attn-bench-new; do
  run op-cluster-$b $b $common --ds_topk_algos auto,cluster --models llama3-8b,llama2-7b --batches 1,2 --contexts 65536,262144 --json_out $OUT/op-cluster-$b.json
done
timeout 200 $B/dstest-new --gtest_brief=1 > $OUT/ds_test.log 2>&1; echo "ds test rc $?" >> $OUT/rcs.txt
cd $OUT/.. && tar czf $FINAL/call11.tgz out11
