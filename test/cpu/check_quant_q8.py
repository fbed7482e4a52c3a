#!/usr/bin/env python3
"""kiln.quant_matmul with activations = "q8" against a numpy model of
llama.cpp's CPU arithmetic (ggml's quantize_row_q8_0/q8_1 and
vec_dot_q4_0_q8_0 / q4_1_q8_1 / q8_0_q8_0; checked bit-for-bit against
libggml while this test was written; q5_0 / q5_1 pair with Q8_0 / Q8_1
activations alike, their integers 5 bits wide).

The K-quants (q4_k, q5_k, q6_k) take ggml's Q8_K instead (quantize_row_q8_K
and vec_dot_q*_K_q8_K): per 256 values the signed value of largest
magnitude `max`, iscale = -127 / max, q = min(127, round(x * iscale)), d =
1 / iscale in f32, and integer block sums; a 256-value weight block adds
d_x f16(d_w) sum_j sc_j (q_w . q_x)_j - d_x f16(dmin_w) sum_j m_j bsum_j
(q6_k: a scale per 16 values, no minimum). The weight bytes are random;
this test's decoding of them into integers equals gguf-py's dequantizer.

Per block of 32 values of a row of x: amax = max |x|, d = amax / 127,
q = round-half-even(x * 127 / amax), d stored as f16; for q4_1 weights also
s = f16(d * sum q) (q5_1 too). A block contributes f16(d_w) * f16(d_x) * sum(q_w q_x)
(+ f16(m_w) * s). The kernel must match this model to float rounding and
differ from the exact f32 product by the 8-bit rounding (so the test fails
if the q8 path is not taken).

  check_quant_q8.py --build BUILD --work DIR [--device vulkan|cuda] [--cpu NAME]

--device runs the GPU form of the kernels (compiled for that target too).
--cpu compiles for that LLVM CPU: the q8 kernels multiply bytes with
vpdpbusd where it has AVX512-VNNI (or AVX-VNNI), with vpmaddubsw on other
AVX2 CPUs (haswell) and as f32 integers without AVX2 (x86-64); each must
match the model.
"""
import argparse
import os
import subprocess
import sys

import numpy as np

# 37 rows: the byte-product kernels tile rows by 16 (8 for the formats
# with minimums), so M covers whole tiles and a remainder of 5.
M, K, N = 37, 128, 20
BYTES = {"q8_0": 34, "q4_0": 18, "q4_1": 20, "q5_0": 22, "q5_1": 24, "iq4_nl": 18}
KBYTES = {"q4_k": 144, "q5_k": 176, "q6_k": 210, "iq4_xs": 136}
# IQ4_NL's and IQ4_XS's codebook (ggml's kvalues_iq4nl)
IQ4 = np.array([-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113])
FORMATS = list(BYTES) + list(KBYTES)
KK = 512  # K of the K-quant cases: two 256-value blocks


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
        ints = IQ4[n] if fmt == "iq4_nl" else n - {"q4_0": 8, "q5_0": 16}.get(fmt, 0)
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


def kquant_ints(fmt, blocks):
    """[N, nb, bytes] K-quant blocks as (d, dmin, scales, mins, q): per
    block d, dmin (f32 of f16; dmin 0 for q6_k); per 16 values the integer
    scale and minimum (q4_k / q5_k repeat theirs per 32); q [N, nb, 256]."""
    u = blocks
    n, nb = u.shape[:2]
    q = np.zeros((n, nb, 256), np.int64)
    if fmt == "iq4_xs":
        d = u[..., 0:2].copy().view(np.float16)[..., 0].astype(np.float32)
        high = u[..., 2:4].copy().view("<u2")[..., 0].astype(np.int64)
        sc = np.zeros((n, nb, 8), np.int64)
        for j in range(8):
            low = (u[..., 4 + j // 2].astype(np.int64) >> (4 * (j % 2))) & 15
            sc[..., j] = (low | (((high >> (2 * j)) & 3) << 4)) - 32
            qs = u[..., 8 + 16 * j:24 + 16 * j].astype(np.int64)
            q[..., 32 * j:32 * j + 16] = IQ4[qs & 15]
            q[..., 32 * j + 16:32 * j + 32] = IQ4[qs >> 4]
        sc = np.repeat(sc, 2, -1)
        return d, np.zeros_like(d), sc, np.zeros_like(sc), q
    if fmt == "q6_k":
        d = u[..., 208:210].copy().view(np.float16)[..., 0].astype(np.float32)
        dmin = np.zeros_like(d)
        sc = u[..., 192:208].view(np.int8).astype(np.int64)
        mins = np.zeros_like(sc)
        for j in range(8):
            h, t = divmod(j, 4)
            low = (u[..., 64 * h + 32 * (t % 2):][..., :32] >> (4 * (t // 2))) & 15
            high = (u[..., 128 + 32 * h:][..., :32] >> (2 * t)) & 3
            q[..., 32 * j:32 * j + 32] = (low | (high << 4)).astype(np.int64) - 32
        return d, dmin, sc, mins, q
    d = u[..., 0:2].copy().view(np.float16)[..., 0].astype(np.float32)
    dmin = u[..., 2:4].copy().view(np.float16)[..., 0].astype(np.float32)
    s = u[..., 4:16].astype(np.int64)
    sc = np.zeros((n, nb, 8), np.int64)
    mn = np.zeros((n, nb, 8), np.int64)
    for j in range(8):
        if j < 4:
            sc[..., j], mn[..., j] = s[..., j] & 63, s[..., j + 4] & 63
        else:
            sc[..., j] = (s[..., j + 4] & 15) | ((s[..., j - 4] >> 6) << 4)
            mn[..., j] = (s[..., j + 4] >> 4) | ((s[..., j] >> 6) << 4)
    qs = 48 if fmt == "q5_k" else 16
    for j in range(8):
        nib = (u[..., qs + 32 * (j // 2):][..., :32] >> (4 * (j % 2))) & 15
        if fmt == "q5_k":
            nib = nib | (((u[..., 16:48] >> j) & 1) << 4)
        q[..., 32 * j:32 * j + 32] = nib
    return d, dmin, np.repeat(sc, 2, -1), np.repeat(mn, 2, -1), q


def make_kquant_weight(fmt, rng):
    import gguf
    nb = KK // 256
    blocks = rng.integers(0, 256, (N, nb, KBYTES[fmt])).astype(np.uint8)
    d = rng.uniform(0.001, 0.01, (N, nb)).astype(np.float16).view(np.uint8)
    if fmt == "iq4_xs":  # |scale * code| up to 32 * 127: a smaller d
        d = rng.uniform(0.00005, 0.0001, (N, nb)).astype(np.float16).view(np.uint8)
    at = 208 if fmt == "q6_k" else 0
    blocks[..., at:at + 2] = d.reshape(N, nb, 2)
    if fmt not in ("q6_k", "iq4_xs"):
        dmin = rng.uniform(0.001, 0.01, (N, nb)).astype(np.float16).view(np.uint8)
        blocks[..., 2:4] = dmin.reshape(N, nb, 2)
    parts = kquant_ints(fmt, blocks)
    dw, dminw, sc, mn, q = parts
    mine = (dw[..., None] * np.repeat(sc, 16, -1) * q
            - dminw[..., None] * np.repeat(mn, 16, -1)).reshape(N, KK)
    qtype = gguf.GGMLQuantizationType[fmt.upper()]
    theirs = gguf.quants.dequantize(blocks.reshape(N, -1), qtype).reshape(N, KK)
    assert np.abs(mine - theirs).max() <= 1e-6 * np.abs(theirs).max(), \
        f"{fmt}: this test's block decoding differs from gguf-py's"
    return blocks.reshape(N, -1).view(np.int8), parts, theirs


def llama_cpp_kquant_model(x, parts):
    dw, dminw, sc, mn, q = parts
    nb = KK // 256
    xb = x.reshape(M, nb, 256)
    idx = np.abs(xb).argmax(-1)  # the first of largest magnitude
    mx = np.take_along_axis(xb, idx[..., None], -1)[..., 0]
    with np.errstate(divide="ignore"):
        iscale = np.where(mx != 0, np.float32(-127) / mx, 0).astype(np.float32)
    qx = np.minimum(127, np.round(xb * iscale[..., None])).astype(np.int64)
    with np.errstate(divide="ignore"):
        dx = np.where(mx != 0, np.float32(1) / iscale, 0).astype(np.float32)
    bsum = qx.reshape(M, nb, 16, 16).sum(-1)  # [M, nb, 16]
    prod = np.einsum("nbgk,mbgk->mnbg", q.reshape(N, nb, 16, 16), qx.reshape(M, nb, 16, 16))
    sumi = (sc[None] * prod).sum(-1)  # [M, N, nb]
    summ = np.einsum("nbg,mbg->mnb", mn, bsum)
    d = (dx[:, None, :] * dw[None]).astype(np.float32)
    dmin = (dx[:, None, :] * dminw[None]).astype(np.float32)
    return (d.astype(np.float64) * sumi - dmin.astype(np.float64) * summ).sum(-1)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build")
    ap.add_argument("--emit-only", action="store_true",
                    help="write the kernels' MLIR files to --work, run nothing")
    ap.add_argument("--work", required=True)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--cpu", default="native")
    args = ap.parse_args()
    target = [] if args.device == "cpu" else [f"--target=cpu,{args.device}"]
    target.append(f"--cpu={args.cpu}")
    os.makedirs(args.work, exist_ok=True)
    rng = np.random.default_rng(7)
    failed = 0
    for fmt in FORMATS:
        k = KK if fmt in KBYTES else K
        if fmt in KBYTES:
            w, parts, exact_w = make_kquant_weight(fmt, rng)
        else:
            w, dw, mw, ints, exact_w = make_weight(fmt, rng)
        x = (rng.standard_normal((M, k)) * rng.uniform(0.1, 4, (M, 1))).astype(np.float32)
        x[0, :32 if fmt in BYTES else 256] = 0  # an all-zero block: d = 0, q = 0
        x[1, k - 5] = -40  # the largest magnitude negative (Q8_K: its sign)
        wb = w.shape[1]
        mlir = os.path.join(args.work, f"{fmt}.mlir")
        with open(mlir, "w") as f:
            f.write(f"""func.func @main(%x: tensor<{M}x{k}xf32>, %w: tensor<{N}x{wb}xi8>) -> tensor<{M}x{N}xf32> {{
  %0 = kiln.quant_matmul %x, %w {{format = "{fmt}", activations = "q8"}} : (tensor<{M}x{k}xf32>, tensor<{N}x{wb}xi8>) -> tensor<{M}x{N}xf32>
  return %0 : tensor<{M}x{N}xf32>
}}
""")
        if args.emit_only:
            continue
        art = os.path.join(args.work, f"{fmt}.kiln")
        xp, wp, yp = (os.path.join(args.work, f"{fmt}_{n}.npy") for n in "xwy")
        np.save(xp, x)
        np.save(wp, w)
        subprocess.run([f"{args.build}/bin/kiln-compile", mlir, "-o", art, "--quiet"] + target,
                       check=True)
        subprocess.run([f"{args.build}/bin/kiln-run", art, f"--input={xp}", f"--input={wp}",
                        f"--output={yp}", f"--device={args.device}"], check=True,
                       stdout=subprocess.DEVNULL)
        y = np.load(yp)
        ref = llama_cpp_kquant_model(x, parts) if fmt in KBYTES else \
            llama_cpp_model(x, dw, mw, ints)
        exact = x.astype(np.float64) @ exact_w.T.astype(np.float64)
        err = np.abs(y - ref).max() / np.abs(ref).max()
        gap = np.abs(ref - exact).max() / np.abs(ref).max()
        ok = err < 1e-5 and gap > 1e-4
        failed += not ok
        print(f"{'ok' if ok else 'FAIL'} {fmt}: vs llama.cpp's arithmetic {err:.1e} "
              f"(bound 1e-5), vs the exact product {gap:.1e} (8-bit rounding)")
    if args.emit_only:
        return
    print(f"quant q8: {len(FORMATS) - failed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
