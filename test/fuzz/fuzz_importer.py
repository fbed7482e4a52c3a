#!/usr/bin/env python3
"""Mutation fuzzing of kiln-compile's ONNX importer.

Takes seed models (ONNX node tests and the e2e models), applies random
structural mutations (dims, dtypes, attributes, op types, input names,
initializer bytes) and raw byte flips, and runs kiln-compile on each. Every
run must end with exit status 0 or 1 and, for 1, an error line; a signal
(crash), a timeout or any other status is a failure, and the model that
caused it is kept for reproduction. An error raised by an MLIR op verifier
(`'linalg.generic' op ...`) also fails: the importer let an invalid model
through to a later phase instead of naming the problem at its node.

  fuzz_importer.py --build build [--iterations 300] [--seed 1] [--keep DIR]
"""
import argparse
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile

import onnx

NODE = "/usr/share/libonnx-testdata/data/node"
HERE = os.path.dirname(os.path.abspath(__file__))


def seeds():
    paths = [os.path.join(HERE, "..", "e2e", "models", m)
             for m in ("bert_tiny.onnx", "gpt2_tiny.onnx")]
    for name in sorted(os.listdir(NODE)):
        if any(name.startswith(p) for p in (
                "test_add", "test_matmul", "test_gemm", "test_reshape", "test_slice",
                "test_gather", "test_concat", "test_softmax", "test_layer_norm",
                "test_split", "test_transpose", "test_reduce_mean", "test_expand",
                "test_where", "test_cast", "test_unsqueeze", "test_trilu")):
            paths.append(os.path.join(NODE, name, "model.onnx"))
    return paths


def mutate(model, rng):
    g = model.graph
    choice = rng.randrange(9)
    if choice == 0 and g.input:
        vi = rng.choice(g.input)
        dims = vi.type.tensor_type.shape.dim
        if dims:
            d = rng.choice(dims)
            d.dim_value = rng.choice([0, 1, 2, 3, 7, 1 << 20, -1, 1 << 40])
    elif choice == 1 and g.input:
        rng.choice(g.input).type.tensor_type.elem_type = rng.randrange(0, 20)
    elif choice == 2 and g.node:
        n = rng.choice(g.node)
        if n.attribute:
            a = rng.choice(n.attribute)
            a.i = rng.choice([-100, -2, -1, 0, 1, 2, 5, 1 << 40])
            del a.ints[:]
            a.ints.extend(rng.choice([[], [0], [-1], [5, 5], [1, 0, 2], [1 << 40]]))
    elif choice == 3 and g.node:
        rng.choice(g.node).op_type = rng.choice(
            ["Add", "MatMul", "Reshape", "Softmax", "Gather", "Concat", "Slice",
             "Transpose", "Nope", "Split", "Where", "LayerNormalization"])
    elif choice == 4 and g.node:
        n = rng.choice(g.node)
        if n.input:
            n.input[rng.randrange(len(n.input))] = rng.choice(["", "missing", n.input[0]])
    elif choice == 5 and g.initializer:
        t = rng.choice(g.initializer)
        if t.raw_data:
            t.raw_data = t.raw_data[: rng.randrange(len(t.raw_data) + 1)]
        elif t.dims:
            t.dims[0] = t.dims[0] + rng.choice([-1, 1, 1000])
    elif choice == 6 and g.node:
        n = rng.choice(g.node)
        del n.output[:]
    elif choice == 7:
        del model.opset_import[:]
        model.opset_import.add(domain="", version=rng.choice([1, 6, 11, 13, 17, 99]))
    elif choice == 8 and g.output:
        g.output[0].name = "nowhere"


def run(build, path, timeout):
    r = subprocess.run([os.path.join(build, "bin", "kiln-compile"), path, "-o",
                        path + ".kiln", "--quiet", "--dim=batch=1", "--dim=seq=4"],
                       capture_output=True, text=True, errors="replace",
                       timeout=timeout)
    return r


def outcome_ok(r):
    """A compile's outcome is fine when it succeeded, or failed with an
    error message from the importer (not an op verifier's message from a
    later phase, which means the importer let a bad value through)."""
    late = re.search(r"'(kiln|linalg|tensor|arith|math|memref)\.[a-z_]+' op", r.stderr)
    return r.returncode == 0 or (r.returncode == 1 and "error:" in r.stderr and not late)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default="build")
    ap.add_argument("--iterations", type=int, default=300)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--keep", default="fuzz-failures")
    args = ap.parse_args()
    rng = random.Random(args.seed)
    pool = seeds()
    failures = 0
    errors = 0
    with tempfile.TemporaryDirectory() as work:
        for it in range(args.iterations):
            model = onnx.load(rng.choice(pool))
            for _ in range(rng.randrange(1, 4)):
                mutate(model, rng)
            data = bytearray(model.SerializeToString())
            if rng.random() < 0.2 and data:
                for _ in range(rng.randrange(1, 8)):
                    data[rng.randrange(len(data))] = rng.randrange(256)
            path = os.path.join(work, f"m{it}.onnx")
            with open(path, "wb") as f:
                f.write(data)
            try:
                r = run(args.build, path, 120)
                ok = outcome_ok(r)
                errors += r.returncode == 1
                why = f"exit {r.returncode}: {r.stderr.strip()[-300:]}"
            except subprocess.TimeoutExpired:
                ok, why = False, "timeout"
            if not ok:
                failures += 1
                os.makedirs(args.keep, exist_ok=True)
                shutil.copy(path, os.path.join(args.keep, f"crash{it}.onnx"))
                print(f"FAIL iteration {it}: {why}")
    print(f"importer fuzz: {args.iterations - failures} passed, {failures} failed "
          f"({errors} clean errors, seed {args.seed})")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
