#!/bin/bash
# Run 26 call 3 (call 2 found no nsys on the host; ncu instead): where an end-to-end decode
# step's time goes, kernel by kernel: each kernel's duration (ncu, gpu__time_duration, kernels
# serialized) in the last eager step (dsinfer-bench's cudaProfilerStart range) of the previous
# build (base1, the committed code), Llama-3-8B batch 8 at 32K, Double Sparsity (1/16 fp16 r 8)
# and dense, and Llama-2-7B batch 8 at 30K, Double Sparsity.
FINAL=$OUT
export OUT=$PWD/out3
mkdir -p $OUT
tar xJf .gpu-bundle/pack.txz -C .gpu-bundle
mkdir -p base && tar xJf .gpu-bundle/base1.txz -C base
export LD_LIBRARY_PATH=$PWD/.gpu-bundle/lib:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
NCU=/usr/local/cuda/bin/ncu
for cfg in llama3-8b:32768:double_sparse llama3-8b:32768:dense llama2-7b:30720:double_sparse; do
  IFS=: read model ctx attn <<< "$cfg"
  n=${model}_${ctx}_${attn}
  timeout 150 $NCU --profile-from-start off --metrics gpu__time_duration.sum --csv \
    --print-units base base/dsinfer-bench --attention $attn --ds_ratio 16 \
    --label_bits 16 --models $model --batches 8 --contexts $ctx --iters 3 --linear_algos auto \
    --dependent_launch on --long_prefill_layers 1 > $OUT/$n.csv 2> $OUT/$n.err
  echo "$n rc=$? $(grep -c gpu__time_duration $OUT/$n.csv) kernels"
done
tail -3 $OUT/llama3-8b_32768_double_sparse.csv | cut -c1-250
cd $OUT/.. && tar czf $FINAL/call3.tgz out3
