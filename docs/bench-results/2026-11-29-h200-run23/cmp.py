import json,sys,glob,statistics,collections
# usage: cmp.py dir prefix variantA variantB [ops-substring]
d,pre,A,B=sys.argv[1:5]; opf=sys.argv[5] if len(sys.argv)>5 else 'ds 1/16 fp16'
def load(v):
  acc=collections.defaultdict(list)
  for f in sorted(glob.glob(f'{d}/{pre}_{v}_r*.json')):
    for r in json.load(open(f))['results']:
      if opf in r['op']:
        acc[(r['model'],r['batch'],r['context'],r['op'])].append((r['us'],r.get('us_topk',0),r.get('us_score',0),r['floor_us']))
  return acc
a,b=load(A),load(B)
for k in sorted(a):
  if k not in b: continue
  ma=statistics.median(x[0] for x in a[k]); mb=statistics.median(x[0] for x in b[k])
  ta=statistics.median(x[1] for x in a[k]); tb=statistics.median(x[1] for x in b[k])
  print('%-10s b%-2d %6dK %-16s chain %7.1f vs %7.1f (%+.1f%%) floor x%.3f | topk %6.1f vs %6.1f'%(k[0],k[1],k[2]//1024,k[3],ma,mb,100*(ma/mb-1),ma/a[k][0][3],ta,tb))
