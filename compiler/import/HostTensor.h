//===- HostTensor.h - Compile-time tensor values ----------------*- C++ -*-===//
//
// The importer evaluates shape computations (Shape -> Gather -> Concat ->
// Reshape chains and the like) while it builds the graph, so the IR it
// emits has static shapes. A HostTensor is such a compile-time value: ONNX
// dtype, shape and little-endian bytes (owned, or a view into the model).
//
//===----------------------------------------------------------------------===//
#ifndef KILN_COMPILER_IMPORT_HOSTTENSOR_H
#define KILN_COMPILER_IMPORT_HOSTTENSOR_H

#include "llvm/ADT/ArrayRef.h"

#include <cstdint>
#include <cstring>
#include <memory>
#include <vector>

namespace kiln {

/// ONNX TensorProto.DataType values Kiln understands.
enum OnnxDType : int32_t {
  kFloat = 1,
  kUInt8 = 2,
  kInt8 = 3,
  kUInt16 = 4,
  kInt16 = 5,
  kInt32 = 6,
  kInt64 = 7,
  kString = 8,
  kBool = 9,
  kFloat16 = 10,
  kDouble = 11,
};

/// Bytes per element, or 0 for dtypes Kiln does not take.
inline size_t dtypeSize(int32_t dtype) {
  switch (dtype) {
  case kFloat: case kInt32: return 4;
  case kInt8: case kUInt8: case kBool: return 1;
  case kInt16: case kFloat16: return 2;
  case kInt64: case kDouble: return 8;
  default: return 0;
  }
}

inline bool isFloatDType(int32_t d) {
  return d == kFloat || d == kDouble || d == kFloat16;
}

struct HostTensor {
  int32_t dtype = kFloat;
  std::vector<int64_t> shape;
  std::shared_ptr<const std::vector<char>> owned;
  const char *data = nullptr;
  size_t size = 0;

  int64_t numel() const {
    int64_t n = 1;
    for (int64_t d : shape)
      n *= d;
    return n;
  }
  llvm::ArrayRef<char> bytes() const { return {data, size}; }

  double getF(int64_t i) const;
  int64_t getI(int64_t i) const;

  /// A tensor of `dtype` holding `values` converted element by element.
  static HostTensor fromDoubles(int32_t dtype, std::vector<int64_t> shape,
                                const std::vector<double> &values);
  static HostTensor fromInts(int32_t dtype, std::vector<int64_t> shape,
                             const std::vector<int64_t> &values);
  static HostTensor fromBytes(int32_t dtype, std::vector<int64_t> shape,
                              std::vector<char> bytes);
  /// All int values (any integer dtype), for shape-like inputs.
  std::vector<int64_t> toInts() const {
    std::vector<int64_t> r(numel());
    for (int64_t i = 0; i < numel(); ++i)
      r[i] = getI(i);
    return r;
  }
};

float halfToFloat(uint16_t h);
uint16_t floatToHalf(float f);

} // namespace kiln

#endif // KILN_COMPILER_IMPORT_HOSTTENSOR_H
