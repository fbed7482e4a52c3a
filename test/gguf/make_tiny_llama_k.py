#!/usr/bin/env python3
"""A tiny random-weight llama GGUF in llama.cpp's K-quants, and its
reference outputs.

The tiny model of make_tiny_llama.py at width 256 and FFN 512 (K-quant
blocks hold 256 values) is written in F32, then quantized by llama.cpp
itself (llama-cpp-python's llama_model_quantize) into
test/gguf/models/NAME.gguf: tiny_llama_k in type Q4_K_M (Q4_K and Q6_K
tensors as real files have them), tiny_llama_k5 in Q5_K_M (Q5_K and
Q6_K); transformers loading that file gives reference/NAME_refs.npz
(logits after the prompt and 32 greedy steps, greedy tokens). Needs
torch, transformers, gguf, llama-cpp-python (not CI):

  .venv-export/bin/python test/gguf/make_tiny_llama_k.py [NAME...]
"""
import ctypes
import os
import sys
import tempfile

import gguf
import numpy as np
import llama_cpp

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_tiny_llama as tiny  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))


# name: (llama.cpp file type, seed of the F32 weights)
MODELS = {
    "tiny_llama_k": (llama_cpp.LLAMA_FTYPE_MOSTLY_Q4_K_M, 8),
    "tiny_llama_k5": (llama_cpp.LLAMA_FTYPE_MOSTLY_Q5_K_M, 11),
}


def main():
    """make_tiny_llama_k.py [tiny_llama_k tiny_llama_k5]: the named models
    (all by default)."""
    for name in sys.argv[1:] or list(MODELS):
        make(name, *MODELS[name])


def make(name, ftype, seed):
    path = os.path.join(HERE, "models", f"{name}.gguf")
    with tempfile.TemporaryDirectory() as work:
        f32 = os.path.join(work, "f32.gguf")
        tiny.write_gguf(f32, np.random.default_rng(seed), width=256, ffn=512,
                        all_f32=True)
        params = llama_cpp.llama_model_quantize_default_params()
        params.ftype = ftype
        params.nthread = 2
        if llama_cpp.llama_model_quantize(f32.encode(), path.encode(),
                                          ctypes.byref(params)) != 0:
            sys.exit("llama_model_quantize failed")
    types = {}
    for t in gguf.GGUFReader(path).tensors:
        types.setdefault(t.tensor_type.name, []).append(t.name)
    for k, v in sorted(types.items()):
        print(f"{k}: {len(v)} tensors, e.g. {v[0]}")
    tiny.make_refs(path, name)


if __name__ == "__main__":
    main()
