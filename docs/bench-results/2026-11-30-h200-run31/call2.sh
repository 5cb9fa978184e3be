#!/bin/bash
# Run 31 call 2: the top-k launched beside the attention, and beside the scoring, of the whole
# batch at once on two streams (independent: a ceiling for any overlap of them), Llama-3 heads
# batch 8 / 4, Llama-2 heads batch 8; and an nsys trace of the 2-group pipeline at batch 8 256K.
cd "$(git rev-parse --show-toplevel 2>/dev/null || pwd)"
FINAL=$OUT; OUT=$PWD/out2; mkdir -p $OUT
rm -rf .gpu-bundle/bin .gpu-bundle/lib; tar xJf .gpu-bundle/pack.txz -C .gpu-bundle
tar xJf .gpu-bundle/extra.txz -C .gpu-bundle
export LD_LIBRARY_PATH=$PWD/.gpu-bundle/lib:/usr/local/cuda/lib64
B=.gpu-bundle/bin
t0=$(date +%s); stamp() { echo "$1 rc $2 at $(( $(date +%s) - t0 )) s" >> $OUT/rcs.txt; }
op() {  # name topk models batches contexts [more flags]
  local name=$1 topk=$2 models=$3 batches=$4 ctxs=$5; shift 5
  timeout 120 $B/dsinfer-attention-bench --prefill=false --dense_algos pipelined --dense_waves 4 \
    --ds_score_algos strided --ds_attention_algos pipelined --ds_other_waves 4 --iters 20 \
    --max_gib 100 --ds_variants "1/16 fp16 r8" --ds_topk_algos $topk --models $models \
    --batches $batches --contexts $ctxs "$@" \
    --json_out $OUT/$name.json > $OUT/$name.log 2>&1
  stamp $name $?
}
op corun-l3 auto llama3-8b 8,4 65536,131072,262144 --ds_corun
op corun-l2 auto llama2-7b 8,2 65536,262144 --ds_corun
which nsys > $OUT/nsys.txt 2>&1; ls /usr/local/cuda/bin | grep -i nsys >> $OUT/nsys.txt
NSYS=$(command -v nsys || ls /usr/local/cuda/bin/nsys /opt/nvidia/nsight-systems/*/bin/nsys 2>/dev/null | head -1)
if [ -n "$NSYS" ]; then
  timeout 150 $NSYS profile -o $OUT/pipe2 --cuda-graph-trace=node -t cuda --force-overwrite true \
    $B/dsinfer-attention-bench --prefill=false --dense_algos pipelined --dense_waves 4 \
    --ds_score_algos strided --ds_attention_algos pipelined --ds_other_waves 4 --iters 3 \
    --max_gib 100 --ds_variants "1/16 fp16 r8" --ds_topk_algos auto --models llama3-8b \
    --batches 8 --contexts 262144 --ds_pipeline_groups 2 > $OUT/nsys-run.log 2>&1
  stamp nsys $?
  timeout 100 $NSYS stats --report cuda_gpu_trace --format csv -o $OUT/pipe2 $OUT/pipe2.nsys-rep \
    > $OUT/nsys-stats.log 2>&1
  stamp nsys-stats $?
  rm -f $OUT/pipe2.sqlite
  xz -9 $OUT/pipe2*.csv 2>/dev/null
fi
cd $OUT/.. && tar czf $FINAL/call2.tgz out2
