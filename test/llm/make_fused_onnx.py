#!/usr/bin/env python3
"""A tiny decoder written with ONNX's fused LLM ops (opset 23), as
exporters that emit them (not torch's decomposed graphs) write it:
RMSNormalization, RotaryEmbedding (cos/sin caches + position_ids) and
Attention with past_key/past_value inputs, present_key/present_value
outputs, is_causal=1 and grouped-query heads (4 query, 2 key/value heads).
2 layers, width 64, SwiGLU MLP, vocab 256, seeded random weights; inputs
input_ids and position_ids [1, seq], past_key_values.N.key/value
[1, 2, past_seq, head_dim]; outputs logits and present.N.key/value.
head_dim is 16, or --head-dim (64 gives the int8 KV cache's groups of 32).

  make_fused_onnx.py OUT.onnx [--head-dim N]
"""
import argparse

import numpy as np
import onnx
from onnx import TensorProto as T
from onnx import helper as h
from onnx import numpy_helper

VOCAB, WIDTH, HEADS, KV_HEADS, FFN, LAYERS, MAX_POS = 256, 64, 4, 2, 128, 2, 256


def main(path, HEAD_DIM):
    rng = np.random.default_rng(5)
    inits, nodes = [], []

    def weight(name, shape, scale):
        inits.append(numpy_helper.from_array(
            (rng.standard_normal(shape) * scale).astype(np.float32), name))
        return name

    def const(name, values, dtype=np.int64):
        inits.append(numpy_helper.from_array(np.array(values, dtype), name))
        return name

    def node(op, ins, outs=None, **attrs):
        outs = outs or [f"{op.lower()}_{len(nodes)}"]
        nodes.append(h.make_node(op, ins, outs, **attrs))
        return outs[0] if len(outs) == 1 else outs

    inv = 1.0 / (10000.0 ** (np.arange(0, HEAD_DIM, 2) / HEAD_DIM))
    ang = np.arange(MAX_POS)[:, None] * inv[None, :]
    inits.append(numpy_helper.from_array(np.cos(ang).astype(np.float32), "cos_cache"))
    inits.append(numpy_helper.from_array(np.sin(ang).astype(np.float32), "sin_cache"))
    const("q_shape", [1, -1, HEADS, HEAD_DIM])
    const("kv_shape", [1, -1, KV_HEADS, HEAD_DIM])
    const("flat_shape", [1, -1, HEADS * HEAD_DIM])

    x = node("Gather", [weight("embed", [VOCAB, WIDTH], 1.0), "input_ids"])
    outputs = []
    for l in range(LAYERS):
        hn = node("RMSNormalization", [x, weight(f"attn_norm{l}", [WIDTH], 0.3)],
                  epsilon=1e-5)
        def heads(w, shape):
            return node("Transpose", [node("Reshape", [node("MatMul", [hn, w]), shape])],
                        perm=[0, 2, 1, 3])
        q = heads(weight(f"wq{l}", [WIDTH, HEADS * HEAD_DIM], 0.2), "q_shape")
        k = heads(weight(f"wk{l}", [WIDTH, KV_HEADS * HEAD_DIM], 0.2), "kv_shape")
        v = heads(weight(f"wv{l}", [WIDTH, KV_HEADS * HEAD_DIM], 0.2), "kv_shape")
        q = node("RotaryEmbedding", [q, "cos_cache", "sin_cache", "position_ids"])
        k = node("RotaryEmbedding", [k, "cos_cache", "sin_cache", "position_ids"])
        pk, pv = f"past_key_values.{l}.key", f"past_key_values.{l}.value"
        ok, ov = f"present.{l}.key", f"present.{l}.value"
        y = node("Attention", [q, k, v, "", pk, pv], [f"attn{l}", ok, ov],
                 is_causal=1)[0]
        outputs += [ok, ov]
        y = node("Reshape", [node("Transpose", [y], perm=[0, 2, 1, 3]), "flat_shape"])
        x = node("Add", [x, node("MatMul", [y, weight(f"wo{l}", [HEADS * HEAD_DIM, WIDTH], 0.15)])])
        hm = node("RMSNormalization", [x, weight(f"ffn_norm{l}", [WIDTH], 0.3)], epsilon=1e-5)
        g = node("MatMul", [hm, weight(f"wg{l}", [WIDTH, FFN], 0.15)])
        u = node("MatMul", [hm, weight(f"wu{l}", [WIDTH, FFN], 0.15)])
        m = node("Mul", [node("Mul", [g, node("Sigmoid", [g])]), u])
        x = node("Add", [x, node("MatMul", [m, weight(f"wd{l}", [FFN, WIDTH], 0.1)])])
    hn = node("RMSNormalization", [x, weight("out_norm", [WIDTH], 0.3)], epsilon=1e-5)
    node("MatMul", [hn, weight("lm_head", [WIDTH, VOCAB], 0.5)], ["logits"])

    inputs = [h.make_tensor_value_info("input_ids", T.INT64, [1, "seq"]),
              h.make_tensor_value_info("position_ids", T.INT64, [1, "seq"])]
    for l in range(LAYERS):
        for kv in ("key", "value"):
            inputs.append(h.make_tensor_value_info(
                f"past_key_values.{l}.{kv}", T.FLOAT, [1, KV_HEADS, "past_seq", HEAD_DIM]))
    outs = [h.make_tensor_value_info("logits", T.FLOAT, [1, "seq", VOCAB])]
    outs += [h.make_tensor_value_info(o, T.FLOAT, [1, KV_HEADS, "total_seq", HEAD_DIM])
             for o in outputs]
    graph = h.make_graph(nodes, "fused_decoder", inputs, outs, inits)
    model = h.make_model(graph, opset_imports=[h.make_opsetid("", 23)])
    model.ir_version = 10
    onnx.checker.check_model(model)
    onnx.save(model, path)


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--head-dim", type=int, default=16)
    args = ap.parse_args()
    main(args.out, args.head_dim)
