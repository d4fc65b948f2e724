#!/usr/bin/env python3
"""How far fp16 storage alone moves llama-tiny's logits (issue 4's 3e-2 bound).

An independent float64 Llama forward pass (PyTorch, CPU) over the fixture
tests/fixtures/llama-tiny, teacher-forced on each prompt + its greedy continuation, first
checked against the fixture's own logits; then the same pass with fp16 rounding (what the CUDA
backend stores) applied at one point at a time, and at every point but the residual stream.
Prints the worst |logit - float64 logit| of each variant.
Run: /usr/bin/python3 tools/analysis/fp16_sensitivity.py   (Debian: apt-get install python3-torch)
"""
import json, struct, torch, math
torch.set_default_dtype(torch.float64)
import os
d=os.path.join(os.path.dirname(os.path.abspath(__file__)),'..','..','tests','fixtures','llama-tiny')+'/'
def load(p):
    f=open(p,'rb'); n=struct.unpack('<Q',f.read(8))[0]; h=json.loads(f.read(n)); base=8+n; raw=open(p,'rb').read()
    out={}
    for k,v in h.items():
        if k=='__metadata__': continue
        a,b=v['data_offsets']; buf=raw[base+a:base+b]; dt=v['dtype']
        if dt=='BF16':
            t=torch.frombuffer(bytearray(buf),dtype=torch.int16).to(torch.int32)<<16
            t=t.view(torch.float32)
        elif dt=='F32': t=torch.frombuffer(bytearray(buf),dtype=torch.float32)
        elif dt=='I64': t=torch.frombuffer(bytearray(buf),dtype=torch.int64)
        out[k]=t.reshape(v['shape']).clone()
    return out
W=load(d+'model.safetensors'); E=load(d+'expected.safetensors'); cfg=json.load(open(d+'config.json'))
H=cfg['hidden_size']; nh=cfg['num_attention_heads']; nkv=cfg['num_key_value_heads']; D=cfg['head_dim']; L=cfg['num_hidden_layers']; eps=cfg['rms_norm_eps']; theta=10000.0
W={k:v.double() if v.is_floating_point() else v for k,v in W.items()}
def fwd(ids, r16, r16res):
    T=len(ids); x=r16res(W['model.embed_tokens.weight'][ids])
    pos=torch.arange(T).double(); inv=theta**(-torch.arange(0,D,2).double()/D); ang=pos[:,None]*inv[None,:]
    cos=torch.cat([ang.cos(),ang.cos()],-1); sin=torch.cat([ang.sin(),ang.sin()],-1)
    def rope(t):  # [T, h, D]
        t1,t2=t[...,:D//2],t[...,D//2:]; rot=torch.cat([-t2,t1],-1)
        return t*cos[:,None,:]+rot*sin[:,None,:]
    def rms(t,w): return t/torch.sqrt((t*t).mean(-1,keepdim=True)+eps)*w
    for j in range(L):
        p=f'model.layers.{j}.'
        xn=R('xn1',rms(x,W[p+'input_layernorm.weight']))
        q=R('qr',rope(R('q',xn@W[p+'self_attn.q_proj.weight'].T).view(T,nh,D)))
        k=R('kr',rope(R('k',xn@W[p+'self_attn.k_proj.weight'].T).view(T,nkv,D)))
        v=R('v',xn@W[p+'self_attn.v_proj.weight'].T).view(T,nkv,D)
        g=nh//nkv; k=k.repeat_interleave(g,1); v=v.repeat_interleave(g,1)
        s=torch.einsum('thd,shd->hts',q,k)/math.sqrt(D); mask=torch.triu(torch.ones(T,T),1).bool(); s=s.masked_fill(mask,-1e30)
        a=R('a',torch.einsum('hts,shd->thd',s.softmax(-1),v).reshape(T,nh*D))
        o=R('o',a@W[p+'self_attn.o_proj.weight'].T); x=r16res(x+o)
        xn=R('xn2',rms(x,W[p+'post_attention_layernorm.weight']))
        gt=R('gt',xn@W[p+'mlp.gate_proj.weight'].T); up=R('up',xn@W[p+'mlp.up_proj.weight'].T)
        h=R('h',torch.nn.functional.silu(gt)*up); dn=R('dn',h@W[p+'mlp.down_proj.weight'].T); x=r16res(x+dn)
    xn=R('xnf',rms(x,W['model.norm.weight']))
    return xn@W['lm_head.weight'].T

ON=set()
def R(name,t): return t.to(torch.float16).double() if name in ON else t
ident=lambda t:t
half=lambda t:t.to(torch.float16).double()
def worst(res):
    m=0
    for i in range(4):
        ids=torch.cat([E[f'p{i}.prompt'],E[f'p{i}.greedy']])
        ON.clear(); ref=fwd(ids,ident,ident)
        ON.update(cur); a=fwd(ids,ident,half if res else ident)
        m=max(m,(a-ref).abs().max().item())
    return m
allnames=['xn1','q','qr','k','kr','v','a','o','xn2','gt','up','h','dn','xnf']
for i in range(4):
    ids=E[f'p{i}.prompt']; ON.clear()
    print('prompt %d: float64 pass vs the fixture logits %.1e' % (i, (fwd(ids,ident,ident)-E[f'p{i}.logits'].double()).abs().max().item()))
cur=set(); print('residual only %.4f'%worst(True))
for nm in allnames:
    cur={nm}; print(nm, '%.4f'%worst(False))
cur=set(allnames); print('all but residual %.4f'%worst(False))
