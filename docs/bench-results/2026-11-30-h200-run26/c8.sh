#!/bin/bash
# Run 26 call 8: the operator with the L2 emptied before every step ("cold L2": a GEMV streaming
# a weight matrix four times the L2 between steps, outside the timed events) beside the usual
# back-to-back steps, dense and the Double Sparsity chain, at issue 7's target shapes: Llama-2
# heads batch 8 at 64K / 128K / 256K and Llama-3 heads batch 8 at 32K / 64K / 128K / 256K.
FINAL=$OUT
export OUT=$PWD/out8
mkdir -p $OUT
tar xJf .gpu-bundle/pack.txz -C .gpu-bundle
export LD_LIBRARY_PATH=$PWD/.gpu-bundle/lib:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
B=.gpu-bundle/bin
OPS="--prefill=false --dense_algos pipelined --dense_waves 4 --ds_score_algos strided \
  --ds_topk_algos auto --ds_attention_algos pipelined --ds_other_waves 4 --iters 10"
timeout 200 $B/dsinfer-attention-bench $OPS --models llama2-7b --batches 8 \
  --contexts 65536,131072,262144 --json_out $OUT/op_l2_cold.json > $OUT/op_l2_cold.log 2>&1
echo "op l2 rc=$?"
timeout 200 $B/dsinfer-attention-bench $OPS --models llama3-8b --batches 8 \
  --contexts 32768,65536,131072,262144 --json_out $OUT/op_l3_cold.json > $OUT/op_l3_cold.log 2>&1
echo "op l3 rc=$?"
python3 - <<'PY'
import json
for f in ['out8/op_l2_cold.json','out8/op_l3_cold.json']:
    try: d=json.load(open(f))
    except Exception as e: print(f,e); continue
    dense={}
    for x in d['results']:
        k=(x['model'],x['batch'],x['context'])
        if x['op']=='dense':
            dense[k]=x; print(k,'dense warm %.1f cold %.1f floor %.1f'%(x['us'],x['us_cold_l2'],x['floor_us']))
        else:
            dw=dense[k]['us']; dc=dense[k]['us_cold_l2']
            print(k,x['op'],'warm %.1f cold %.1f floor %.1f | x floor %.2f / %.2f | vs dense %.2fx / %.2fx'%(
                x['us'],x['us_chain_cold_l2'],x['floor_us'],x['us']/x['floor_us'],
                x['us_chain_cold_l2']/x['floor_us'],dw/x['us'],dc/x['us_chain_cold_l2']))
PY
cd $OUT/.. && tar czf $FINAL/call8.tgz out8
