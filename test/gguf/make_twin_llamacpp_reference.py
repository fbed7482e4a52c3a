#!/usr/bin/env python3
"""llama.cpp's logits and greedy tokens for make_kquant_twins.py's models,
tiny_llama_q23k.gguf (Q2_K and Q3_K blocks; the default) and
tiny_llama_iq4.gguf (`--model iq4`: IQ4_NL and IQ4_XS), which
`kiln-compile --llamacpp-numerics` must reproduce.

llama.cpp (llama-cpp-python, not CI) runs the file with its own dot
products against 8-bit activations; stored in
reference/tiny_llama_MODEL_llamacpp.npz: the logits after the prompt and
the 12 tokens it picks at temperature 0.
The tiny file's byte-level tokenizer has no merges, which llama.cpp refuses,
so it gets a copy whose tokenizer is "none" (the prompt is token ids).
llama.cpp runs without its extra buffer types (use_extra_bufts = false):
its CPU repacking of IQ4_NL into interleaved rows takes another
activation quantizer, 1.2e-4 away from its own vec_dot on this model,
and the vec_dot kernels are the reference Kiln follows (Q2_K, Q3_K and
IQ4_XS are not repacked; their references are the same either way).

  pip install llama-cpp-python gguf numpy
  python test/gguf/make_twin_llamacpp_reference.py [--model iq4]
  python test/gguf/make_twin_llamacpp_reference.py [--model iq4] --check LOGITS.npy IDS.txt
"""
import os
import sys
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
NAME = "q23k"
if sys.argv[1:2] == ["--model"]:
    NAME = sys.argv[2]
    del sys.argv[1:3]
if NAME not in ("q23k", "iq4"):
    sys.exit(f"--model: q23k or iq4, not '{NAME}'")
MODEL = os.path.join(HERE, "models", f"tiny_llama_{NAME}.gguf")
REF = os.path.join(HERE, "reference", f"tiny_llama_{NAME}_llamacpp.npz")
PROMPT = [1, 5, 9, 20, 33, 7, 100, 200, 3, 64, 81, 17, 250, 2, 99, 140, 12]
STEPS = 12


def without_tokenizer(src, dst):
    import gguf
    from make_kquant_twins import copy_metadata
    r = gguf.GGUFReader(src)
    w = gguf.GGUFWriter(dst, r.fields[gguf.Keys.General.ARCHITECTURE].contents())
    copy_metadata(r, w, skip_prefix="tokenizer.")
    w.add_tokenizer_model("none")
    for t in r.tensors:
        w.add_tensor(t.name, np.array(t.data), raw_dtype=t.tensor_type)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def make():
    import llama_cpp
    import llama_cpp.llama_cpp as low
    defaults = low.llama_model_default_params

    def plain_kernels():
        p = defaults()
        p.use_extra_bufts = False
        return p
    low.llama_model_default_params = plain_kernels
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "m.gguf")
        without_tokenizer(MODEL, path)
        llm = llama_cpp.Llama(model_path=path, n_ctx=64, n_batch=64, logits_all=True,
                              verbose=False, n_threads=1)
        llm.eval(PROMPT)
        logits = np.array(llm.scores[llm.n_tokens - 1], dtype=np.float32)
        tokens = []
        for _ in range(STEPS):
            t = int(np.argmax(llm.scores[llm.n_tokens - 1]))
            tokens.append(t)
            llm.eval([t])
    np.savez(REF, logits=logits, tokens=np.array(tokens, dtype=np.int64),
             prompt=np.array(PROMPT, dtype=np.int64))
    print("wrote", REF, "tokens", tokens)


def check(logits_path, ids_path):
    """Kiln's logits after the prompt (row 0 of --logits-out) and greedy
    ids against llama.cpp's: 1 unless within 1e-5 and identical."""
    ref = np.load(REF)
    got = np.load(logits_path)[0]
    ids = [int(t) for t in open(ids_path).read().split()]
    e = float(np.abs(got - ref["logits"]).max())
    same = ids == [int(t) for t in ref["tokens"]]
    print(f"max abs logit difference from llama.cpp {e:.2e}, "
          f"tokens {'identical' if same else 'differ'}")
    return 0 if e <= 1e-5 and same else 1


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--check":
        sys.exit(check(sys.argv[2], sys.argv[3]))
    make()
