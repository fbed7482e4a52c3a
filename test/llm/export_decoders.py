#!/usr/bin/env python3
"""Small random-weight decoder LLMs exported with their KV cache as graph
inputs and outputs, for the LLM path's end-to-end tests.

Each model is a transformers config (2 layers, width 64, vocab 256) with
seeded random weights, exported by torch.onnx (TorchScript exporter, opset
17, NAME_kv.onnx; and the dynamo exporter, torch.export + opset 18,
NAME_dynamo_kv.onnx) through a wrapper that takes `input_ids`, `position_ids` and
`past_key_values.N.key/value` [1, kv_heads, past_seq, head_dim] and
returns `logits` and `present.N.key/value` — the layout optimum and
onnxruntime-genai use. `seq` and `past_seq` are symbolic.

Needs torch and transformers (not CI; the .onnx files are committed):

  .venv-export/bin/python test/llm/export_decoders.py
"""
import os
import sys

import torch
import transformers

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "models")
COMMON = dict(vocab_size=256, hidden_size=64, intermediate_size=128,
              num_hidden_layers=2, max_position_embeddings=256,
              attn_implementation="eager")

MODELS = {
    # RoPE, RMSNorm, SwiGLU, grouped-query attention.
    "llama": lambda: transformers.LlamaForCausalLM(transformers.LlamaConfig(
        num_attention_heads=4, num_key_value_heads=2, **COMMON)),
    # As llama, with biases on the q, k and v projections.
    "qwen2": lambda: transformers.Qwen2ForCausalLM(transformers.Qwen2Config(
        num_attention_heads=4, num_key_value_heads=2, use_sliding_window=False,
        **COMMON)),
    # Sliding-window attention (window 8, shorter than the test prompts).
    "mistral": lambda: transformers.MistralForCausalLM(transformers.MistralConfig(
        num_attention_heads=4, num_key_value_heads=2, sliding_window=8,
        **COMMON)),
    # Fused qkv and gate_up projections, split by slicing.
    "phi3": lambda: transformers.Phi3ForCausalLM(transformers.Phi3Config(
        num_attention_heads=4, num_key_value_heads=4, pad_token_id=0,
        **COMMON)),
    # Learned positions, LayerNorm, GELU, fused QKV (Conv1D), tied head.
    "gpt2": lambda: transformers.GPT2LMHeadModel(transformers.GPT2Config(
        vocab_size=256, n_embd=64, n_layer=2, n_head=4, n_positions=256,
        bos_token_id=0, eos_token_id=0, attn_implementation="eager")),
    # Llama with YaRN RoPE scaling (factor 4 over an original context of
    # 64): the exporters bake the blended frequencies and the cos/sin
    # magnitude (0.1 ln 4 + 1) into the graph. (Last, so that the models
    # above keep their seeds; its dynamo export failed with torch 2.9.)
    "llama_yarn": lambda: transformers.LlamaForCausalLM(transformers.LlamaConfig(
        num_attention_heads=4, num_key_value_heads=2,
        rope_parameters={"rope_type": "yarn", "factor": 4.0, "rope_theta": 10000.0,
                         "original_max_position_embeddings": 64}, **COMMON)),
}


class WithPast(torch.nn.Module):
    def __init__(self, model, mask=False):
        super().__init__()
        self.model = model
        self.layers = model.config.num_hidden_layers
        self.mask = mask

    def forward(self, input_ids, position_ids, *past):
        attention_mask = None
        if self.mask:  # optimum's layout: attention_mask [1, past + seq]
            attention_mask, past = past[0], past[1:]
        # Full-length layers for every model (no sliding-window truncation
        # of the cache): past + new is what the graph attends over.
        cache = transformers.DynamicCache()
        for i in range(self.layers):
            cache.update(past[2 * i], past[2 * i + 1], i)
        out = self.model(input_ids=input_ids, position_ids=position_ids,
                         attention_mask=attention_mask,
                         past_key_values=cache, use_cache=True)
        present = []
        for layer in out.past_key_values.layers:
            present += [layer.keys, layer.values]
        return (out.logits, *present)


def export(name, model, mask=False, dynamo=False):
    model.eval()
    cfg = model.config
    layers = cfg.num_hidden_layers
    heads = cfg.num_attention_heads
    kv = getattr(cfg, "num_key_value_heads", None) or heads
    head_dim = cfg.hidden_size // heads
    seq, past_len = 5, 3
    ids = torch.randint(0, 256, (1, seq))
    pos = torch.arange(past_len, past_len + seq)[None]
    past = [torch.randn(1, kv, past_len, head_dim) for _ in range(2 * layers)]
    extra = [torch.ones(1, past_len + seq, dtype=torch.int64)] if mask else []
    names_in = ["input_ids", "position_ids"] + (["attention_mask"] if mask else []) + [
        f"past_key_values.{i}.{k}" for i in range(layers) for k in ("key", "value")]
    names_out = ["logits"] + [
        f"present.{i}.{k}" for i in range(layers) for k in ("key", "value")]
    dyn = {"input_ids": {1: "seq"}, "position_ids": {1: "seq"}, "logits": {1: "seq"}}
    dyn.update({n: {2: "past_seq"} for n in names_in if n.startswith("past")})
    if mask:
        dyn["attention_mask"] = {1: "total_seq"}
    dyn.update({n: {2: "total_seq"} for n in names_out[1:]})
    suffix = ("_mask" if mask else "") + ("_dynamo" if dynamo else "")
    path = os.path.join(OUT, f"{name}{suffix}_kv.onnx")
    with torch.no_grad():
        if dynamo:
            # torch.export's dims: one for the new tokens, one shared by
            # every past tensor; weights inline (no .data file).
            s = torch.export.Dim("seq", min=1, max=4096)
            p = torch.export.Dim("past_seq", min=0, max=4096)
            shapes = {"input_ids": {1: s}, "position_ids": {1: s},
                      "past": tuple({2: p} for _ in past)}
            torch.onnx.export(WithPast(model, mask), (ids, pos, *extra, *past), path,
                              input_names=names_in, output_names=names_out,
                              dynamic_shapes=shapes, opset_version=18, dynamo=True,
                              external_data=False)
        else:
            torch.onnx.export(WithPast(model, mask), (ids, pos, *extra, *past), path,
                              input_names=names_in, output_names=names_out,
                              dynamic_axes=dyn, opset_version=17, dynamo=False)
    print(f"wrote {path} ({os.path.getsize(path)} bytes)")


def main():
    os.makedirs(OUT, exist_ok=True)
    only = sys.argv[1:]
    for i, (name, make) in enumerate(MODELS.items()):
        if only and name not in only:
            continue
        torch.manual_seed(10 + i)
        export(name, make())
        # The same model through the dynamo exporter (torch.export), where
        # it works.
        torch.manual_seed(10 + i)
        try:
            export(name, make(), dynamo=True)
        except Exception as e:  # noqa: BLE001 - report and go on
            print(f"dynamo export of {name} failed: {type(e).__name__}: "
                  f"{str(e).splitlines()[0][:200]}")
    if not only or "llama_mask" in only:
        # With an attention_mask input, as optimum exports decoders.
        torch.manual_seed(10)
        export("llama", MODELS["llama"](), mask=True)


if __name__ == "__main__":
    main()
