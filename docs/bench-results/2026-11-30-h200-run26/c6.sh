#!/bin/bash
# Run 26 call 6: does kAuto's top-k (and scorer) choice, made on the operator bench (whose loop
# keeps the labels and scores in L2), still win inside a decode step? The committed build
# (base1) end to end, Double Sparsity only (1/16 fp16 r 8, graph steps), each top-k kernel by
# --ds_topk_algo: Llama-3-8B batch 8 at 32K and 64K, Llama-2-7B batch 8 at 30K; at 32K also the
# coalesced scorer; kAuto timed first and last.
FINAL=$OUT
export OUT=$PWD/out6
mkdir -p $OUT
tar xJf .gpu-bundle/pack.txz -C .gpu-bundle
mkdir -p base && tar xJf .gpu-bundle/base1.txz -C base
export LD_LIBRARY_PATH=$PWD/.gpu-bundle/lib:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
run() {  # model batch ctx topk score tag
  local n=e2e_$1_b$2_$3_$4_$5$6
  timeout 60 base/dsinfer-bench --attention double_sparse --ds_ratio 16 --label_bits 16 \
    --models $1 --batches $2 --contexts $3 --iters 7 --linear_algos auto \
    --dependent_launch on --long_prefill_layers 1 --ds_topk_algo $4 --ds_score_algo $5 \
    --json_out $OUT/$n.json > $OUT/$n.log 2>&1
  echo "$n rc=$? $(grep -E '^double_sparse' $OUT/$n.log | cut -c1-90)"
}
run llama3-8b 8 32768 auto strided _r1
for a in cluster striped two-read one-block; do run llama3-8b 8 32768 $a strided; done
run llama3-8b 8 32768 auto coalesced
run llama3-8b 8 32768 auto strided _r2
run llama2-7b 8 30720 auto strided _r1
for a in striped cluster two-read; do run llama2-7b 8 30720 $a strided; done
run llama2-7b 8 30720 auto strided _r2
run llama3-8b 8 65536 auto strided _r1
for a in cluster one-block; do run llama3-8b 8 65536 $a strided; done
run llama3-8b 8 65536 auto strided _r2
cd $OUT/.. && tar czf $FINAL/call6.tgz out6
