#!/usr/bin/env python3
"""Kiln's q8-activation matmuls against libggml itself (not CI).

check_quant_q8.py (CI) compares kiln.quant_matmul {activations = "q8"}
with a numpy model of ggml's arithmetic and leaves, per format, the
inputs and Kiln's output in its --work directory (FMT_x.npy, FMT_w.npy,
FMT_y.npy). This script feeds the same x and weight blocks to the CPU
backend of the libggml that llama-cpp-python ships: each row of x goes
through the from_float of the format's vec_dot_type (Q8_0, Q8_1 or Q8_K),
then each output is the format's vec_dot (its SIMD kernel on this CPU).

  .venv/bin/python test/cpu/check_quant_q8.py --build build --work /tmp/q8 [--device vulkan]
  .venv-export/bin/python test/cpu/check_quant_q8_libggml.py /tmp/q8
"""
import ctypes
import glob
import os
import sys

import numpy as np
import llama_cpp

LIB = os.path.join(os.path.dirname(llama_cpp.__file__), "lib")
TYPES = {"q8_0": 8, "q4_0": 2, "q4_1": 3, "q5_0": 6, "q5_1": 7,
         "q4_k": 12, "q5_k": 13, "q6_k": 14, "iq4_nl": 20, "iq4_xs": 23}
# vec_dot_type: (bytes, values) per block
ACTIVATION_BLOCKS = {8: (34, 32), 9: (36, 32), 15: (292, 256)}

FROM_FLOAT = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64)
VEC_DOT = ctypes.CFUNCTYPE(None, ctypes.c_int, ctypes.POINTER(ctypes.c_float),
                           ctypes.c_size_t, ctypes.c_void_p, ctypes.c_size_t,
                           ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)


class TypeTraitsCpu(ctypes.Structure):  # ggml-cpu.h: struct ggml_type_traits_cpu
    _fields_ = [("from_float", ctypes.c_void_p), ("vec_dot", ctypes.c_void_p),
                ("vec_dot_type", ctypes.c_int), ("nrows", ctypes.c_int64)]


def main():
    work = sys.argv[1]
    ctypes.CDLL(glob.glob(os.path.join(LIB, "libggml-base.so*"))[0], mode=ctypes.RTLD_GLOBAL)
    cpu = ctypes.CDLL(glob.glob(os.path.join(LIB, "libggml-cpu.so*"))[0],
                      mode=ctypes.RTLD_GLOBAL)
    cpu.ggml_cpu_init()
    cpu.ggml_get_type_traits_cpu.restype = ctypes.POINTER(TypeTraitsCpu)
    failed = 0
    for fmt, t in TYPES.items():
        x = np.load(os.path.join(work, f"{fmt}_x.npy"))
        w = np.load(os.path.join(work, f"{fmt}_w.npy"))
        y = np.load(os.path.join(work, f"{fmt}_y.npy"))
        traits = cpu.ggml_get_type_traits_cpu(t).contents
        act = cpu.ggml_get_type_traits_cpu(traits.vec_dot_type).contents
        bb, bv = ACTIVATION_BLOCKS[traits.vec_dot_type]
        m_, k = x.shape
        xq = np.zeros((m_, k // bv * bb), np.uint8)
        for m in range(m_):
            row = np.ascontiguousarray(x[m])
            FROM_FLOAT(act.from_float)(row.ctypes.data, xq[m].ctypes.data, k)
        ref = np.zeros(y.shape, np.float32)
        dot, s = VEC_DOT(traits.vec_dot), ctypes.c_float()
        for m in range(m_):
            for n in range(w.shape[0]):
                wr = np.ascontiguousarray(w[n])
                dot(k, ctypes.byref(s), 0, wr.ctypes.data, 0, xq[m].ctypes.data, 0, 1)
                ref[m, n] = s.value
        err = float(np.abs(y - ref).max() / np.abs(ref).max())
        ok = err < 1e-5
        failed += not ok
        print(f"{'ok' if ok else 'FAIL'} {fmt}: activations type {traits.vec_dot_type}, "
              f"Kiln vs libggml {err:.1e} (bound 1e-5)")
    print(f"libggml: {len(TYPES) - failed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
