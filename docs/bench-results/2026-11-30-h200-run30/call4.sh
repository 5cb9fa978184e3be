#!/bin/bash
# Run 30 call 4 (the final code: the fallback inlined): every GPU test (gpu-check
# STEPS=tests); end to end, Llama-3-8B, beside the committed dsinfer-bench (head), alternated.
cd "$(git rev-parse --show-toplevel 2>/dev/null || pwd)"
FINAL=$OUT; OUT=$PWD/out4; mkdir -p $OUT
STEPS=tests TOTAL_BUDGET=300 OUT=$OUT/check timeout 330 bash scripts/gpu-check.sh run \
  > $OUT/tests.log 2>&1
echo "tests rc $?" >> $OUT/rcs.txt
cp $OUT/check/summary.json $OUT/gpu-check-summary.json 2>/dev/null
rm -rf .gpu-bundle/bin .gpu-bundle/lib; tar xJf .gpu-bundle/pack.txz -C .gpu-bundle
tar xJf .gpu-bundle/extra.txz -C .gpu-bundle
export LD_LIBRARY_PATH=$PWD/.gpu-bundle/lib:/usr/local/cuda/lib64
B=.gpu-bundle/bin
t0=$(date +%s); stamp() { echo "$1 rc $2 at $(( $(date +%s) - t0 )) s" >> $OUT/rcs.txt; }
e2e="--attention double_sparse --ds_ratio 16 --label_bits 16 --iters 10 --linear_algos auto --dependent_launch on --long_prefill_layers 1 --models llama3-8b"
for rep in 1 2; do
  if [ $rep = 1 ]; then order="dsinfer-bench dsinfer-bench-head"; else order="dsinfer-bench-head dsinfer-bench"; fi
  for b in $order; do
    for bc in "3 262144" "3 131072" "8 65536"; do
      set -- $bc
      timeout 60 $B/$b $e2e --batches $1 --contexts $2 --json_out $OUT/e2e-b$1-$2-$b-$rep.json \
        > $OUT/e2e-b$1-$2-$b-$rep.log 2>&1
      stamp e2e-b$1-$2-$b-$rep $?
    done
  done
done
cd $OUT/.. && tar czf $FINAL/call4.tgz out4
