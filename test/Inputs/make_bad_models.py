#!/usr/bin/env python3
"""Writes models for the importer's error and external-data tests into DIR.

  make_bad_models.py DIR
"""
import os
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def linear(w, name="linear"):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, w.shape[0]])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, w.shape[1]])
    node = helper.make_node("MatMul", ["x", "w"], ["y"], name="mm")
    graph = helper.make_graph([node], name, [x], [y], [numpy_helper.from_array(w, "w")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    w = np.arange(64 * 8, dtype=np.float32).reshape(64, 8) / 100
    np.save(os.path.join(out, "x.npy"), np.ones((2, 64), np.float32))
    np.save(os.path.join(out, "expected.npy"), np.ones((2, 64), np.float32) @ w)

    # Weights in an external data file next to the model.
    # The same model whose data file is missing, and one whose data is short.
    for name in ("external", "nodata", "short"):
        onnx.save_model(linear(w), os.path.join(out, name + ".onnx"),
                        save_as_external_data=True, all_tensors_to_one_file=True,
                        location=name + ".onnx.data", size_threshold=0)
    os.remove(os.path.join(out, "nodata.onnx.data"))
    with open(os.path.join(out, "short.onnx.data"), "r+b") as f:
        f.truncate(100)

    # Raw data whose size disagrees with the initializer's shape.
    m = linear(w)
    m.graph.initializer[0].raw_data = m.graph.initializer[0].raw_data[:-4]
    onnx.save_model(m, os.path.join(out, "badsize.onnx"))

    # A node reading a value nothing defines.
    m = linear(w)
    m.graph.node[0].input[0] = "nowhere"
    onnx.save_model(m, os.path.join(out, "undefined.onnx"))

    # Truncated and garbage files.
    data = linear(w).SerializeToString()
    open(os.path.join(out, "truncated.onnx"), "wb").write(data[: len(data) // 2])
    open(os.path.join(out, "garbage.onnx"), "wb").write(bytes(range(256)) * 4)
    # A string tensor input.
    x = helper.make_tensor_value_info("x", TensorProto.STRING, [2])
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "s", [x],
                              [helper.make_tensor_value_info("y", TensorProto.STRING, [2])])
    onnx.save_model(helper.make_model(graph), os.path.join(out, "string.onnx"))


if __name__ == "__main__":
    main()
