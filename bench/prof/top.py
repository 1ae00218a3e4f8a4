# Self time by function of the largest CPU profile in /tmp/prof; with --heap, bytes allocated by
# function of the largest heap profile (HEAP=1 runs), and with --stacks also the callers' chains.
import json,sys,glob,collections,os
if '--heap' in sys.argv:
    f=max(glob.glob('/tmp/prof/*.heapprofile'), key=os.path.getsize)
    p=json.load(open(f))
    agg=collections.Counter(); stacks=collections.Counter()
    def walk(n, chain):
        cf=n['callFrame']; k=(cf['functionName'] or '(anon)')+' '+cf['url'].split('/')[-1]+':'+str(cf['lineNumber'])
        chain=chain+[k]
        size=n['selfSize']
        agg[k]+=size
        if size: stacks[' < '.join(reversed(chain[-5:]))]+=size
        for c in n['children']: walk(c, chain)
    walk(p['head'], [])
    tot=sum(agg.values())
    print(f"{tot/1e6:.1f} MB sampled")
    for k,v in agg.most_common(40): print(f"{v/1e6:8.2f}MB {100*v/tot:5.1f}% {k}")
    if '--stacks' in sys.argv:
        for k,v in stacks.most_common(40): print(f"{v/1e6:8.2f}MB {k}")
    sys.exit()
f=max(glob.glob('/tmp/prof/*.cpuprofile'), key=os.path.getsize)
p=json.load(open(f))
nodes={n['id']:n for n in p['nodes']}
self_t=collections.Counter()
dt=p['timeDeltas']; samples=p['samples']
for s,d in zip(samples,dt): self_t[s]+=d
agg=collections.Counter()
for nid,t in self_t.items():
    cf=nodes[nid]['callFrame']; agg[(cf['functionName'] or '(anon)')+' '+cf['url'].split('/')[-1]+':'+str(cf['lineNumber'])]+=t
tot=sum(agg.values())
for k,v in agg.most_common(35): print(f"{v/1000:8.1f}ms {100*v/tot:5.1f}% {k}")
