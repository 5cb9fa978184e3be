import json,glob,statistics,collections,sys
d,pre,A,B=sys.argv[1:5]
def load(v):
  acc=collections.defaultdict(list)
  for f in sorted(glob.glob(f'{d}/{pre}_{v}_r*.json')):
    for r in json.load(open(f))['results']:
      acc[(r['model'],r['context'],r['op'])].append((r.get('us_score',0),r['us']))
  return acc
a,b=load(A),load(B)
for k in sorted(a):
  if 'ds' not in k[2] or k not in b: continue
  sa=statistics.median(x[0] for x in a[k]); sb=statistics.median(x[0] for x in b[k])
  ca=statistics.median(x[1] for x in a[k]); cb=statistics.median(x[1] for x in b[k])
  print('%-10s %4dK %-16s score %6.1f vs %6.1f (%+5.1f%%) chain %7.1f vs %7.1f (%+5.1f%%)'%(k[0],k[1]//1024,k[2],sa,sb,100*(sa/sb-1),ca,cb,100*(ca/cb-1)))
