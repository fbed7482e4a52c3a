#!/usr/bin/env python3
"""kiln.quant_matmul with activations = "q8" against a numpy model of
llama.cpp's CPU arithmetic (ggml's quantize_row_q8_0/q8_1 and
vec_dot_q4_0_q8_0 / q4_1_q8_1 / q8_0_q8_0; checked bit-for-bit against
libggml while this test was written; q5_0 / q5_1 pair with Q8_0 / Q8_1
activations alike, their integers 5 bits wide).

Per block of 32 values of a row of x: amax = max |x|, d = amax / 127,
q = round-half-even(x * 127 / amax), d stored as f16; for q4_1 weights also
s = f16(d * sum q) (q5_1 too). A block contributes f16(d_w) * f16(d_x) * sum(q_w q_x)
(+ f16(m_w) * s). The kernel must match this model to float rounding and
differ from the exact f32 product by the 8-bit rounding (so the test fails
if the q8 path is not taken).

  check_quant_q8.py --build BUILD --work DIR
"""
import argparse
import os
import subprocess
import sys

import numpy as np

M, K, N = 6, 128, 20
BYTES = {"q8_0": 34, "q4_0": 18, "q4_1": 20, "q5_0": 22, "q5_1": 24}
FORMATS = list(BYTES)


def f16(a):
    return np.asarray(a, np.float32).astype(np.float16).astype(np.float32)


def make_weight(fmt, rng):
    nb = K // 32
    d = rng.uniform(0.01, 0.1, (N, nb)).astype(np.float16)
    blocks = np.zeros((N, nb, BYTES[fmt]), np.uint8)
    blocks[:, :, 0:2] = d.view(np.uint8).reshape(N, nb, 2)
    m = None
    if fmt == "q8_0":
        q = rng.integers(-127, 128, (N, nb, 32))
        blocks[:, :, 2:] = q.astype(np.int8).view(np.uint8)
        ints = q
    else:
        five = fmt.startswith("q5")
        n = rng.integers(0, 32 if five else 16, (N, nb, 32))
        off = 2
        if fmt in ("q4_1", "q5_1"):
            m = rng.uniform(-0.5, 0.0, (N, nb)).astype(np.float16)
            blocks[:, :, 2:4] = m.view(np.uint8).reshape(N, nb, 2)
            off = 4
        if five:  # qh: bit l (little-endian u32) is value l's fifth bit
            qh = ((n.astype(np.uint64) >> 4) << np.arange(32, dtype=np.uint64)).sum(-1).astype("<u4")
            blocks[:, :, off:off + 4] = qh.view(np.uint8).reshape(N, nb, 4)
            off += 4
        nib = n & 15
        blocks[:, :, off:] = (nib[:, :, :16] | (nib[:, :, 16:] << 4)).astype(np.uint8)
        ints = n - {"q4_0": 8, "q5_0": 16}.get(fmt, 0)
    dw = d.astype(np.float32)
    mw = None if m is None else m.astype(np.float32)
    exact = dw[:, :, None] * ints + (0 if mw is None else mw[:, :, None])
    return blocks.reshape(N, -1).view(np.int8), dw, mw, ints, exact.reshape(N, K)


def llama_cpp_model(x, dw, mw, ints):
    nb = K // 32
    xb = x.reshape(M, nb, 32)
    amax = np.abs(xb).max(-1).astype(np.float32)
    d = (amax / np.float32(127)).astype(np.float32)
    inv = np.where(amax > 0, np.float32(127) / np.where(amax > 0, amax, 1), 0)
    q = np.round(xb * inv.astype(np.float32)[..., None])  # half to even
    isum = np.einsum("nbk,mbk->mnb", ints.astype(np.float64), q)
    out = ((dw[None] * f16(d)[:, None, :]).astype(np.float64) * isum).sum(-1)
    if mw is not None:
        s = f16(d * q.sum(-1).astype(np.float32))
        out += (mw[None] * s[:, None, :]).sum(-1)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", required=True)
    ap.add_argument("--work", required=True)
    args = ap.parse_args()
    os.makedirs(args.work, exist_ok=True)
    rng = np.random.default_rng(7)
    failed = 0
    for fmt in FORMATS:
        w, dw, mw, ints, exact_w = make_weight(fmt, rng)
        x = (rng.standard_normal((M, K)) * rng.uniform(0.1, 4, (M, 1))).astype(np.float32)
        x[0, :32] = 0  # an all-zero block: d = 0, q = 0
        wb = w.shape[1]
        mlir = os.path.join(args.work, f"{fmt}.mlir")
        with open(mlir, "w") as f:
            f.write(f"""func.func @main(%x: tensor<{M}x{K}xf32>, %w: tensor<{N}x{wb}xi8>) -> tensor<{M}x{N}xf32> {{
  %0 = kiln.quant_matmul %x, %w {{format = "{fmt}", activations = "q8"}} : (tensor<{M}x{K}xf32>, tensor<{N}x{wb}xi8>) -> tensor<{M}x{N}xf32>
  return %0 : tensor<{M}x{N}xf32>
}}
""")
        art = os.path.join(args.work, f"{fmt}.kiln")
        xp, wp, yp = (os.path.join(args.work, f"{fmt}_{n}.npy") for n in "xwy")
        np.save(xp, x)
        np.save(wp, w)
        subprocess.run([f"{args.build}/bin/kiln-compile", mlir, "-o", art, "--quiet"], check=True)
        subprocess.run([f"{args.build}/bin/kiln-run", art, f"--input={xp}", f"--input={wp}",
                        f"--output={yp}"], check=True, stdout=subprocess.DEVNULL)
        y = np.load(yp)
        ref = llama_cpp_model(x, dw, mw, ints)
        exact = x.astype(np.float64) @ exact_w.T.astype(np.float64)
        err = np.abs(y - ref).max() / np.abs(ref).max()
        gap = np.abs(ref - exact).max() / np.abs(ref).max()
        ok = err < 1e-5 and gap > 1e-4
        failed += not ok
        print(f"{'ok' if ok else 'FAIL'} {fmt}: vs llama.cpp's arithmetic {err:.1e} "
              f"(bound 1e-5), vs the exact product {gap:.1e} (8-bit rounding)")
    print(f"quant q8: {len(FORMATS) - failed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
