#!/usr/bin/env python3
"""Runs a GPU check bundle (made by test/gpu/make_bundle.py on a machine
with the compiler) with kiln-run on a device, and compares every result
with the reference stored in the bundle. Needs only numpy: it runs on the
lent GPU machine, which has no LLVM/MLIR to compile with.

A bundle is folders of cases, each a case.json:
  {"kind": "run", "artifact": "model.kiln", "inputs": [...npy],
   "outputs": [...npy expected], "tol": TOL or [TOL per output]}
  where TOL is {"mode": "allclose", "rtol", "atol"} or {"mode": "relmax",
  "bound"} (max abs error over max abs reference)
  {"kind": "generate", "artifact": ..., "prompt": [ids], "steps": N,
   "ids": [expected greedy ids], "logits": "expected logits .npy",
   "bound": max abs logit difference}

  run_bundle.py --kiln-run bin/kiln-run --device cuda BUNDLE/node ...
                [--env K=V] [--report FILE] [-j N] [--protocol-only]

--protocol-only passes a case when kiln-run runs it without an error,
whatever the outputs: CI runs the node bundle so against the stand-in
libcuda.so.1 (test/cuda/fake_libcuda.cc), which runs no kernel but fails
any misuse of the driver API.
"""
import argparse
import concurrent.futures
import json
import os
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from kilnrun import KilnRunError, generate, run  # noqa: E402


def compare(got, want, tol):
    """'' when `got` matches `want` under `tol`, else why not."""
    if got.dtype != want.dtype:
        return f"dtype {got.dtype}, expected {want.dtype}"
    if got.shape != want.shape:
        return f"shape {got.shape}, expected {want.shape}"
    if want.dtype.kind != "f":
        return "" if np.array_equal(got, want) else "values differ"
    err = np.abs(got.astype(np.float64) - want.astype(np.float64))
    err = float(np.nanmax(err)) if err.size else 0.0
    if tol["mode"] == "relmax":
        scale = float(np.max(np.abs(want))) if want.size else 0.0
        rel = err / scale if scale else err
        return "" if rel <= tol["bound"] else \
            f"max abs error {err:.3g}, {rel:.3g} of max |ref| (bound {tol['bound']})"
    if np.allclose(got, want, rtol=tol["rtol"], atol=tol["atol"], equal_nan=True):
        return ""
    return f"max abs error {err:.3g}"


def run_case(folder, kiln_run, device, env, work, protocol_only=False):
    """(ok, message) for one case."""
    with open(os.path.join(folder, "case.json")) as f:
        case = json.load(f)
    art = os.path.join(folder, case["artifact"])
    os.makedirs(work, exist_ok=True)
    logits = os.path.join(work, "logits.npy")
    try:
        if case["kind"] == "run":
            got = run(kiln_run, art, device,
                      [os.path.join(folder, p) for p in case["inputs"]],
                      [os.path.join(work, f"out{i}.npy")
                       for i in range(len(case["outputs"]))], env)
        else:
            ids = generate(kiln_run, art, case["prompt"], case["steps"], device,
                           logits, env=env)
    except KilnRunError as e:
        return False, f"run: {e}"
    if protocol_only:
        return True, ""
    if case["kind"] == "run":
        for i, want in enumerate(case["outputs"]):
            tol = case["tol"][i] if isinstance(case["tol"], list) else case["tol"]
            why = compare(got[i], np.load(os.path.join(folder, want)), tol)
            if why:
                return False, f"output {i}: {why}"
        return True, ""
    want = np.load(os.path.join(folder, case["logits"]))
    got = np.load(logits)
    diff = float(np.abs(got - want).max()) if got.shape == want.shape else float("inf")
    if ids != case["ids"]:
        return False, f"tokens {ids}, expected {case['ids']} (max logit diff {diff:.2g})"
    if diff > case["bound"]:
        return False, f"max abs logit difference {diff:.3g} (bound {case['bound']})"
    return True, f"max abs logit difference {diff:.2g}"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--kiln-run", required=True)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--env", action="append", default=[], help="K=V for kiln-run")
    ap.add_argument("--report", help="append the summary and failures here")
    ap.add_argument("-j", type=int, default=4)
    ap.add_argument("--protocol-only", action="store_true",
                    help="only check that kiln-run runs each case")
    ap.add_argument("suites", nargs="+", help="bundle folders of case folders")
    args = ap.parse_args()
    env = dict(kv.split("=", 1) for kv in args.env)
    label = args.device + "".join(f" {k}={v}" for k, v in env.items())
    lines, failed_total = [], 0
    with tempfile.TemporaryDirectory() as work:
        for suite in args.suites:
            cases = sorted(d for d in os.listdir(suite)
                           if os.path.exists(os.path.join(suite, d, "case.json")))
            with concurrent.futures.ThreadPoolExecutor(args.j) as ex:
                futs = {ex.submit(run_case, os.path.join(suite, c), args.kiln_run,
                                  args.device, env, os.path.join(work, c),
                                  args.protocol_only): c
                        for c in cases}
                results = {}
                for f in concurrent.futures.as_completed(futs):
                    try:
                        results[futs[f]] = f.result()
                    except Exception as e:  # a harness error is a failure
                        results[futs[f]] = (False, repr(e))
            failed = sorted(c for c, (ok, _) in results.items() if not ok)
            failed_total += len(failed)
            name = os.path.basename(os.path.normpath(suite))
            lines.append(f"{name} ({label}): {len(cases) - len(failed)} of "
                         f"{len(cases)} pass")
            lines += [f"  FAIL {c}: {results[c][1]}" for c in failed]
            lines += [f"  ok {c}: {m}" for c, (ok, m) in sorted(results.items())
                      if ok and m]
    print("\n".join(lines))
    if args.report:
        with open(args.report, "a") as f:
            f.write("\n".join(lines) + "\n")
    return 1 if failed_total else 0


if __name__ == "__main__":
    sys.exit(main())
