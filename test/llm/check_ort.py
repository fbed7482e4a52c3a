#!/usr/bin/env python3
"""An LLM artifact compiled from an ONNX decoder export (kiln-compile --llm)
against onnxruntime running the original graph with its explicit past and
present tensors.

onnxruntime: the prompt with an empty past, then one token at a time,
feeding each step's present tensors back as the next past, greedy. Kiln:
`kiln-run generate --prompt-ids=... -n N --temp=0 --print-ids
--logits-out=...` (runtime-owned paged cache). Checks, per prompt: logits
after the prompt and after each of the N steps within --tol (max abs), and
identical greedy tokens.

--quantized FORMAT (q8_0, q4_0, q4_1) is for an artifact compiled with
--quantize-weights: onnxruntime then runs the graph with every MatMul (and
untransposed Gemm) weight W[K, N] (K a multiple of 32) replaced by W^T quantized and
dequantized by gguf-py (llama.cpp's reference quantizer, an implementation
independent of Kiln's), so the comparison checks Kiln's quantizer, packing
and kernels, not the quantization error.

  check_ort.py MODEL.onnx ARTIFACT.kiln --build build [-n 32] [--tol 1e-3]
               [--quantized FORMAT]
"""
import argparse
import os
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from kilnrun import generate  # noqa: E402
import onnx
from onnx import numpy_helper
import onnxruntime as ort

PROMPTS = [[1, 17, 42, 99, 3], [5] * 20 + [200, 201, 7], list(range(60, 100))]


def ort_greedy(sess, ids, steps):
    inputs = {i.name: i for i in sess.get_inputs()}
    past_names = [n for n in inputs if "past" in n]
    outs = [o.name for o in sess.get_outputs()]
    feeds = {}
    for n in past_names:
        shape = [1 if isinstance(d, str) and "batch" in d else d for d in inputs[n].shape]
        shape = [0 if isinstance(d, str) else d for d in shape]
        shape[0] = 1
        feeds[n] = np.zeros(shape, np.float32)
    rows, tokens, pos = [], [], 0
    cur = list(ids)
    for step in range(steps + 1):
        feeds["input_ids"] = np.array([cur], np.int64)
        if "position_ids" in inputs:
            feeds["position_ids"] = np.arange(pos, pos + len(cur), dtype=np.int64)[None]
        if "attention_mask" in inputs:
            feeds["attention_mask"] = np.ones((1, pos + len(cur)), np.int64)
        res = dict(zip(outs, sess.run(None, feeds)))
        logits = res["logits"][0, -1]
        rows.append(logits)
        pos += len(cur)
        for n in past_names:
            feeds[n] = res[n.replace("past_key_values", "present")]
        if step == steps:
            break
        nxt = int(logits.argmax())
        tokens.append(nxt)
        cur = [nxt]
    return np.stack(rows), tokens


def quantized_model(path, fmt):
    """The model's bytes with its MatMul weights as gguf-py quantizes them."""
    import gguf
    from gguf.quants import dequantize, quantize
    qtype = {"q8_0": gguf.GGMLQuantizationType.Q8_0,
             "q4_0": gguf.GGMLQuantizationType.Q4_0,
             "q4_1": gguf.GGMLQuantizationType.Q4_1}[fmt]
    model = onnx.load(path)
    inits = {t.name: t for t in model.graph.initializer}
    done = set()
    for node in model.graph.node:
        # MatMul and Gemm (not transposed: Kiln's importer makes both a
        # kiln.matmul by the weight as it is).
        trans = any(a.name in ("transA", "transB") and a.i for a in node.attribute)
        if (node.op_type not in ("MatMul", "Gemm") or trans or
                node.input[1] not in inits or node.input[1] in done):
            continue
        t = inits[node.input[1]]
        w = numpy_helper.to_array(t)
        if w.dtype != np.float32 or w.ndim != 2 or w.shape[0] % 32:
            continue
        deq = dequantize(quantize(np.ascontiguousarray(w.T), qtype), qtype)
        t.CopyFrom(numpy_helper.from_array(np.ascontiguousarray(deq.T).astype(np.float32),
                                           t.name))
        done.add(node.input[1])
    return model.SerializeToString(), len(done)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("artifact")
    ap.add_argument("--build", default="build")
    ap.add_argument("-n", type=int, default=32)
    ap.add_argument("--tol", type=float, default=1e-3)
    ap.add_argument("--quantized", choices=["q8_0", "q4_0", "q4_1"])
    args = ap.parse_args()
    model = args.model
    if args.quantized:
        model, count = quantized_model(args.model, args.quantized)
        print(f"reference: {count} MatMul/Gemm weights quantized to {args.quantized} by gguf-py")
    sess = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    failed = 0
    with tempfile.TemporaryDirectory() as work:
        for i, ids in enumerate(PROMPTS):
            want, greedy = ort_greedy(sess, ids, args.n)
            tokens = generate(f"{args.build}/bin/kiln-run", args.artifact, ids,
                              args.n, logits_out=f"{work}/l.npy")
            got = np.load(f"{work}/l.npy")
            err = float(np.abs(got - want).max()) if got.shape == want.shape else float("inf")
            agree = sum(a == b for a, b in zip(tokens, greedy))
            ok = err <= args.tol and tokens == greedy
            failed += not ok
            print(f"{'ok' if ok else 'FAIL'} prompt {i} ({len(ids)} tokens): prefill + "
                  f"{args.n} steps max abs logit error {err:.2e} (bound {args.tol}); "
                  f"greedy tokens {agree}/{args.n} identical")
    print(f"{'FAILED' if failed else 'passed'}: {len(PROMPTS) - failed}/{len(PROMPTS)} prompts")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
