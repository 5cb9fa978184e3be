#!/bin/bash
# Run 31 call 1: the chain as a pipeline over groups of sequences (ChainPipeline; top-k streams
# at the highest priority, scoring next, attention lowest), 2-4 groups, with and without node
# priorities, beside the whole chain's graph; Llama-3 heads batch 2-8, Llama-2 heads batch 1-8.
cd "$(git rev-parse --show-toplevel 2>/dev/null || pwd)"
FINAL=$OUT; OUT=$PWD/out1; mkdir -p $OUT
rm -rf .gpu-bundle/bin .gpu-bundle/lib; tar xJf .gpu-bundle/pack.txz -C .gpu-bundle
tar xJf .gpu-bundle/extra.txz -C .gpu-bundle
export LD_LIBRARY_PATH=$PWD/.gpu-bundle/lib:/usr/local/cuda/lib64
B=.gpu-bundle/bin
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader > $OUT/gpu.txt
t0=$(date +%s); stamp() { echo "$1 rc $2 at $(( $(date +%s) - t0 )) s" >> $OUT/rcs.txt; }
op() {  # name topk models batches [more flags]
  local name=$1 topk=$2 models=$3 batches=$4; shift 4
  timeout 120 $B/dsinfer-attention-bench --prefill=false --dense_algos pipelined --dense_waves 4 \
    --ds_score_algos strided --ds_attention_algos pipelined --ds_other_waves 4 --iters 20 \
    --max_gib 100 --ds_variants "1/16 fp16 r8" --ds_topk_algos $topk --models $models \
    --batches $batches --contexts 65536,131072,262144 --ds_pipeline_groups 2,3,4 "$@" \
    --json_out $OUT/$name.json > $OUT/$name.log 2>&1
  stamp $name $?
}
op l3-auto auto llama3-8b 8,4,3,2
op l3-striped striped llama3-8b 8,4
op l3-cluster cluster llama3-8b 8,4
op l2-auto auto llama2-7b 8,2,1
op l3-auto-r2 auto llama3-8b 8
cd $OUT/.. && tar czf $FINAL/call1.tgz out1
