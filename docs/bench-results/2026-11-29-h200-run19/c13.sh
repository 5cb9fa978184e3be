#!/usr/bin/env bash
# Run 19 call 13: DifferentDenseLayersReplay failed once in call 12 (mistral-mha, the sequence
# dense at layer 0, 0.025 of max|logit|; fresh random prompts each run). The test before
# (budget 30 under the 44-token context) and after (every token kept) repeated 200 times each
# on fresh prompts, then the whole graph test binary once.
cd "$(dirname "$0")/.."
FINAL=$OUT
export OUT=$PWD/out13
mkdir -p $OUT
tar xJf .gpu-bundle/pack.txz -C .gpu-bundle
gunzip -f .gpu-bundle/old_graph_test.gz && chmod +x .gpu-bundle/old_graph_test
export LD_LIBRARY_PATH=$PWD/.gpu-bundle/lib:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
bin=.gpu-bundle/bin
for which in old new; do
  t=$bin/double_sparsity_graph_gpu_test; [ $which = old ] && t=.gpu-bundle/old_graph_test
  timeout 120 $t --gtest_filter='*DifferentDenseLayers*' --gtest_repeat=200 \
    > $OUT/repeat_$which.txt 2>&1
  echo "$which rc=$? failed repetitions: $(grep -c '^\[  FAILED  \] DoubleSparsityGraphGpu.DifferentDenseLayersReplay (' $OUT/repeat_$which.txt) of $(grep -c '^\[ RUN      \]' $OUT/repeat_$which.txt)"
  grep -h "dense layers 0 and 1, graph vs eager" $OUT/repeat_$which.txt | awk '{print $NF=="" ? "" : $(NF-3)}' | sort -g | tail -3
done
timeout 60 $bin/double_sparsity_graph_gpu_test > $OUT/graph_test.txt 2>&1
echo "graph test rc=$?"; tail -3 $OUT/graph_test.txt
tar czf $FINAL/call13.tgz -C $OUT .
