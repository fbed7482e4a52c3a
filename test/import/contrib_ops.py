#!/usr/bin/env python3
"""onnxruntime contrib ops Kiln imports, each in a one-node model built
with onnx's helper, compiled and run by Kiln and compared with onnxruntime
(max abs error <= 1e-5, f32).

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


def case(name, node, inputs, outputs, feeds):
    g = h.make_graph([node], name, inputs, outputs)
    m = h.make_model(g, opset_imports=[h.make_opsetid("", 17),
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
