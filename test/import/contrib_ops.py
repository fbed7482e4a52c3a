#!/usr/bin/env python3
"""onnxruntime contrib ops Kiln imports, each in a one-node model built
with onnx's helper, compiled and run by Kiln and compared with onnxruntime
(max abs error <= 1e-5, f32): SimplifiedLayerNormalization,
SkipSimplifiedLayerNormalization, MatMulNBits (4 and 8 bits, with and
without zero points, uint8 and float zero points, a partial last block,
bias), RotaryEmbedding (3-D with num_heads, 4-D, interleaved, partial
rotary dim) and GroupQueryAttention (grouped heads, past, local window);
and the opset-23 forms beyond 4-D float masks: RotaryEmbedding and
Attention on 3-D [batch, seq, hidden] inputs (num_heads / q_num_heads,
kv_num_heads, with past), Attention with a boolean mask; soft-capping
(softcap) in GroupQueryAttention and Attention, with masks and causal.

  contrib_ops.py --build build WORKDIR
"""
import argparse
import os
import subprocess
import sys

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto as T
from onnx import helper as h
from onnx import numpy_helper


def case(name, node, inputs, outputs, feeds, inits=(), opset=17):
    g = h.make_graph([node], name, inputs, outputs,
                     [numpy_helper.from_array(a, n) for n, a in inits])
    m = h.make_model(g, opset_imports=[h.make_opsetid("", opset),
                                       h.make_opsetid("com.microsoft", 1)])
    m.ir_version = 8
    return name, m, feeds


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("work")
    ap.add_argument("--build", default="build")
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 16)).astype(np.float32)
    skip = rng.standard_normal((2, 3, 16)).astype(np.float32)
    w = rng.standard_normal(16).astype(np.float32)
    bias = rng.standard_normal(16).astype(np.float32)
    f = lambda n, s: h.make_tensor_value_info(n, T.FLOAT, s)
    cases = [
        case("simplified_layer_norm",
             h.make_node("SimplifiedLayerNormalization", ["x", "w"], ["y"],
                         epsilon=1e-5, axis=-1),
             [f("x", [2, 3, 16]), f("w", [16])], [f("y", [2, 3, 16])],
             {"x": x, "w": w}),
        case("skip_simplified_layer_norm",
             h.make_node("SkipSimplifiedLayerNormalization", ["x", "s", "w", "b"],
                         ["y", "", "", "sum"], domain="com.microsoft", epsilon=1e-5),
             [f("x", [2, 3, 16]), f("s", [2, 3, 16]), f("w", [16]), f("b", [16])],
             [f("y", [2, 3, 16]), f("sum", [2, 3, 16])],
             {"x": x, "s": skip, "w": w, "b": bias}),
    ]
    ms = "com.microsoft"

    def nbits(name, k, n, bits, block, zp, bias_on=False):
        blocks = (k + block - 1) // block
        q = rng.integers(0, 1 << bits, (n, blocks, block)).astype(np.uint8)
        packed = (q[:, :, 0::2] | (q[:, :, 1::2] << 4)) if bits == 4 else q
        scales = (rng.uniform(0.01, 0.1, n * blocks) / (16 if bits == 8 else 1)).astype(np.float32)
        ins, inits = ["a", "b", "s"], [("b", packed.astype(np.uint8)), ("s", scales)]
        if zp == "uint8":
            z = rng.integers(0, 1 << bits, (n, blocks)).astype(np.uint8)
            if bits == 4:
                zz = np.zeros((n, (blocks + 1) // 2), np.uint8)
                for b in range(blocks):
                    zz[:, b // 2] |= (z[:, b] << (4 * (b % 2))).astype(np.uint8)
                z = zz
            ins.append("z")
            inits.append(("z", z.reshape(-1)))
        elif zp == "float":
            ins.append("z")
            inits.append(("z", rng.uniform(0, 1, n * blocks).astype(np.float32)))
        if bias_on:
            ins += ["", "bias"] if zp else ["", "", "bias"]
            inits.append(("bias", rng.standard_normal(n).astype(np.float32)))
        a = rng.standard_normal((1, 3, k)).astype(np.float32)
        return case(name, h.make_node("MatMulNBits", ins, ["y"], domain=ms, K=k, N=n,
                                      bits=bits, block_size=block),
                    [f("a", [1, 3, k])], [f("y", [1, 3, n])], {"a": a}, inits)

    cases += [
        nbits("matmul_nbits_4", 64, 24, 4, 32, None),
        nbits("matmul_nbits_4_zp", 96, 8, 4, 32, "uint8", bias_on=True),
        nbits("matmul_nbits_4_partial", 80, 8, 4, 32, "uint8"),
        nbits("matmul_nbits_4_float_zp", 64, 8, 4, 16, "float"),
        nbits("matmul_nbits_8_zp", 64, 8, 8, 32, "uint8"),
    ]
    cos = rng.standard_normal((32, 4)).astype(np.float32)
    sin = rng.standard_normal((32, 4)).astype(np.float32)
    pos = np.array([[3, 7, 1]], np.int64)
    rot_inits = [("cos", cos), ("sin", sin), ("pos", pos)]
    x3 = rng.standard_normal((1, 3, 32)).astype(np.float32)
    x4 = rng.standard_normal((1, 2, 3, 8)).astype(np.float32)
    cases += [
        case("rotary_3d", h.make_node("RotaryEmbedding", ["x", "pos", "cos", "sin"], ["y"],
                                      domain=ms, num_heads=4),
             [f("x", [1, 3, 32])], [f("y", [1, 3, 32])], {"x": x3}, rot_inits),
        case("rotary_3d_interleaved",
             h.make_node("RotaryEmbedding", ["x", "pos", "cos", "sin"], ["y"], domain=ms,
                         num_heads=4, interleaved=1),
             [f("x", [1, 3, 32])], [f("y", [1, 3, 32])], {"x": x3}, rot_inits),
        case("rotary_4d", h.make_node("RotaryEmbedding", ["x", "pos", "cos", "sin"], ["y"],
                                      domain=ms),
             [f("x", [1, 2, 3, 8])], [f("y", [1, 2, 3, 8])], {"x": x4}, rot_inits),
        case("rotary_partial",
             h.make_node("RotaryEmbedding", ["x", "pos", "cos", "sin"], ["y"], domain=ms,
                         num_heads=2, rotary_embedding_dim=8),
             [f("x", [1, 3, 32])], [f("y", [1, 3, 32])], {"x": x3}, rot_inits),
    ]
    for name, window in (("gqa", -1), ("gqa_window", 2)):
        past, seq = 4, 3
        q = rng.standard_normal((1, seq, 4 * 8)).astype(np.float32)
        k = rng.standard_normal((1, seq, 2 * 8)).astype(np.float32)
        v = rng.standard_normal((1, seq, 2 * 8)).astype(np.float32)
        pk = rng.standard_normal((1, 2, past, 8)).astype(np.float32)
        pv = rng.standard_normal((1, 2, past, 8)).astype(np.float32)
        inits = [("seqlens", np.array([past + seq - 1], np.int32)),
                 ("total", np.array(past + seq, np.int32))]
        cases.append(case(
            name, h.make_node("GroupQueryAttention",
                              ["q", "k", "v", "pk", "pv", "seqlens", "total"],
                              ["y", "ok", "ov"], domain=ms, num_heads=4, kv_num_heads=2,
                              local_window_size=window),
            [f("q", [1, seq, 32]), f("k", [1, seq, 16]), f("v", [1, seq, 16]),
             f("pk", [1, 2, past, 8]), f("pv", [1, 2, past, 8])],
            [f("y", [1, seq, 32]), f("ok", [1, 2, past + seq, 8]),
             f("ov", [1, 2, past + seq, 8])],
            {"q": q, "k": k, "v": v, "pk": pk, "pv": pv}, inits))
    # ONNX opset 23: 3-D layouts and a boolean mask.
    pos23 = np.array([[2, 5, 1]], np.int64)
    cases.append(case(
        "rotary23_3d", h.make_node("RotaryEmbedding", ["x", "cos", "sin", "pos"], ["y"],
                                   num_heads=4),
        [f("x", [1, 3, 32])], [f("y", [1, 3, 32])], {"x": x3},
        [("cos", cos), ("sin", sin), ("pos", pos23)], opset=23))
    q3 = rng.standard_normal((1, 3, 32)).astype(np.float32)
    k3 = rng.standard_normal((1, 3, 16)).astype(np.float32)
    v3 = rng.standard_normal((1, 3, 16)).astype(np.float32)
    pk3 = rng.standard_normal((1, 2, 4, 8)).astype(np.float32)
    pv3 = rng.standard_normal((1, 2, 4, 8)).astype(np.float32)
    cases.append(case(
        "attention23_3d",
        h.make_node("Attention", ["q", "k", "v", "", "pk", "pv"], ["y", "ok", "ov"],
                    q_num_heads=4, kv_num_heads=2, is_causal=1),
        [f("q", [1, 3, 32]), f("k", [1, 3, 16]), f("v", [1, 3, 16]),
         f("pk", [1, 2, 4, 8]), f("pv", [1, 2, 4, 8])],
        [f("y", [1, 3, 32]), f("ok", [1, 2, 7, 8]), f("ov", [1, 2, 7, 8])],
        {"q": q3, "k": k3, "v": v3, "pk": pk3, "pv": pv3}, opset=23))
    q4 = rng.standard_normal((1, 2, 3, 8)).astype(np.float32)
    k4 = rng.standard_normal((1, 2, 5, 8)).astype(np.float32)
    v4 = rng.standard_normal((1, 2, 5, 8)).astype(np.float32)
    bm = np.array([[[[1, 1, 0, 1, 0], [1, 0, 1, 1, 1], [0, 1, 1, 0, 1]]]], bool)
    cases.append(case(
        "attention23_bool_mask",
        h.make_node("Attention", ["q", "k", "v", "m"], ["y"]),
        [f("q", [1, 2, 3, 8]), f("k", [1, 2, 5, 8]), f("v", [1, 2, 5, 8])],
        [f("y", [1, 2, 3, 8])], {"q": q4, "k": k4, "v": v4}, [("m", bm)], opset=23))
    # Soft-capping (Gemma 2's attention): the scaled scores capped to
    # softcap * tanh(s / softcap) before the mask, so masked keys stay out
    # (capping after it would give them weight). Scores of 3 sigma.
    qs = 3 * rng.standard_normal((1, 3, 32)).astype(np.float32)
    cases.append(case(
        "gqa_softcap", h.make_node("GroupQueryAttention",
                                   ["q", "k", "v", "pk", "pv", "seqlens", "total"],
                                   ["y", "ok", "ov"], domain=ms, num_heads=4,
                                   kv_num_heads=2, softcap=1.5),
        [f("q", [1, 3, 32]), f("k", [1, 3, 16]), f("v", [1, 3, 16]),
         f("pk", [1, 2, 4, 8]), f("pv", [1, 2, 4, 8])],
        [f("y", [1, 3, 32]), f("ok", [1, 2, 7, 8]), f("ov", [1, 2, 7, 8])],
        {"q": qs, "k": k3, "v": v3, "pk": pk3, "pv": pv3},
        [("seqlens", np.array([6], np.int32)), ("total", np.array(7, np.int32))]))
    cases.append(case(
        "attention23_softcap",
        h.make_node("Attention", ["q", "k", "v", "m"], ["y"], softcap=1.5),
        [f("q", [1, 2, 3, 8]), f("k", [1, 2, 5, 8]), f("v", [1, 2, 5, 8])],
        [f("y", [1, 2, 3, 8])], {"q": 3 * q4, "k": k4, "v": v4}, [("m", bm)],
        opset=23))
    cases.append(case(
        "attention23_softcap_causal",
        h.make_node("Attention", ["q", "k", "v", "", "pk", "pv"], ["y", "ok", "ov"],
                    q_num_heads=4, kv_num_heads=2, is_causal=1, softcap=2.0),
        [f("q", [1, 3, 32]), f("k", [1, 3, 16]), f("v", [1, 3, 16]),
         f("pk", [1, 2, 4, 8]), f("pv", [1, 2, 4, 8])],
        [f("y", [1, 3, 32]), f("ok", [1, 2, 7, 8]), f("ov", [1, 2, 7, 8])],
        {"q": qs, "k": k3, "v": v3, "pk": pk3, "pv": pv3}, opset=23))
    os.makedirs(args.work, exist_ok=True)
    failed = 0
    for name, model, feeds in cases:
        path = os.path.join(args.work, name + ".onnx")
        onnx.save(model, path)
        want = ort.InferenceSession(path, providers=["CPUExecutionProvider"]).run(None, feeds)
        art = os.path.join(args.work, name + ".kiln")
        subprocess.run([f"{args.build}/bin/kiln-compile", path, "-o", art, "--quiet"],
                       check=True)
        cmd = [f"{args.build}/bin/kiln-run", art]
        for n, a in feeds.items():
            p = os.path.join(args.work, f"{name}.{n}.npy")
            np.save(p, a)
            cmd.append(f"--input={p}")
        outs = [os.path.join(args.work, f"{name}.out{i}.npy") for i in range(len(want))]
        cmd += [f"--output={p}" for p in outs]
        subprocess.run(cmd, check=True)
        err = max(float(np.abs(np.load(p) - wv).max()) for p, wv in zip(outs, want))
        ok = err <= 1e-5
        failed += not ok
        print(f"{'ok' if ok else 'FAIL'} {name}: max abs error {err:.2e}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
