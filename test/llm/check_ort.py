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

--kv-q8 is for an artifact compiled with --kv-dtype=int8: onnxruntime then
runs the graph with each layer's new keys and values (what joins the past
in its Concat, or the key/value inputs of an opset-23 Attention with a
past) quantized to Q8_0 along head_dim and dequantized, by ONNX ops that
follow ggml's quantizer (groups of 32, or the whole row when head_dim is
not a multiple of 32; d = amax / 127 kept as f16, codes = round-half-even(x
* 127 / amax)); that subgraph is first checked against gguf-py's Q8_0
quantizer on random rows. So the cache is quantized in the reference
exactly where Kiln's int8 cache quantizes it, and the comparison checks
Kiln's int8 cache kernels, not the quantization error.

--window W [--sinks S] is for an artifact compiled with --attention-window
(and --attention-sinks): onnxruntime then runs the graph with the
attention mask all its layers add before their softmax (one tensor, as HF
exports build it) replaced by an explicit one, where query position p sees
key j iff j <= p and (p - j < W or j < S).

  check_ort.py MODEL.onnx ARTIFACT.kiln --build build [-n 32] [--tol 1e-3]
               [--quantized FORMAT] [--kv-q8] [--device cpu|vulkan|cuda]
               [--window W [--sinks S]]
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


MASK = "kiln_window_mask"


def window_mask(pos, seq, window, sinks):
    """[1, 1, seq, pos + seq]: 0 where query pos + i sees key j, else the
    most negative float (as HF's masks)."""
    p = pos + np.arange(seq)[:, None]
    j = np.arange(pos + seq)[None, :]
    visible = (j <= p) & ((p - j < window) | (j < sinks))
    return np.where(visible, 0.0, np.finfo(np.float32).min).astype(np.float32)[None, None]


def windowed_model(model):
    """The model with the mask its softmax inputs share made an input."""
    prod = {o: n for n in model.graph.node for o in n.output}
    adds = [prod[n.input[0]] for n in model.graph.node
            if n.op_type == "Softmax" and n.input[0] in prod and
            prod[n.input[0]].op_type == "Add"]
    shared = set(adds[0].input) if adds else set()
    for a in adds[1:]:
        shared &= set(a.input)
    if not adds or len(shared) != 1:
        raise SystemExit("--window: no attention mask shared by every layer's softmax")
    old = shared.pop()
    for a in adds:
        for k, i in enumerate(a.input):
            if i == old:
                a.input[k] = MASK
    model.graph.input.append(onnx.helper.make_tensor_value_info(
        MASK, onnx.TensorProto.FLOAT, [1, 1, "seq", "total"]))
    return model, len(adds)


def ort_greedy(sess, ids, steps, window=0, sinks=0):
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
        if MASK in inputs:
            feeds[MASK] = window_mask(pos, len(cur), window, sinks)
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


def quantized_model(model, fmt):
    """Replaces the model's MatMul weights by what gguf-py's quantization
    gives back; returns how many."""
    import gguf
    from gguf.quants import dequantize, quantize
    qtype = {"q8_0": gguf.GGMLQuantizationType.Q8_0,
             "q4_0": gguf.GGMLQuantizationType.Q4_0,
             "q4_1": gguf.GGMLQuantizationType.Q4_1}[fmt]
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
    return len(done)


def q8_qdq_nodes(x, out, group, opset, prefix):
    """ONNX nodes computing `out` = x with its last dim quantized to Q8_0 in
    groups of `group` and dequantized (ggml's arithmetic, above)."""
    h = onnx.helper
    n = lambda op, ins, name, **kw: h.make_node(op, ins, [prefix + name], **kw)  # noqa: E731
    c = lambda name, v, dt=np.float32: h.make_node(  # noqa: E731
        "Constant", [], [prefix + name],
        value=numpy_helper.from_array(np.array(v, dt), prefix + name))
    p = lambda name: prefix + name  # noqa: E731
    reduce = ([c("axes", [-1], np.int64),
               n("ReduceMax", [p("abs"), p("axes")], "amax", keepdims=1)] if opset >= 18
              else [n("ReduceMax", [p("abs")], "amax", axes=[-1], keepdims=1)])
    return [
        n("Shape", [x], "shape"),
        c("groups", [0, 0, -1, group], np.int64),
        n("Reshape", [x, p("groups")], "r"),
        n("Abs", [p("r")], "abs"),
        *reduce,
        c("c127", 127.0), c("zero", 0.0),
        n("Div", [p("amax"), p("c127")], "d"),
        n("Equal", [p("amax"), p("zero")], "is0"),
        n("Div", [p("c127"), p("amax")], "inv"),
        n("Where", [p("is0"), p("zero"), p("inv")], "id"),
        n("Mul", [p("r"), p("id")], "scaled"),
        n("Round", [p("scaled")], "q"),
        n("Cast", [p("d")], "d16", to=onnx.TensorProto.FLOAT16),
        n("Cast", [p("d16")], "dq", to=onnx.TensorProto.FLOAT),
        n("Mul", [p("q"), p("dq")], "deq"),
        h.make_node("Reshape", [p("deq"), p("shape")], [out]),
    ]


def check_q8_qdq(group):
    """The QDQ subgraph against gguf-py's Q8_0 quantizer on random rows
    (with all-zero and tie-prone ones): at most one code step apart, and
    equal but for rare rounding ties (gguf-py rounds half away from zero
    and scales by 1 / d, ggml's AVX quantizer half to even by 127 / amax)."""
    import gguf
    from gguf.quants import dequantize, quantize
    h = onnx.helper
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((1, 2, 64, 2 * group)) * 3).astype(np.float32)
    x[0, 0, 0] = 0
    x[0, 0, 1] = np.round(x[0, 0, 1] * 4) / 4
    graph = h.make_graph(
        q8_qdq_nodes("x", "y", group, 17, "t_"), "qdq",
        [h.make_tensor_value_info("x", onnx.TensorProto.FLOAT, x.shape)],
        [h.make_tensor_value_info("y", onnx.TensorProto.FLOAT, x.shape)])
    model = h.make_model(graph, opset_imports=[h.make_opsetid("", 17)])
    model.ir_version = 8
    got = ort.InferenceSession(model.SerializeToString(),
                               providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    q8 = gguf.GGMLQuantizationType.Q8_0
    rows = x.reshape(-1, group)
    if group % 32 == 0:
        want = dequantize(quantize(rows, q8), q8).reshape(x.shape)
    else:  # gguf-py's blocks are 32 values: pad each row of `group`
        padded = np.zeros((rows.shape[0], 32), np.float32)
        padded[:, :group] = rows
        want = dequantize(quantize(padded, q8), q8)[:, :group].reshape(x.shape)
    step = np.abs(rows).max(axis=1, keepdims=True).repeat(group, 1).reshape(x.shape) / 127
    diff = np.abs(got - want)
    equal = float((diff == 0).mean())
    worst = float((diff / np.maximum(step, 1e-30)).max())
    print(f"reference: Q8_0 QDQ subgraph (groups of {group}) vs gguf-py: "
          f"{equal:.2%} of values equal, largest difference {worst:.2f} code steps")
    if equal < 0.999 or worst > 1.001:
        raise SystemExit("the Q8_0 QDQ subgraph disagrees with gguf-py")


def kv_q8_model(model):
    """The model with each layer's new keys and values quantized to Q8_0
    and dequantized before they join the cache."""
    opset = next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    pasts = {i.name: i for i in model.graph.input if "past" in i.name}
    head_dim = {n: p.type.tensor_type.shape.dim[-1].dim_value for n, p in pasts.items()}
    nodes, count, groups = [], 0, set()

    def qdq(x, past):
        nonlocal count
        group = 32 if head_dim[past] % 32 == 0 else head_dim[past]
        groups.add(group)
        out = f"kvq8_{count}_out"
        nodes.extend(q8_qdq_nodes(x, out, group, opset, f"kvq8_{count}_"))
        count += 1
        return out

    # A past seen through one-input Concats or Identities (TorchScript's
    # export of layer 0) is still the past.
    seen = {n: n for n in pasts}
    for node in model.graph.node:
        if node.op_type in ("Concat", "Identity") and len(node.input) == 1 and \
                node.input[0] in seen:
            seen[node.output[0]] = seen[node.input[0]]
        elif node.op_type == "Concat" and any(i in seen for i in node.input):
            past = seen[next(i for i in node.input if i in seen)]
            for k, i in enumerate(node.input):
                if i not in seen:
                    node.input[k] = qdq(i, past)
        elif (node.op_type == "Attention" and len(node.input) > 5 and
              node.input[4] in pasts):
            node.input[1] = qdq(node.input[1], node.input[4])
            node.input[2] = qdq(node.input[2], node.input[5])
        nodes.append(node)
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    return model, count, sorted(groups)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("artifact")
    ap.add_argument("--build", default="build")
    ap.add_argument("-n", type=int, default=32)
    ap.add_argument("--tol", type=float, default=1e-3)
    ap.add_argument("--quantized", choices=["q8_0", "q4_0", "q4_1"])
    ap.add_argument("--kv-q8", action="store_true")
    ap.add_argument("--device", default="cpu", help="kiln-run's --device")
    ap.add_argument("--window", type=int, default=0)
    ap.add_argument("--sinks", type=int, default=0)
    args = ap.parse_args()
    model = onnx.load(args.model)
    if args.quantized:
        count = quantized_model(model, args.quantized)
        print(f"reference: {count} MatMul/Gemm weights quantized to {args.quantized} by gguf-py")
    if args.kv_q8:
        model, count, groups = kv_q8_model(model)
        if not count:
            raise SystemExit("--kv-q8: no new keys or values joining a past were found")
        for group in groups:
            check_q8_qdq(group)
        print(f"reference: {count} new key/value tensors quantized to Q8_0 (groups of "
              f"{', '.join(map(str, groups))}) before they join the cache")
    if args.window:
        model, count = windowed_model(model)
        print(f"reference: the mask of {count} attention layers is a window of "
              f"{args.window} with {args.sinks} sinks")
    sess = ort.InferenceSession(model.SerializeToString(),
                                providers=["CPUExecutionProvider"])
    failed = 0
    with tempfile.TemporaryDirectory() as work:
        for i, ids in enumerate(PROMPTS):
            want, greedy = ort_greedy(sess, ids, args.n, args.window, args.sinks)
            tokens = generate(f"{args.build}/bin/kiln-run", args.artifact, ids,
                              args.n, device=args.device, logits_out=f"{work}/l.npy")
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
