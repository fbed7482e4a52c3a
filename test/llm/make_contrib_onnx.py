#!/usr/bin/env python3
"""A tiny decoder written with onnxruntime's contrib LLM ops, in the shape
onnxruntime-genai's model builder gives them (built with onnx's helper, as
that tool is not at hand): MatMulNBits (4-bit, blocks of 32; q/k/v without
zero points, the rest with packed uint8 zero points), SimplifiedLayerNorm /
SkipSimplifiedLayerNormalization (residual through output 3), contrib
RotaryEmbedding on [batch, seq, hidden] with position_ids, and
GroupQueryAttention (4 query, 2 key/value heads) with past_key/past_value,
present outputs, seqlens_k = ReduceSum(attention_mask) - 1 and
total_sequence_length = Shape(attention_mask)[1] as the builder computes
them. 2 layers, width 64, SwiGLU MLP, vocab 256, seeded random weights;
inputs input_ids, attention_mask, position_ids [1, seq] and
past_key_values.N.key/value [1, 2, past_seq, 16]; outputs logits and
present.N.key/value.

  make_contrib_onnx.py OUT.onnx
"""
import sys

import numpy as np
import onnx
from onnx import TensorProto as T
from onnx import helper as h
from onnx import numpy_helper

VOCAB, WIDTH, HEADS, KV_HEADS, HEAD_DIM, FFN, LAYERS, MAX_POS = 256, 64, 4, 2, 16, 128, 2, 256
BLOCK = 32
MS = "com.microsoft"


def main(path):
    rng = np.random.default_rng(11)
    inits, nodes = [], []

    def add(name, array):
        inits.append(numpy_helper.from_array(array, name))
        return name

    def weight(name, shape, scale):
        return add(name, (rng.standard_normal(shape) * scale).astype(np.float32))

    def node(op, ins, outs=None, domain="", **attrs):
        outs = outs or [f"{op.lower()}_{len(nodes)}"]
        nodes.append(h.make_node(op, ins, outs, domain=domain or None, **attrs))
        return outs[0] if len(outs) == 1 else outs

    def matmul_nbits(x, name, k, n, scale, zero_points):
        """4-bit weight [n, k] in blocks of 32: q in 0..15, value (q - zp) * s."""
        blocks = k // BLOCK
        q = rng.integers(0, 16, (n, blocks, BLOCK)).astype(np.uint8)
        packed = (q[:, :, 0::2] | (q[:, :, 1::2] << 4)).astype(np.uint8)
        scales = (rng.uniform(0.5, 1.5, (n, blocks)) * scale / 8).astype(np.float32)
        ins = [x, add(name + "_q", packed), add(name + "_s", scales.reshape(-1))]
        if zero_points:
            zp = rng.integers(5, 11, (n, blocks)).astype(np.uint8)
            per_row = (blocks + 1) // 2
            zpp = np.zeros((n, per_row), np.uint8)
            for b in range(blocks):
                zpp[:, b // 2] |= (zp[:, b] << (4 * (b % 2))).astype(np.uint8)
            ins.append(add(name + "_zp", zpp.reshape(-1)))
        return node("MatMulNBits", ins, domain=MS, K=k, N=n, bits=4,
                    block_size=BLOCK, accuracy_level=0)

    inv = 1.0 / (10000.0 ** (np.arange(0, HEAD_DIM, 2) / HEAD_DIM))
    ang = np.arange(MAX_POS)[:, None] * inv[None, :]
    add("cos_cache", np.cos(ang).astype(np.float32))
    add("sin_cache", np.sin(ang).astype(np.float32))
    add("one", np.array(1, np.int64))
    add("axis1", np.array([1], np.int64))
    # seqlens_k and total_sequence_length, as the model builder makes them.
    mask_sum = node("ReduceSum", ["attention_mask", "axis1"], keepdims=0)
    seqlens = node("Cast", [node("Sub", [mask_sum, "one"])], to=T.INT32)
    total = node("Cast", [node("Gather", [node("Shape", ["attention_mask"]), "one"], axis=0)],
                 to=T.INT32)

    x = node("Gather", [weight("embed", [VOCAB, WIDTH], 1.0), "input_ids"])
    outputs = []
    residual = None
    hn = node("SimplifiedLayerNormalization", [x, weight("attn_norm0", [WIDTH], 0.3)],
              epsilon=1e-5, axis=-1)
    residual = x
    for l in range(LAYERS):
        q = matmul_nbits(hn, f"wq{l}", WIDTH, HEADS * HEAD_DIM, 0.2, False)
        k = matmul_nbits(hn, f"wk{l}", WIDTH, KV_HEADS * HEAD_DIM, 0.2, False)
        v = matmul_nbits(hn, f"wv{l}", WIDTH, KV_HEADS * HEAD_DIM, 0.2, False)
        q = node("RotaryEmbedding", [q, "position_ids", "cos_cache", "sin_cache"],
                 domain=MS, num_heads=HEADS)
        k = node("RotaryEmbedding", [k, "position_ids", "cos_cache", "sin_cache"],
                 domain=MS, num_heads=KV_HEADS)
        pk, pv = f"past_key_values.{l}.key", f"past_key_values.{l}.value"
        ok, ov = f"present.{l}.key", f"present.{l}.value"
        y = node("GroupQueryAttention", [q, k, v, pk, pv, seqlens, total],
                 [f"attn{l}", ok, ov], domain=MS, num_heads=HEADS,
                 kv_num_heads=KV_HEADS)[0]
        outputs += [ok, ov]
        o = matmul_nbits(y, f"wo{l}", WIDTH, WIDTH, 0.15, True)
        hm, _, _, residual = node(
            "SkipSimplifiedLayerNormalization", [o, residual, weight(f"ffn_norm{l}", [WIDTH], 0.3)],
            [f"ffn_in{l}", "", "", f"res{l}"], domain=MS, epsilon=1e-5)
        g = matmul_nbits(hm, f"wg{l}", WIDTH, FFN, 0.15, True)
        u = matmul_nbits(hm, f"wu{l}", WIDTH, FFN, 0.15, True)
        m = node("Mul", [node("Mul", [g, node("Sigmoid", [g])]), u])
        d = matmul_nbits(m, f"wd{l}", FFN, WIDTH, 0.1, True)
        norm = weight(f"attn_norm{l + 1}" if l + 1 < LAYERS else "out_norm", [WIDTH], 0.3)
        hn, _, _, residual = node("SkipSimplifiedLayerNormalization", [d, residual, norm],
                                  [f"norm{l}", "", "", f"res_mlp{l}"], domain=MS,
                                  epsilon=1e-5)
    node("MatMul", [hn, weight("lm_head", [WIDTH, VOCAB], 0.5)], ["logits"])

    inputs = [h.make_tensor_value_info("input_ids", T.INT64, [1, "seq"]),
              h.make_tensor_value_info("attention_mask", T.INT64, [1, "total_seq"]),
              h.make_tensor_value_info("position_ids", T.INT64, [1, "seq"])]
    for l in range(LAYERS):
        for kv in ("key", "value"):
            inputs.append(h.make_tensor_value_info(
                f"past_key_values.{l}.{kv}", T.FLOAT, [1, KV_HEADS, "past_seq", HEAD_DIM]))
    outs = [h.make_tensor_value_info("logits", T.FLOAT, [1, "seq", VOCAB])]
    outs += [h.make_tensor_value_info(o, T.FLOAT, [1, KV_HEADS, "total_seq", HEAD_DIM])
             for o in outputs]
    graph = h.make_graph(nodes, "contrib_decoder", inputs, outs, inits)
    model = h.make_model(graph, opset_imports=[h.make_opsetid("", 21),
                                               h.make_opsetid(MS, 1)])
    model.ir_version = 10
    onnx.save(model, path)


if __name__ == "__main__":
    main(sys.argv[1])
