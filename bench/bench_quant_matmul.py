#!/usr/bin/env python3
"""One kiln.quant_matmul per weight format, timed by `kiln-run --repeat`:
the packed kernels' cost per format at a prefill chunk's rows and at one
row (decode), for each of --modes: ACTIVATIONS[@CPU], f32 or q8
activations, compiled for an LLVM CPU (default native). q8 on a CPU with
AVX2 multiplies bytes (vpdpbusd with VNNI, else vpmaddubsw); "q8@x86-64"
times the same arithmetic on integers held in f32 (no AVX2).

Weights are random block bytes with sane f16 scales (the kernels' cost
does not depend on the values); [M, K] x [K, N] with K = N = 1536
(SmolLM2's FFN width) by default.

  .venv/bin/python bench/bench_quant_matmul.py --build build [--rows 32,1]
      [--k 1536] [--n 1536] [--modes f32,q8,q8@x86-64] [--repeat 200]
"""
import argparse
import os
import re
import subprocess
import tempfile

import numpy as np

# format: (bytes, values) per block
FORMATS = {"q8_0": (34, 32), "q4_0": (18, 32), "q4_1": (20, 32), "q5_0": (22, 32),
           "q5_1": (24, 32), "f16": (64, 32), "q2_k": (84, 256), "q3_k": (110, 256),
           "q4_k": (144, 256), "q5_k": (176, 256), "q6_k": (210, 256),
           "iq4_nl": (18, 32), "iq4_xs": (136, 256)}
# where each K-quant block's f16 scales sit
SCALES = {"q2_k": (80, 82), "q3_k": (108,), "q4_k": (0, 2), "q5_k": (0, 2), "q6_k": (208,),
          "iq4_xs": (0,)}


def weight(fmt, n, k, rng):
    bb, bv = FORMATS[fmt]
    if fmt == "f16":
        return rng.standard_normal((n, k)).astype(np.float16).view(np.int8)
    w = rng.integers(0, 256, (n, k // bv * bb)).astype(np.uint8)
    scale = np.full((n, 1), 0.01, np.float16).view(np.uint8)
    for off in range(0, w.shape[1], bb):
        for at in SCALES.get(fmt, (0,)):
            w[:, off + at:off + at + 2] = scale
    return w.view(np.int8)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default="build")
    ap.add_argument("--rows", default="32,1")
    ap.add_argument("--k", type=int, default=1536)
    ap.add_argument("--n", type=int, default=1536)
    ap.add_argument("--modes", default="f32,q8")
    ap.add_argument("--repeat", type=int, default=200)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    rows = [int(r) for r in args.rows.split(",")]
    modes = [(m.split("@") + ["native"])[:2] for m in args.modes.split(",")]
    for act, _ in modes:
        if act not in ("f32", "q8"):
            ap.error(f"--modes: activations must be f32 or q8, not '{act}'")
    heads = [f"{act}{'' if cpu == 'native' else '@' + cpu} M={m} ms"
             for act, cpu in modes for m in rows]
    print("| format | " + " | ".join(heads) + " |")
    print("| --- |" + " ---: |" * len(heads))
    with tempfile.TemporaryDirectory() as work:
        for fmt in FORMATS:
            w = weight(fmt, args.n, args.k, rng)
            wp = os.path.join(work, "w.npy")
            np.save(wp, w)
            cells = []
            for (act, cpu), m in ((mode, m) for mode in modes for m in rows):
                xp = os.path.join(work, "x.npy")
                np.save(xp, rng.standard_normal((m, args.k)).astype(np.float32))
                mlir, art = os.path.join(work, "m.mlir"), os.path.join(work, "m.kiln")
                wt = f"tensor<{args.n}x{w.shape[1]}xi8>"
                with open(mlir, "w") as f:
                    f.write(f"""func.func @main(%x: tensor<{m}x{args.k}xf32>, %w: {wt}) -> tensor<{m}x{args.n}xf32> {{
  %0 = kiln.quant_matmul %x, %w {{format = "{fmt}", activations = "{act}"}} : (tensor<{m}x{args.k}xf32>, {wt}) -> tensor<{m}x{args.n}xf32>
  return %0 : tensor<{m}x{args.n}xf32>
}}
""")
                subprocess.run([f"{args.build}/bin/kiln-compile", mlir, "-o", art, "--quiet",
                                f"--cpu={cpu}"], check=True)
                r = subprocess.run([f"{args.build}/bin/kiln-run", art, f"--input={xp}",
                                    f"--input={wp}", f"--repeat={args.repeat}"],
                                   capture_output=True, text=True, check=True)
                cells.append(re.search(r"median ([0-9.]+) ms", r.stdout + r.stderr).group(1))
            print(f"| {fmt} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
