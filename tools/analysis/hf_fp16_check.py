#!/usr/bin/env python3
"""What HF transformers itself gives on a GPU in fp16 / bf16 for the reference fixtures.

The fixtures' README says fp16/bf16 GPU compute meets teacher-forced logits within 3e-2 of the
float64 reference. This runs the reference implementation (transformers) on the GPU in fp16 and
bf16, teacher-forced on each prompt + its greedy continuation, against the same model in float64
on the CPU, and prints the worst |logit difference| per fixture and dtype.
Run on the GPU host: python3 tools/analysis/hf_fp16_check.py [fixture dirs...]
"""
import os, sys, struct, json
import torch
from transformers import AutoModelForCausalLM

here = os.path.dirname(os.path.abspath(__file__))
dirs = sys.argv[1:] or [os.path.join(here, '..', '..', 'tests', 'fixtures', n) for n in ('opt-tiny', 'llama-tiny')]

def load_expected(path):
    raw = open(path, 'rb').read()
    n = struct.unpack('<Q', raw[:8])[0]
    head = json.loads(raw[8:8 + n])
    out = {}
    for k, v in head.items():
        if k == '__metadata__' or v['dtype'] != 'I64':
            continue
        a, b = v['data_offsets']
        out[k] = torch.frombuffer(bytearray(raw[8 + n + a:8 + n + b]), dtype=torch.int64)
    return out

for d in dirs:
    ex = load_expected(os.path.join(d, 'expected.safetensors'))
    ref = AutoModelForCausalLM.from_pretrained(d, dtype=torch.float64).eval()
    for dt in (torch.float16, torch.bfloat16):
        for attn in ('eager', 'sdpa'):
            m = AutoModelForCausalLM.from_pretrained(d, dtype=dt, attn_implementation=attn).cuda().eval()
            worst = 0.0
            for i in range(4):
                ids = torch.cat([ex[f'p{i}.prompt'], ex[f'p{i}.greedy'][:-1]])[None]
                with torch.no_grad():
                    a = ref(ids).logits[0]
                    b = m(ids.cuda()).logits[0].double().cpu()
                worst = max(worst, (a - b).abs().max().item())
            print(f'{os.path.basename(os.path.normpath(d))} {str(dt):15s} {attn:6s} worst teacher-forced |logit diff| {worst:.4f}')
