#!/usr/bin/env python3
"""A tiny random-weight llama GGUF and its reference outputs.

Writes test/gguf/models/tiny_llama.gguf (and tiny_qwen2.gguf, the same
with the qwen2 architecture: q/k/v biases, rotate-half RoPE) (2 layers, width 64, 4 query and 2
key/value heads, vocab 256; projections stored as Q8_0, Q4_0, Q4_1 and F16
blocks so every dequantizer runs), tiny_llama_q5.gguf (the same shape
in Q5_0 and Q5_1 blocks), tiny_qwen3.gguf (the qwen3 architecture:
q/k RMSNorms per head, heads of 128 on a width of 64), tiny_gemma3.gguf
(the gemma3 architecture: 6 layers, five of them with a sliding window of
16, heads of 256, post-attention and post-FFN norms, GELU, tied
embeddings), tiny_gemma2.gguf (gemma2: 4 layers, the even ones windowed,
no q/k norms, one RoPE table, attention scores and logits soft-capped by
GEMMA2_ATTN_CAP and GEMMA2_FINAL_CAP), tiny_phi3.gguf (phi3: fused
q/k/v and gate/up projections, rotate-half RoPE), tiny_stablelm.gguf
(LayerNorms with biases, q/k/v biases, a quarter of each head rotated),
tiny_starcoder2.gguf (LayerNorms, every projection biased, GELU FFN
without a gate, tied embeddings), tiny_nemotron.gguf (LayerNorms,
relu-squared FFN, half of each head rotated), tiny_gpt2.gguf (learned
positions, biased fused q/k/v, GELU FFN) and
test/gguf/reference/tiny_llama_refs.npz:
for each prompt, the token ids, the logits after the prompt and after each
of 32 greedy steps ([33, vocab]), and the greedy tokens, all computed by
transformers loading the same file (gguf_file=...) with its own KV cache.

Needs torch, transformers and gguf (not CI):

  .venv-export/bin/python test/gguf/make_tiny_llama.py [NAME...]
"""
import os
import sys
import tempfile

import gguf
import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
VOCAB, WIDTH, LAYERS, HEADS, KV_HEADS, FFN, CONTEXT = 256, 64, 2, 4, 2, 128, 256
PROMPTS = [[1, 17, 42, 99, 3], [5] * 20 + [200, 201, 7], list(range(60, 100))]
STEPS = 32


def byte_symbol(b):
    """GPT-2's bytes_to_unicode."""
    printable = 0x21 <= b <= 0x7E or 0xA1 <= b <= 0xAC or 0xAE <= b <= 0xFF
    if printable:
        return chr(b)
    others = [x for x in range(256)
              if not (0x21 <= x <= 0x7E or 0xA1 <= x <= 0xAC or 0xAE <= x <= 0xFF)]
    return chr(256 + others.index(b))


# Llama 3.1's "llama3" RoPE scaling, with an original context of 64 so the
# tiny model's 8 frequencies fall in all three bands (kept, smoothed,
# divided by the factor).
LLAMA3_ROPE = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
               "high_freq_factor": 4.0, "original_max_position_embeddings": 64}


def llama3_rope_factors(head_dim, base, p):
    """rope_freqs.weight as llama.cpp's convert_hf_to_gguf.py computes it:
    the divisor of each frequency."""
    import math
    freqs = 1.0 / (base ** (np.arange(0, head_dim, 2, dtype=np.float32) / head_dim))
    old = p["original_max_position_embeddings"]
    low_wavelen = old / p["low_freq_factor"]
    high_wavelen = old / p["high_freq_factor"]
    out = []
    for f in freqs:
        wavelen = 2 * math.pi / f
        if wavelen < high_wavelen:
            out.append(1.0)
        elif wavelen > low_wavelen:
            out.append(p["factor"])
        else:
            smooth = ((old / wavelen - p["low_freq_factor"])
                      / (p["high_freq_factor"] - p["low_freq_factor"]))
            out.append(1 / ((1 - smooth) / p["factor"] + smooth))
    return np.array(out, np.float32)


# tiny_phi3_su's LongRoPE original context (half the file's CONTEXT).
LONGROPE_ORIG = 128
# tiny_gemma2's soft-capping values (Gemma 2's keys).
GEMMA2_ATTN_CAP, GEMMA2_FINAL_CAP = 1.0, 3.0


def write_gguf(path, rng, width=None, ffn=None, all_f32=False, arch="llama",
               qtypes=None, rope=None, vocab=None, tokenizer=None, tied=False,
               layers=LAYERS, longrope=False):
    """The tiny model; `width`/`ffn` override the sizes, `all_f32` stores
    every tensor as F32 (for llama.cpp's quantizer, make_tiny_llama_k.py);
    `arch` "qwen2" adds q/k/v biases (and means rotate-half RoPE), "qwen3"
    per-head q/k RMSNorms and heads of 128 (wider than width / heads, as
    Qwen3's: attention.key_length; rotate-half RoPE, no biases), "gemma3"
    those and heads of 256, post-attention and post-FFN norms, norms
    stored as llama.cpp's converter does (1 + the checkpoint's weight), a
    global RoPE base of 10^6 and a sliding window of 16 (pass `layers` 6
    for a global layer: every sixth is one), "gemma2" the same without
    q/k norms, with base 10^4 and the soft-capping keys, "phi3" llama's
    shapes with q/k/v in one matrix (attn_qkv) and gate/up in one
    (ffn_up), rotate-half RoPE; "stablelm" qwen2's with LayerNorms
    (weights and biases) and RoPE on a quarter of each head, "starcoder2"
    LayerNorms, biases on every projection and a GELU FFN without a gate,
    "nemotron" LayerNorms, a relu-squared FFN without a gate, half of each
    head rotated, "gpt2" learned positions (no RoPE), LayerNorms, one
    biased q/k/v matrix, biases everywhere, a GELU FFN 4 x width, no gate;
    `qtypes` maps tensor names without the "blk.N." prefix to the type
    they are stored in instead of the default; `rope` (LLAMA3_ROPE) adds
    the rope_freqs.weight tensor of that scaling; `vocab` and `tokenizer`
    (a function given the writer, writing tokenizer.ggml.*) replace the
    256-byte vocabulary; `tied` leaves out output.weight; `layers`: the block count;
    `longrope` (phi3): LongRoPE as the converter writes Phi-3 128k's, short
    and long factors per frequency, an original context of LONGROPE_ORIG
    and the magnitude sqrt(1 + ln(s) / ln(orig)) for s = CONTEXT / orig."""
    WIDTH_ = width or WIDTH
    VOCAB = vocab or globals()["VOCAB"]
    FFN_ = ffn or (4 * WIDTH_ if arch == "gpt2" else FFN)  # GPT-2: n_inner 4 x width
    w = gguf.GGUFWriter(path, arch)
    w.add_name("kiln-tiny-llama")
    w.add_context_length(CONTEXT)
    w.add_embedding_length(WIDTH_)
    w.add_block_count(layers)
    w.add_feed_forward_length(FFN_)
    w.add_head_count(HEADS)
    kv_heads = HEADS if arch == "gpt2" else KV_HEADS  # GPT-2: multi-head
    if arch != "gpt2":
        w.add_head_count_kv(KV_HEADS)
    gemma = arch in ("gemma2", "gemma3")
    # LayerNorms with biases instead of RMSNorms.
    layer_norm = arch in ("stablelm", "starcoder2", "nemotron", "gpt2")
    head_dim = {"qwen3": 128, "gemma2": 256, "gemma3": 256}.get(arch, WIDTH_ // HEADS)
    if arch in ("qwen3", "gemma2", "gemma3"):
        w.add_key_length(head_dim)
        w.add_value_length(head_dim)
    # StableLM 2 rotates a quarter of each head (transformers' default
    # partial_rotary_factor for it, which its GGUF loader leaves).
    # Nemotron half (its default partial_rotary_factor 0.5).
    if arch != "gpt2":  # GPT-2 has learned positions, no RoPE
        w.add_rope_dimension_count(head_dim // 4 if arch == "stablelm" else
                                   head_dim // 2 if arch == "nemotron" else head_dim)
        w.add_rope_freq_base(1e6 if arch == "gemma3" else 10000.0)
    if layer_norm:
        w.add_layer_norm_eps(1e-5)
    else:
        w.add_layer_norm_rms_eps(1e-6 if gemma else 1e-5)
    if gemma:
        w.add_sliding_window(16)
    if arch == "gemma2":
        # Caps small enough for the tiny model's scores and logits (the
        # released models' 50 and 30 would barely touch them).
        w.add_attn_logit_softcapping(GEMMA2_ATTN_CAP)
        w.add_final_logit_softcapping(GEMMA2_FINAL_CAP)
    w.add_vocab_size(VOCAB)
    if tokenizer:
        tokenizer(w)
    else:
        # A byte-level BPE vocabulary of the 256 bytes (GPT-2's byte-to-unicode
        # mapping) and no merges: text prompts encode to their bytes.
        w.add_tokenizer_model("gpt2")
        w.add_token_list([byte_symbol(b) for b in range(VOCAB)])
        w.add_token_types([1] * VOCAB)
        w.add_token_merges([])
        w.add_bos_token_id(1)
        w.add_eos_token_id(2)
        if arch == "phi3":  # Phi3Config's default pad id is past this vocabulary
            w.add_pad_token_id(0)

    def t(name, shape, scale, qtype=gguf.GGMLQuantizationType.F32, offset=0.0):
        data = (rng.standard_normal(shape) * scale + offset).astype(np.float32)
        qtype = (qtypes or {}).get(name.split(".", 2)[-1] if name.startswith("blk.")
                                   else name, qtype)
        if all_f32 or qtype == gguf.GGMLQuantizationType.F32:
            w.add_tensor(name, data)
        elif qtype == gguf.GGMLQuantizationType.F16:
            w.add_tensor(name, data.astype(np.float16))
        else:
            w.add_tensor(name, gguf.quants.quantize(data, qtype), raw_dtype=qtype)

    Q = gguf.GGMLQuantizationType
    kv, qd = kv_heads * head_dim, HEADS * head_dim
    # Gemma multiplies the embedding by sqrt(width): a table as small.
    t("token_embd.weight", (VOCAB, WIDTH_), 1.0 / np.sqrt(WIDTH_) if gemma else 1.0,
      Q.Q8_0)
    if arch == "gpt2":
        # 1024 rows: transformers' GPT2Config n_positions (its loader reads
        # context_length as n_ctx, not n_positions).
        t("position_embd.weight", (1024, WIDTH_), 0.5)
    # Gemma's norms scale by 1 + w; the file holds 1 + w.
    norm_offset = 1.0 if gemma or arch == "nemotron" else 0.0
    for l in range(layers):
        p = f"blk.{l}."
        t(p + "attn_norm.weight", (WIDTH_,), 0.2, offset=norm_offset)
        if layer_norm:  # LayerNorms with biases
            t(p + "attn_norm.bias", (WIDTH_,), 0.1)
        if arch in ("phi3", "gpt2"):  # q, k and v rows in one matrix
            t(p + "attn_qkv.weight", (qd + 2 * kv, WIDTH_), 0.25, Q.Q4_0)
            if arch == "gpt2":
                t(p + "attn_qkv.bias", (qd + 2 * kv,), 0.1)
        else:
            t(p + "attn_q.weight", (qd, WIDTH_), 0.25, Q.Q4_0)
            t(p + "attn_k.weight", (kv, WIDTH_), 0.25, Q.Q4_1)
            t(p + "attn_v.weight", (kv, WIDTH_), 0.25, Q.Q8_0)
        if arch in ("qwen2", "stablelm", "starcoder2"):
            t(p + "attn_q.bias", (WIDTH_,), 0.1)
            t(p + "attn_k.bias", (kv,), 0.1)
            t(p + "attn_v.bias", (kv,), 0.1)
        if arch in ("qwen3", "gemma3"):
            t(p + "attn_q_norm.weight", (head_dim,), 0.5, offset=norm_offset)
            t(p + "attn_k_norm.weight", (head_dim,), 0.5, offset=norm_offset)
        t(p + "attn_output.weight", (WIDTH_, qd), 0.15, Q.F16)
        if arch in ("starcoder2", "gpt2"):
            t(p + "attn_output.bias", (WIDTH_,), 0.1)
        if gemma:
            t(p + "post_attention_norm.weight", (WIDTH_,), 0.2, offset=norm_offset)
        t(p + "ffn_norm.weight", (WIDTH_,), 0.2, offset=norm_offset)
        if layer_norm:
            t(p + "ffn_norm.bias", (WIDTH_,), 0.1)
        if arch == "phi3":  # the gate's rows, then up's
            t(p + "ffn_up.weight", (2 * FFN_, WIDTH_), 0.15, Q.Q8_0)
        elif arch in ("starcoder2", "gpt2"):  # not gated; biases
            t(p + "ffn_up.weight", (FFN_, WIDTH_), 0.15, Q.Q8_0)
            t(p + "ffn_up.bias", (FFN_,), 0.1)
        elif arch == "nemotron":  # not gated (relu squared), no biases
            t(p + "ffn_up.weight", (FFN_, WIDTH_), 0.3, Q.Q8_0)
        else:
            t(p + "ffn_gate.weight", (FFN_, WIDTH_), 0.15, Q.Q8_0)
            t(p + "ffn_up.weight", (FFN_, WIDTH_), 0.15, Q.Q4_0)
        t(p + "ffn_down.weight", (WIDTH_, FFN_), 0.1, Q.Q4_1)
        if arch in ("starcoder2", "gpt2"):
            t(p + "ffn_down.bias", (WIDTH_,), 0.1)
        if gemma:
            t(p + "post_ffw_norm.weight", (WIDTH_,), 0.2, offset=norm_offset)
    t("output_norm.weight", (WIDTH_,), 0.2, offset=norm_offset)
    if layer_norm:
        t("output_norm.bias", (WIDTH_,), 0.1)
    if not tied:
        t("output.weight", (VOCAB, WIDTH_), 0.5, Q.Q8_0)
    if rope:
        w.add_tensor("rope_freqs.weight", llama3_rope_factors(head_dim, 10000.0, rope))
    if longrope:
        half = head_dim // 2
        # Short factors near 1, long ones growing to 8 over the frequencies.
        w.add_tensor("rope_factors_short.weight",
                     (1 + 0.2 * rng.random(half)).astype(np.float32))
        w.add_tensor("rope_factors_long.weight",
                     np.geomspace(1.0, 8.0, half).astype(np.float32) * (1 + 0.1 * rng.random(half)).astype(np.float32))
        w.add_rope_scaling_orig_ctx_len(LONGROPE_ORIG)
        s = CONTEXT / LONGROPE_ORIG
        w.add_rope_scaling_attn_factors(float(np.sqrt(1 + np.log(s) / np.log(LONGROPE_ORIG))))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def make_refs(path, name, rope=None, longrope=None):
    """transformers' logits and greedy tokens on `path`, saved as
    reference/NAME_refs.npz. `rope`: RoPE parameters to set, since
    transformers' GGUF loader reads neither rope_freqs.weight nor
    rope.scaling.* for llama (the model's rotary embedding is rebuilt).
    `longrope` "short" or "long": the file's LongRoPE factors (which the
    loader does not read either), that set at every length (transformers
    itself switches to the long factors once a sequence passes the original
    context; llama.cpp and Kiln choose once, by the context they run at)."""
    import torch  # only the references need torch and transformers
    import transformers
    model = transformers.AutoModelForCausalLM.from_pretrained(
        os.path.dirname(path), gguf_file=os.path.basename(path),
        torch_dtype=torch.float32)
    if rope and model.config.model_type == "gemma3_text":
        # Scaling applies to the global layers only.
        params = model.config.rope_parameters
        params["full_attention"] = dict(
            rope, rope_theta=params["full_attention"]["rope_theta"])
        model.model.rotary_emb = type(model.model.rotary_emb)(model.config)
        print("rope", model.config.rope_parameters)
    elif rope:
        model.config.rope_parameters = dict(
            rope, rope_theta=model.config.rope_parameters["rope_theta"])
        model.model.rotary_emb = type(model.model.rotary_emb)(model.config)
        print("rope", model.config.rope_parameters, "inv_freq",
              model.model.rotary_emb.inv_freq.numpy())
    if longrope:
        import gguf as gg
        r = gg.GGUFReader(path)
        fields = r.fields
        val = lambda k: fields[k].parts[fields[k].data[0]][0]
        factors = {t.name: [float(v) for v in np.array(t.data)] for t in r.tensors
                   if t.name.startswith("rope_factors_")}
        model.config.rope_parameters = {
            "rope_type": "longrope", "rope_theta": model.config.rope_parameters["rope_theta"],
            "short_factor": factors["rope_factors_short.weight"],
            "long_factor": factors["rope_factors_long.weight"],
            "original_max_position_embeddings": int(val("phi3.rope.scaling.original_context_length")),
            "attention_factor": float(val("phi3.rope.scaling.attn_factor"))}
        emb = type(model.model.rotary_emb)(model.config)
        from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS
        orig = model.config.rope_parameters["original_max_position_embeddings"]
        inv, _ = ROPE_INIT_FUNCTIONS["longrope"](
            model.config, None, seq_len=orig + 1 if longrope == "long" else None)
        emb.original_inv_freq = inv
        emb.long_inv_freq = inv
        emb.register_buffer("inv_freq", inv, persistent=False)
        model.model.rotary_emb = emb
        print("longrope", longrope, "inv_freq", inv.numpy(), "scaling", emb.attention_scaling)
    if model.config.model_type == "gemma2":
        # transformers' GGUF loader leaves the caps at Gemma 2's defaults
        # (50, 30); the file's own.
        import gguf as gg
        fields = gg.GGUFReader(path).fields
        cap = lambda k: float(fields[k].parts[fields[k].data[0]][0])
        for layer in model.model.layers:
            layer.self_attn.attn_logit_softcapping = cap("gemma2.attn_logit_softcapping")
        model.config.final_logit_softcapping = cap("gemma2.final_logit_softcapping")
        print("gemma2 caps", layer.self_attn.attn_logit_softcapping,
              model.config.final_logit_softcapping, "layer types", model.config.layer_types,
              "window", model.config.sliding_window, "scaling", layer.self_attn.scaling)
    model.eval()
    out = {}
    for i, ids in enumerate(PROMPTS):
        rows, tokens = [], []
        with torch.no_grad():
            o = model(torch.tensor([ids]), use_cache=True)
            for _ in range(STEPS + 1):
                logits = o.logits[0, -1]
                rows.append(logits.numpy().astype(np.float32))
                nxt = int(logits.argmax())
                if len(tokens) == STEPS:
                    break
                tokens.append(nxt)
                o = model(torch.tensor([[nxt]]), past_key_values=o.past_key_values,
                          use_cache=True)
        out[f"ids{i}"] = np.array(ids, np.int64)
        out[f"logits{i}"] = np.stack(rows)
        out[f"greedy{i}"] = np.array(tokens, np.int64)
        top2 = np.sort(np.stack(rows), axis=1)[:, -2:]
        print(f"prompt {i}: {len(ids)} tokens, greedy {tokens[:8]}..., smallest "
              f"top-2 logit gap {float((top2[:, 1] - top2[:, 0]).min()):.3g}")
    dest = os.path.join(HERE, "reference", f"{name}_refs.npz")
    np.savez_compressed(dest, **out)
    print("wrote", path, os.path.getsize(path), "bytes and", dest)


# tiny_llama_q5: llama.cpp's 5-bit 32-value blocks (gguf-py's quantizer,
# llama.cpp's reference arithmetic), Q5_1 for the embedding (the gather's
# minimum) and the matrices Q5_0 and Q5_1 alternately.
Q5_TYPES = {
    "token_embd.weight": "Q5_1", "attn_q.weight": "Q5_0",
    "attn_k.weight": "Q5_1", "attn_v.weight": "Q5_0",
    "attn_output.weight": "Q5_1", "ffn_gate.weight": "Q5_0",
    "ffn_up.weight": "Q5_1", "ffn_down.weight": "Q5_0", "output.weight": "Q5_1",
}


# Models derived from a committed one by setting RoPE scaling keys: name ->
# (base model, [(key, kind, value)], transformers' rope_parameters).
DERIVED = {
    # Linear scaling by 4.
    "tiny_llama_linear": ("tiny_llama", [("llama.rope.scaling.type", "str", "linear"),
                                         ("llama.rope.scaling.factor", "f32", "4")],
                          {"rope_type": "linear", "factor": 4.0}),
    # YaRN by 4 from an original context of 64 (the file's context_length,
    # 256, is 4 x 64, as transformers' default factor would be), llama.cpp's
    # default betas: the correction dimensions are 0 and 3 of 8 frequencies,
    # so the ramp has extrapolated, blended and interpolated ones.
    "tiny_llama_yarn": ("tiny_llama", [("llama.rope.scaling.type", "str", "yarn"),
                                       ("llama.rope.scaling.factor", "f32", "4"),
                                       ("llama.rope.scaling.original_context_length", "u32", "64")],
                        {"rope_type": "yarn", "factor": 4.0,
                         "original_max_position_embeddings": 64}),
    # YaRN on rotate-half RoPE with every optional key: betas 16 and 2 (a
    # ramp over dimensions 0..2) and a log multiplier of 0.05, which is how
    # the converter stores DeepSeek's mscale_all_dim 0.5 (times 0.1): it
    # makes the magnitude a ratio. (llama.cpp reads that key only for
    # DeepSeek-like architectures, not qwen2.)
    "tiny_qwen2_yarn": ("tiny_qwen2", [("qwen2.rope.scaling.type", "str", "yarn"),
                                       ("qwen2.rope.scaling.factor", "f32", "4"),
                                       ("qwen2.rope.scaling.original_context_length", "u32", "64"),
                                       ("qwen2.rope.scaling.yarn_beta_fast", "f32", "16"),
                                       ("qwen2.rope.scaling.yarn_beta_slow", "f32", "2"),
                                       ("qwen2.rope.scaling.yarn_log_multiplier", "f32", "0.05")],
                        {"rope_type": "yarn", "factor": 4.0,
                         "original_max_position_embeddings": 64, "beta_fast": 16.0,
                         "beta_slow": 2.0, "mscale": 1.0, "mscale_all_dim": 0.5}),
    # Gemma 3's linear scaling (by 8 in the 4B to 27B models), on the
    # global layer only; the sliding-window layers keep base 10^4 unscaled.
    # A partial rotary embedding (Phi-4 mini rotates 96 of 128 lanes): 8 of
    # the 16 lanes of each head.
    "tiny_phi3_partial": ("tiny_phi3", [("phi3.rope.dimension_count", "u32", "8")],
                          {"rope_type": "default", "partial_rotary_factor": 0.5}),
    "tiny_gemma3_linear": ("tiny_gemma3", [("gemma3.rope.scaling.type", "str", "linear"),
                                           ("gemma3.rope.scaling.factor", "f32", "8")],
                           {"rope_type": "linear", "factor": 8.0}),
}


def main():
    """make_tiny_llama.py [tiny_llama tiny_qwen2 tiny_llama_q5 tiny_qwen3]: the named
    models (all by default)."""
    names = sys.argv[1:] or ["tiny_llama", "tiny_qwen2", "tiny_llama_q5", "tiny_qwen3",
                             "tiny_llama3", "tiny_gemma3", "tiny_gemma2", "tiny_phi3", "tiny_phi3_su", "tiny_stablelm", "tiny_starcoder2", "tiny_nemotron", "tiny_gpt2", *DERIVED]
    made = {
        "tiny_llama": lambda p: write_gguf(p, np.random.default_rng(7)),
        # The qwen2 architecture: rotate-half RoPE, q/k/v biases.
        "tiny_qwen2": lambda p: write_gguf(p, np.random.default_rng(9), arch="qwen2"),
        "tiny_qwen3": lambda p: write_gguf(p, np.random.default_rng(12), arch="qwen3"),
        "tiny_gemma3": lambda p: write_gguf(p, np.random.default_rng(15), arch="gemma3",
                                            layers=6, tied=True),
        "tiny_gemma2": lambda p: write_gguf(p, np.random.default_rng(18), arch="gemma2",
                                            layers=4, tied=True),
        "tiny_phi3": lambda p: write_gguf(p, np.random.default_rng(19), arch="phi3"),
        "tiny_stablelm": lambda p: write_gguf(p, np.random.default_rng(20), arch="stablelm"),
        "tiny_starcoder2": lambda p: write_gguf(p, np.random.default_rng(21), arch="starcoder2",
                                                tied=True),
        "tiny_nemotron": lambda p: write_gguf(p, np.random.default_rng(22), arch="nemotron"),
        "tiny_gpt2": lambda p: write_gguf(p, np.random.default_rng(23), arch="gpt2", tied=True),
        "tiny_phi3_su": lambda p: write_gguf(p, np.random.default_rng(19), arch="phi3",
                                             longrope=True),
        # Llama 3.1's RoPE scaling as the converter stores it: rope_freqs.weight.
        "tiny_llama3": lambda p: write_gguf(p, np.random.default_rng(14), rope=LLAMA3_ROPE),
        "tiny_llama_q5": lambda p: write_gguf(
            p, np.random.default_rng(10),
            qtypes={k: gguf.GGMLQuantizationType[v] for k, v in Q5_TYPES.items()}),
    }
    for name in names:
        if name in DERIVED:
            # A committed model with RoPE scaling keys set as generate.test
            # sets them (gguf_tool.py set-kv, one key per call).
            import subprocess
            base, keys, rope = DERIVED[name]
            with tempfile.TemporaryDirectory() as d:
                tool = os.path.join(HERE, "gguf_tool.py")
                src = os.path.join(HERE, "models", f"{base}.gguf")
                for n, (k, kind, v) in enumerate(keys):
                    dst = os.path.join(d, f"{n}.gguf")
                    subprocess.check_call([sys.executable, tool, "set-kv", src, dst, k, kind, v])
                    src = dst
                make_refs(src, name, rope=rope)
            continue
        path = os.path.join(HERE, "models", f"{name}.gguf")
        made[name](path)
        if name == "tiny_phi3_su":  # references with each set of factors
            for which in ("short", "long"):
                make_refs(path, f"{name}_{which}", longrope=which)
            continue
        make_refs(path, name, rope=LLAMA3_ROPE if name == "tiny_llama3" else None)


if __name__ == "__main__":
    main()
