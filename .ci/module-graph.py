#!/usr/bin/env python3
"""The module graph of a crate, from its source: which module imports which.

    .ci/module-graph.py outbox-core/src          # exit 1 if modules import each other in a cycle
    .ci/module-graph.py outbox-core/src layers   # also print the modules layer by layer

A node is a file (`worker/processor.rs` is `worker::processor`). An edge is a
path that names another module of the crate: `crate::x::y`, `super::y`, or a
child module by its bare name (`record::parse`). Comments and `#[cfg(test)]`
code are left out. The crate root (`lib.rs`) re-exports everything and is not
counted as a target. docs/architecture.md shows the layers.
"""
import re,os,sys
root=sys.argv[1]
mods={}
for dp,_,fs in os.walk(root):
    for f in fs:
        if not f.endswith('.rs'): continue
        p=os.path.join(dp,f); rel=os.path.relpath(p,root)[:-3]
        parts=rel.split('/')
        if parts[-1]=='mod': parts=parts[:-1]
        if parts==['lib']: parts=[]
        if parts and parts[-1]=='tests': continue  # a test module, like #[cfg(test)] code
        mods['::'.join(parts)]=open(p).read()
def resolve(path):
    a=path.split('::')
    for n in range(len(a),0,-1):
        c='::'.join(a[:n])
        if c in mods: return c
    return None
edges=set()
for m,src in mods.items():
    src=src.split('#[cfg(test)]')[0]
    src='\n'.join(l for l in src.split('\n') if not l.strip().startswith('//'))
    for r in re.findall(r'crate::((?:[a-z_0-9]+::)*[a-z_0-9]+)',src):
        t=resolve(r)
        if t is not None and t!=m and t!='': edges.add((m or 'lib',t))
    for child in [k for k in mods if k.startswith(m+'::' if m else '') and k!=m and k.count('::')==(m.count('::')+1 if m else 0)]:
        name=child.split('::')[-1]
        if re.search(r'(?<![:\w])'+name+r'::', src): edges.add((m or 'lib',child))
    parent='::'.join(m.split('::')[:-1])
    for r in re.findall(r'super::((?:[a-z_0-9]+::)*[a-z_0-9]+)',src):
        t=resolve((parent+'::'+r) if parent else r)
        if t and t!=m: edges.add((m,t))
nodes=sorted({a for e in edges for a in e})
g={n:set() for n in nodes}
for a,b in edges: g[a].add(b)
index={};low={};st=[];on=set();sccs=[];c=[0]
sys.setrecursionlimit(10000)
def sc(v):
    index[v]=low[v]=c[0];c[0]+=1;st.append(v);on.add(v)
    for w in g[v]:
        if w not in index: sc(w);low[v]=min(low[v],low[w])
        elif w in on: low[v]=min(low[v],index[w])
    if low[v]==index[v]:
        comp=[]
        while True:
            w=st.pop();on.discard(w);comp.append(w)
            if w==v:break
        sccs.append(comp)
for v in nodes:
    if v not in index: sc(v)
cyc=[c for c in sccs if len(c)>1]
for comp in cyc:
    print('CYCLE:',sorted(comp))
    for a in sorted(comp):
        print('   ',a,'->',sorted(x for x in g[a] if x in comp))
if not cyc: print('no cycles among',len(nodes),'modules,',len(edges),'imports')
if len(sys.argv)>2 and sys.argv[2]=='full':
    for a in nodes: print(a,'->',', '.join(sorted(g[a])))
if len(sys.argv)>2 and sys.argv[2]=='layers' and not cyc:
    level={}
    def lv(n):
        if n not in level:
            level[n]=1+max([lv(x) for x in g.get(n,())],default=-1)
        return level[n]
    for n in nodes: lv(n)
    by={}
    for n,l in level.items(): by.setdefault(l,[]).append(n)
    for l in sorted(by, reverse=True): print(l, ', '.join(sorted(by[l])))
sys.exit(1 if cyc else 0)
