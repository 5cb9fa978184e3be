#!/bin/bash
# Run 30 call 11 (the review's refactor, same behaviour: the sequences' label freeing shared by
# Retire and ReleaseDeviceLabels, the row-bound clamp shared by the top-k's rule and launch,
# the resident kernel calling SelectInMemory directly): the Double Sparsity and graph GPU tests.
cd "$(git rev-parse --show-toplevel 2>/dev/null || pwd)"
FINAL=$OUT; OUT=$PWD/out11; mkdir -p $OUT
rm -rf .gpu-bundle/bin .gpu-bundle/lib; tar xJf .gpu-bundle/pack.txz -C .gpu-bundle
tar xJf .gpu-bundle/extra.txz -C .gpu-bundle
export LD_LIBRARY_PATH=$PWD/.gpu-bundle/lib:/usr/local/cuda/lib64
B=.gpu-bundle/bin
t0=$(date +%s); stamp() { echo "$1 rc $2 at $(( $(date +%s) - t0 )) s" >> $OUT/rcs.txt; }
timeout 30 $B/double_sparsity_graph_gpu_test-rev > $OUT/ds_graph_test.log 2>&1; stamp graph $?
timeout 150 $B/double_sparsity_gpu_test-rev > $OUT/ds_test.log 2>&1; stamp ds $?
cd $OUT/.. && tar czf $FINAL/call11.tgz out11
