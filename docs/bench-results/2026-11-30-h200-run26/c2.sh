#!/bin/bash
# Run 26 call 2: where an end-to-end decode step's time goes, kernel by kernel: nsys of the
# last eager step (dsinfer-bench's cudaProfilerStart range) of the previous build (base1, the
# committed code), Llama-3-8B batch 8 at 32K, Double Sparsity (1/16 fp16 r 8) and dense, and
# Llama-2-7B batch 8 at 30K, Double Sparsity; kernel summaries and traces as CSV.
FINAL=$OUT
export OUT=$PWD/out2
mkdir -p $OUT
tar xJf .gpu-bundle/pack.txz -C .gpu-bundle
mkdir -p base && tar xJf .gpu-bundle/base1.txz -C base
export LD_LIBRARY_PATH=$PWD/.gpu-bundle/lib:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
NSYS=$(command -v nsys || ls /usr/local/cuda/bin/nsys /opt/nvidia/nsight-systems/*/bin/nsys 2>/dev/null | head -1)
echo "nsys: $NSYS"
for cfg in llama3-8b:32768:double_sparse llama3-8b:32768:dense llama2-7b:30720:double_sparse; do
  IFS=: read model ctx attn <<< "$cfg"
  n=${model}_${ctx}_${attn}
  timeout 120 $NSYS profile -t cuda --cuda-graph-trace=node --capture-range=cudaProfilerApi \
    --force-overwrite true -o $OUT/$n base/dsinfer-bench --attention $attn --ds_ratio 16 \
    --label_bits 16 --models $model --batches 8 --contexts $ctx --iters 3 --linear_algos auto \
    --dependent_launch on --long_prefill_layers 1 > $OUT/$n.log 2>&1
  echo "$n rc=$?"
  timeout 60 $NSYS stats --report cuda_gpu_kern_sum --report cuda_gpu_trace --format csv \
    --force-export=true --output $OUT/$n $OUT/$n.nsys-rep > $OUT/${n}_stats.log 2>&1
  echo "stats rc=$?"; ls $OUT | grep "$n" | head
  rm -f $OUT/$n.nsys-rep $OUT/$n.sqlite
done
head -25 $OUT/llama3-8b_32768_double_sparse_cuda_gpu_kern_sum.csv | cut -c1-200
cd $OUT/.. && tar czf $FINAL/call2.tgz out2
