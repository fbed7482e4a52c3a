#!/usr/bin/env python3
"""One kiln.quant_matmul per weight format, timed by `kiln-run --repeat`:
the packed kernels' cost per format at a prefill chunk's rows and at one
row (decode), f32 activations (or --activations q8).

Weights are random block bytes with sane f16 scales (the kernels' cost
does not depend on the values); [M, K] x [K, N] with K = N = 1536
(SmolLM2's FFN width) by default.

  .venv/bin/python bench/bench_quant_matmul.py --build build [--rows 32,1]
      [--k 1536] [--n 1536] [--activations q8] [--repeat 200]
"""
import argparse
import os
import re
import subprocess
import tempfile

import numpy as np

# format: (bytes, values) per block
FORMATS = {"q8_0": (34, 32), "q4_0": (18, 32), "q4_1": (20, 32), "q5_0": (22, 32),
           "q5_1": (24, 32), "f16": (64, 32), "q4_k": (144, 256), "q5_k": (176, 256),
           "q6_k": (210, 256)}


def weight(fmt, n, k, rng):
    bb, bv = FORMATS[fmt]
    if fmt == "f16":
        return rng.standard_normal((n, k)).astype(np.float16).view(np.int8)
    w = rng.integers(0, 256, (n, k // bv * bb)).astype(np.uint8)
    scale = np.full((n, 1), 0.01, np.float16).view(np.uint8)
    for off in range(0, w.shape[1], bb):
        at = off + (208 if fmt == "q6_k" else 0)
        w[:, at:at + 2] = scale
    return w.view(np.int8)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default="build")
    ap.add_argument("--rows", default="32,1")
    ap.add_argument("--k", type=int, default=1536)
    ap.add_argument("--n", type=int, default=1536)
    ap.add_argument("--activations", default="f32", choices=["f32", "q8"])
    ap.add_argument("--repeat", type=int, default=200)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    rows = [int(r) for r in args.rows.split(",")]
    print(f"| format | " + " | ".join(f"M={m} ms" for m in rows) + " |")
    print("| --- |" + " ---: |" * len(rows))
    with tempfile.TemporaryDirectory() as work:
        for fmt in FORMATS:
            w = weight(fmt, args.n, args.k, rng)
            wp = os.path.join(work, "w.npy")
            np.save(wp, w)
            cells = []
            for m in rows:
                xp = os.path.join(work, "x.npy")
                np.save(xp, rng.standard_normal((m, args.k)).astype(np.float32))
                mlir, art = os.path.join(work, "m.mlir"), os.path.join(work, "m.kiln")
                wt = f"tensor<{args.n}x{w.shape[1]}xi8>"
                with open(mlir, "w") as f:
                    f.write(f"""func.func @main(%x: tensor<{m}x{args.k}xf32>, %w: {wt}) -> tensor<{m}x{args.n}xf32> {{
  %0 = kiln.quant_matmul %x, %w {{format = "{fmt}", activations = "{args.activations}"}} : (tensor<{m}x{args.k}xf32>, {wt}) -> tensor<{m}x{args.n}xf32>
  return %0 : tensor<{m}x{args.n}xf32>
}}
""")
                subprocess.run([f"{args.build}/bin/kiln-compile", mlir, "-o", art, "--quiet"],
                               check=True)
                r = subprocess.run([f"{args.build}/bin/kiln-run", art, f"--input={xp}",
                                    f"--input={wp}", f"--repeat={args.repeat}"],
                                   capture_output=True, text=True, check=True)
                cells.append(re.search(r"median ([0-9.]+) ms", r.stdout + r.stderr).group(1))
            print(f"| {fmt} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
