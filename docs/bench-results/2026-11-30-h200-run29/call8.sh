#!/bin/bash
# Run 29 call 8 (the review's refactor: Key16At for ClusterSelect's two key unpackings, dead
# RoundedScore and a using removed; same behaviour): the Double Sparsity GPU tests rebuilt.
cd "$(git rev-parse --show-toplevel 2>/dev/null || pwd)"
FINAL=$OUT; OUT=$PWD/out8; mkdir -p $OUT
rm -rf .gpu-bundle/bin .gpu-bundle/lib; tar xJf .gpu-bundle/pack.txz -C .gpu-bundle
tar xJf .gpu-bundle/extra.txz -C .gpu-bundle
export LD_LIBRARY_PATH=$PWD/.gpu-bundle/lib:/usr/local/cuda/lib64
for t in double_sparsity_gpu_test double_sparsity_graph_gpu_test; do
  timeout 150 .gpu-bundle/bin/$t-rev --gtest_brief=1 > $OUT/$t.log 2>&1; echo "$t rc $?" >> $OUT/rcs.txt
done
cd $OUT/.. && tar czf $FINAL/call8.tgz out8
