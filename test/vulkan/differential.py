#!/usr/bin/env python3
"""Backend-differential test: one small graph per kernel kind, compiled
once with --target=cpu,vulkan and run on the CPU and on both Vulkan
variants (the subgroup one, and the portable one that combines reductions
in workgroup memory, selected by hiding the device's subgroup arithmetic).
Every Vulkan output must equal the CPU's: integers exactly, floats within
1e-5 of the largest CPU value (a different summation order moves the last
bits; a wrong kernel is off by far more).

The kinds: elementwise with broadcasting; reductions long enough to be
shared by a workgroup and short ones, over the last and the first axis,
float and int32, arg-reductions; softmax; layer and RMS normalization;
matmul (plain, batched, transposed weights; tiled with partial tiles),
Gemm;
gather; copies (transpose, slice, concat, expand); compare/select/cast;
attention. The LLM kernels (paged KV cache, packed weights) are compared
the same way by check_llm_devices.py.

  differential.py --build build --work DIR
"""
import argparse
import os
import subprocess
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import kilnrun  # noqa: E402
import onnx
from onnx import TensorProto, helper, numpy_helper

F = TensorProto.FLOAT
I64 = TensorProto.INT64
I32 = TensorProto.INT32
TOL = 1e-5


def graph(name, nodes, inputs, outputs, inits=()):
    g = helper.make_graph(
        nodes, name,
        [helper.make_tensor_value_info(n, t, s) for n, t, s in inputs],
        [helper.make_tensor_value_info(n, t, s) for n, t, s in outputs],
        [numpy_helper.from_array(a, n) for n, a in inits])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)],
                             ir_version=8)


def n(op, ins, outs, **attrs):
    return helper.make_node(op, ins, outs, **attrs)


def weights(rng, *shape):
    return (rng.standard_normal(shape) * 0.2).astype(np.float32)


def cases(rng):
    yield "elementwise", graph("ew", [
        n("Add", ["x", "y"], ["a"]), n("Tanh", ["a"], ["b"]),
        n("Mul", ["b", "x"], ["c"]), n("Sigmoid", ["c"], ["d"]),
        n("Exp", ["y"], ["e"]), n("Sub", ["d", "e"], ["z"])],
        [("x", F, [4, 33]), ("y", F, [33])], [("z", F, [4, 33])])
    yield "reduce_sum_long", graph("rs", [
        n("ReduceSum", ["x", "ax"], ["z"], keepdims=0)],
        [("x", F, [3, 300])], [("z", F, [3])],
        [("ax", np.array([1], np.int64))])
    yield "reduce_max_long", graph("rmax", [
        n("ReduceMax", ["x"], ["z"], axes=[1], keepdims=1)],
        [("x", F, [5, 200])], [("z", F, [5, 1])])
    yield "reduce_first_axis", graph("rfirst", [
        n("ReduceMin", ["x"], ["a"], axes=[0], keepdims=0),
        n("ReduceMean", ["x", "ax"], ["b"], keepdims=0),
        n("Add", ["a", "b"], ["z"])],
        [("x", F, [100, 6])], [("z", F, [6])],
        [("ax", np.array([0], np.int64))])
    yield "reduce_short", graph("rshort", [
        n("ReduceProd", ["x"], ["z"], axes=[1], keepdims=0)],
        [("x", F, [4, 5])], [("z", F, [4])])
    yield "reduce_int32", graph("rint", [
        n("ReduceSum", ["x", "ax"], ["z"], keepdims=0)],
        [("x", I32, [3, 128])], [("z", I32, [3])],
        [("ax", np.array([1], np.int64))])
    yield "argmax", graph("argmax", [
        n("ArgMax", ["x"], ["z"], axis=1, keepdims=0)],
        [("x", F, [4, 100])], [("z", I64, [4])])
    yield "softmax", graph("softmax", [n("Softmax", ["x"], ["z"], axis=-1)],
                           [("x", F, [6, 130])], [("z", F, [6, 130])])
    yield "layernorm", graph("ln", [
        n("LayerNormalization", ["x", "g", "b"], ["z"], axis=-1, epsilon=1e-5)],
        [("x", F, [4, 96])], [("z", F, [4, 96])],
        [("g", weights(rng, 96)), ("b", weights(rng, 96))])
    # x * (1 / sqrt(mean(x^2) + eps)) * w: raised to kiln.rms_norm.
    yield "rms_norm", graph("rms", [
        n("Mul", ["x", "x"], ["sq"]),
        n("ReduceMean", ["sq", "ax"], ["ms"], keepdims=1),
        n("Add", ["ms", "eps"], ["mse"]), n("Sqrt", ["mse"], ["r"]),
        n("Reciprocal", ["r"], ["inv"]), n("Mul", ["x", "inv"], ["xn"]),
        n("Mul", ["xn", "w"], ["z"])],
        [("x", F, [1, 5, 64])], [("z", F, [1, 5, 64])],
        [("ax", np.array([-1], np.int64)), ("eps", np.array(1e-6, np.float32)),
         ("w", weights(rng, 64))])
    yield "matmul", graph("mm", [n("MatMul", ["x", "w"], ["z"])],
                          [("x", F, [8, 96])], [("z", F, [8, 40])],
                          [("w", weights(rng, 96, 40))])
    yield "matmul_batched", graph("bmm", [n("MatMul", ["x", "y"], ["z"])],
                                  [("x", F, [2, 5, 64]), ("y", F, [2, 64, 7])],
                                  [("z", F, [2, 5, 7])])
    yield "gemm_transposed", graph("gemm", [
        n("Gemm", ["x", "w", "c"], ["z"], transB=1, alpha=0.5)],
        [("x", F, [6, 70])], [("z", F, [6, 30])],
        [("w", weights(rng, 30, 70)), ("c", weights(rng, 30))])
    # Tiled (8 x 8 outputs per workgroup, operands staged in workgroup
    # memory) with partial tiles in m, n and k.
    yield "matmul_tiled", graph("mmt", [n("MatMul", ["x", "w"], ["z"])],
                                [("x", F, [20, 70])], [("z", F, [20, 37])],
                                [("w", weights(rng, 70, 37))])
    yield "matmul_tiled_batched", graph("bmmt", [n("MatMul", ["x", "y"], ["z"])],
                                        [("x", F, [3, 17, 40]), ("y", F, [3, 40, 9])],
                                        [("z", F, [3, 17, 9])])
    yield "gemm_tiled_transposed", graph("gemmt", [
        n("Gemm", ["x", "w", "c"], ["z"], transB=1)],
        [("x", F, [10, 45])], [("z", F, [10, 33])],
        [("w", weights(rng, 33, 45)), ("c", weights(rng, 33))])
    yield "gather", graph("gather", [n("Gather", ["t", "i"], ["z"], axis=0)],
                          [("i", I64, [7])], [("z", F, [7, 16])],
                          [("t", weights(rng, 50, 16))])
    yield "copies", graph("copies", [
        n("Transpose", ["x"], ["t"], perm=[1, 0]),
        n("Slice", ["t", "st", "en"], ["s"]),
        n("Concat", ["s", "y"], ["c"], axis=0),
        n("Expand", ["c", "shape"], ["z"])],
        [("x", F, [6, 9]), ("y", F, [2, 6])], [("z", F, [3, 9, 6])],
        [("st", np.array([1], np.int64)), ("en", np.array([8], np.int64)),
         ("shape", np.array([3, 9, 6], np.int64))])
    yield "select_cast", graph("sel", [
        n("Greater", ["x", "y"], ["g"]), n("Cast", ["x"], ["xi"], to=I32),
        n("Cast", ["xi"], ["xf"], to=F), n("Where", ["g", "xf", "y"], ["z"])],
        [("x", F, [5, 7]), ("y", F, [5, 7])], [("z", F, [5, 7])])
    # softmax(q k^T * scale) v: raised to kiln.attention.
    yield "attention", graph("attn", [
        n("Transpose", ["k"], ["kt"], perm=[0, 1, 3, 2]),
        n("MatMul", ["q", "kt"], ["s"]), n("Mul", ["s", "scale"], ["ss"]),
        n("Softmax", ["ss"], ["p"], axis=-1), n("MatMul", ["p", "v"], ["z"])],
        [("q", F, [1, 2, 8, 16]), ("k", F, [1, 2, 40, 16]),
         ("v", F, [1, 2, 40, 16])], [("z", F, [1, 2, 8, 16])],
        [("scale", np.array(0.25, np.float32))])


def inputs_for(model, rng):
    out = []
    for vi in model.graph.input:
        shape = [d.dim_value for d in vi.type.tensor_type.shape.dim]
        t = vi.type.tensor_type.elem_type
        if t == F:
            # Scaled so that products and exponentials stay well inside f32.
            out.append((rng.standard_normal(shape) * 3).astype(np.float32))
        elif t == I32:
            out.append(rng.integers(-1000, 1000, shape, dtype=np.int32))
        else:
            out.append(rng.integers(0, 50, shape, dtype=np.int64))
    return out


def run(build, artifact, device, ins, outs, work, env_extra=None):
    env = {"XDG_RUNTIME_DIR": os.environ.get("XDG_RUNTIME_DIR", work)}
    env.update(env_extra or {})
    try:
        return kilnrun.run(os.path.join(build, "bin", "kiln-run"), artifact, device,
                           ins, outs, env)
    except kilnrun.KilnRunError as e:
        return str(e)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", required=True)
    ap.add_argument("--work", required=True)
    args = ap.parse_args()
    os.makedirs(args.work, exist_ok=True)
    rng = np.random.default_rng(7)
    failed = 0
    variants = [("vulkan", {}),
                ("vulkan-portable",
                 {"KILN_VULKAN_HIDE_FEATURES": "GroupNonUniformArithmetic"})]
    for name, model in cases(rng):
        d = os.path.join(args.work, name)
        os.makedirs(d, exist_ok=True)
        path = os.path.join(d, "model.onnx")
        onnx.save(model, path)
        artifact = os.path.join(d, "model.kiln")
        r = subprocess.run([os.path.join(args.build, "bin", "kiln-compile"), path,
                            "--target=cpu,vulkan", "-o", artifact, "--quiet"],
                           capture_output=True, text=True)
        if r.returncode:
            print(f"FAIL {name}: compile: {r.stderr.strip()}")
            failed += 1
            continue
        ins = []
        for i, a in enumerate(inputs_for(model, rng)):
            ins.append(os.path.join(d, f"in{i}.npy"))
            np.save(ins[-1], a)
        nout = len(model.graph.output)
        ref = run(args.build, artifact, "cpu", ins,
                  [os.path.join(d, f"cpu{i}.npy") for i in range(nout)], d)
        if isinstance(ref, str):
            print(f"FAIL {name}: cpu: {ref}")
            failed += 1
            continue
        worst = 0.0
        bad = None
        for label, extra in variants:
            got = run(args.build, artifact, "vulkan", ins,
                      [os.path.join(d, f"{label}{i}.npy") for i in range(nout)],
                      d, extra)
            if isinstance(got, str):
                bad = f"{label}: {got}"
                break
            for r_, g in zip(ref, got):
                if r_.shape != g.shape or r_.dtype != g.dtype:
                    bad = f"{label}: {g.dtype}{list(g.shape)} vs cpu {r_.dtype}{list(r_.shape)}"
                    break
                if np.issubdtype(r_.dtype, np.integer):
                    if not np.array_equal(r_, g):
                        bad = f"{label}: integers differ"
                        break
                    continue
                scale = max(float(np.max(np.abs(r_))), 1e-30)
                err = float(np.max(np.abs(r_ - g))) / scale
                worst = max(worst, err)
                if not err <= TOL:
                    bad = f"{label}: relative difference {err:.3g} > {TOL}"
                    break
            if bad:
                break
        if bad:
            print(f"FAIL {name}: {bad}")
            failed += 1
        else:
            print(f"ok {name}: max relative difference {worst:.2g}")
    print(f"differential vulkan vs cpu: {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
