#!/usr/bin/env python3
"""Q2_K / Q3_K and IQ4_NL / IQ4_XS test models and their F32 twins, from
tiny_llama_k.gguf (the width-256 tiny llama: K-quant blocks hold 256
values).

Every quantized matrix of tiny_llama_k.gguf is replaced by random blocks of
Q2_K or Q3_K: random quant bits, scales, minimums and high-bit masks (so
every bit pattern of the layouts occurs), f16 scales d / dmin small enough
for weights of the size a model has. tiny_llama_q23k.gguf mixes them as
llama.cpp's Q2_K / Q3_K_M files do (block 0's matrices Q2_K, block 1's
Q3_K, the embedding Q3_K, the output Q2_K); tiny_llama_q23k_f32.gguf holds
the same weights dequantized by gguf-py (llama.cpp's reference
dequantizer) as F32, made by the test (`--f32-twin SRC DST`) rather than
committed. The same prompt must give the same logits on both: the packed
kernels and the importer's dequantizer against gguf-py.

tiny_llama_iq4.gguf (`--iq4`) is made alike from IQ4_NL and IQ4_XS blocks
(random codes, 6-bit group scales and high bits; block 0's matrices and
the embedding IQ4_NL, block 1's and the output IQ4_XS).

  .venv/bin/python test/gguf/make_kquant_twins.py [--iq4]
  .venv/bin/python test/gguf/make_kquant_twins.py --f32-twin Q.gguf F32.gguf
  .venv/bin/python test/gguf/make_kquant_twins.py --compare Q.npy F32.npy
"""
import os
import sys

import gguf
import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.join(HERE, "models", "tiny_llama_k.gguf")
Q2, Q3 = gguf.GGMLQuantizationType.Q2_K, gguf.GGMLQuantizationType.Q3_K
NL, XS = gguf.GGMLQuantizationType.IQ4_NL, gguf.GGMLQuantizationType.IQ4_XS


def random_blocks(qtype, rows, cols, rng):
    """rows x (cols / values per block) random blocks of `qtype` as uint8
    [rows, bytes]."""
    nb = cols // 256
    if qtype in (NL, XS):
        # f16 d at byte 0 of each block; IQ4_XS's values reach d * 32 * 127.
        nb, size, lo, hi = (cols // 32, 18, 0.0005, 0.001) if qtype == NL else \
            (nb, 136, 0.00005, 0.0001)
        b = rng.integers(0, 256, (rows, nb, size), dtype=np.uint8)
        d = rng.uniform(lo, hi, (rows, nb)).astype(np.float16)
        b[:, :, 0:2] = d.view(np.uint8).reshape(rows, nb, 2)
        return b.reshape(rows, nb * size)
    if qtype == Q3:
        b = rng.integers(0, 256, (rows, nb, 110), dtype=np.uint8)
        d = rng.uniform(0.002, 0.004, (rows, nb)).astype(np.float16)
        b[:, :, 108:110] = d.view(np.uint8).reshape(rows, nb, 2)
    else:
        b = rng.integers(0, 256, (rows, nb, 84), dtype=np.uint8)
        d = rng.uniform(0.003, 0.006, (rows, nb)).astype(np.float16)
        dmin = rng.uniform(0.0005, 0.002, (rows, nb)).astype(np.float16)
        b[:, :, 80:82] = d.view(np.uint8).reshape(rows, nb, 2)
        b[:, :, 82:84] = dmin.view(np.uint8).reshape(rows, nb, 2)
    return b.reshape(rows, nb * b.shape[2])





def copy_metadata(reader, writer, skip_prefix=None):
    """The reader's keys (but the architecture, and keys starting with
    skip_prefix) into the writer."""
    for field in reader.fields.values():
        if (field.name == gguf.Keys.General.ARCHITECTURE or field.name.startswith("GGUF.")
                or (skip_prefix and field.name.startswith(skip_prefix))):
            continue
        vt = field.types[0]
        sub = field.types[-1] if vt == gguf.GGUFValueType.ARRAY else None
        writer.add_key_value(field.name, field.contents(), vt, sub_type=sub)


def f32_twin(src, dst):
    """`src` with every quantized tensor dequantized by gguf-py, as F32."""
    reader = gguf.GGUFReader(src)
    w = gguf.GGUFWriter(dst, reader.fields[gguf.Keys.General.ARCHITECTURE].contents())
    copy_metadata(reader, w)
    for t in reader.tensors:
        data = np.array(t.data)
        if t.tensor_type != gguf.GGMLQuantizationType.F32:
            data = gguf.quants.dequantize(data, t.tensor_type).astype(np.float32)
        w.add_tensor(t.name, data)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def compare(a_path, b_path):
    """Logits of the packed model against the twin's: 1 when they differ
    by more than 1e-5, or the logits are too flat to tell anything."""
    a, b = np.load(a_path), np.load(b_path)
    e = float(np.abs(a - b).max())
    print(f"max abs logit difference {e:.2e} over {a.shape[0]} positions, logit std {b.std():.3f}")
    return 1 if e > 1e-5 or b.std() < 0.05 else 0


def main():
    if len(sys.argv) == 4 and sys.argv[1] == "--f32-twin":
        return f32_twin(sys.argv[2], sys.argv[3])
    if len(sys.argv) == 4 and sys.argv[1] == "--compare":
        return compare(sys.argv[2], sys.argv[3])
    iq4 = sys.argv[1:] == ["--iq4"]
    rng = np.random.default_rng(24 if iq4 else 23)
    reader = gguf.GGUFReader(SRC)
    arch = reader.fields[gguf.Keys.General.ARCHITECTURE].contents()
    tensors = []  # (name, F32 values or quantized bytes, qtype or None)
    for t in reader.tensors:
        if t.tensor_type == gguf.GGMLQuantizationType.F32:
            tensors.append((t.name, np.array(t.data), None))
            continue
        rows = int(t.shape[1])
        cols = int(t.shape[0])
        if iq4:
            qtype = NL if t.name == "token_embd.weight" or t.name.startswith("blk.0.") else XS
        elif t.name == "token_embd.weight" or t.name.startswith("blk.1."):
            qtype = Q3
        else:
            qtype = Q2
        tensors.append((t.name, random_blocks(qtype, rows, cols, rng), qtype))
    out = os.path.join(HERE, "models", "tiny_llama_iq4.gguf" if iq4 else "tiny_llama_q23k.gguf")
    w = gguf.GGUFWriter(out, arch)
    copy_metadata(reader, w)
    for name, data, qtype in tensors:
        w.add_tensor(name, data, raw_dtype=qtype)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    print("wrote", out)


if __name__ == "__main__":
    sys.exit(main())
