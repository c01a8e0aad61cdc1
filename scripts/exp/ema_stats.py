"""EXP: pool bench/results/pick_place/ema/ (docs/learning.md row 72): Wilson intervals and exact McNemar on paired seeds."""
import json
from math import comb
from lwd.sim.evaluate import wilson
def mcnemar(b,c):
    n=b+c; k=min(b,c)
    return min(1.0, 2*sum(comb(n,i) for i in range(k+1))/2**n) if n else 1.0
tot={}
for s in (0,1,2):
    r=json.load(open(f'bench/results/pick_place/ema/s{s}/result.json'))
    for k in ('raw','ema0.995','ema0.999','ema0.9995'):
        t=tot.setdefault(k,[0,0,[]]); t[0]+=r[k]['successes']; t[1]+=r[k]['episodes']; t[2]+=r[k]['outcomes']
    for k in ('raw','ema0.995','ema0.999'):
        m=json.load(open(f'bench/results/pick_place/ema/s{s}/more_{k}.json'))['success']['pick_place']
        t=tot[k]; t[0]+=m['successes']; t[1]+=m['episodes']
for k,(a,n,o) in tot.items():
    lo,hi=wilson(a,n); print(k, f"{a}/{n} = {a/n:.1%} [{lo:.1%}, {hi:.1%}]")
raw=tot['raw'][2]
for k in ('ema0.995','ema0.999','ema0.9995'):
    o=tot[k][2]; b=sum(1 for x,y in zip(raw,o) if y and not x); c=sum(1 for x,y in zip(raw,o) if x and not y)
    print(k,'paired on 600 seeds: only ema',b,'only raw',c,'p',round(mcnemar(b,c),3))
r=json.load(open('bench/results/pick_place/ema/v0/result.json'))
raw=r['raw']['outcomes']
for k in ('raw','ema0.999','ema0.9995'):
    o=r[k]['outcomes']; b=sum(1 for x,y in zip(raw,o) if y and not x); c=sum(1 for x,y in zip(raw,o) if x and not y)
    lo,hi=wilson(sum(o),len(o)); print('v0',k,f"{sum(o)}/{len(o)} [{lo:.1%}, {hi:.1%}]",b,c,round(mcnemar(b,c),3))
