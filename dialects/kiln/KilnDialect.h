//===- KilnDialect.h - The kiln dialect -------------------------*- C++ -*-===//
#ifndef KILN_DIALECTS_KILN_KILNDIALECT_H
#define KILN_DIALECTS_KILN_KILNDIALECT_H

#include "mlir/Bytecode/BytecodeOpInterface.h"
#include "mlir/IR/BuiltinTypes.h"
#include "mlir/IR/Dialect.h"
#include "mlir/IR/OpDefinition.h"
#include "mlir/Interfaces/SideEffectInterfaces.h"

#include "dialects/kiln/KilnDialect.h.inc"

#define GET_OP_CLASSES
#include "dialects/kiln/KilnOps.h.inc"

namespace kiln {
/// Bytes of one block of a GGUF quantization format ("q8_0", "q4_0",
/// "q4_1", "q5_0", "q5_1", "f16", "q2_k", "q3_k", "q4_k", "q5_k", "q6_k",
/// "iq4_nl", "iq4_xs"); 0 for an unknown one.
int64_t quantBlockBytes(llvm::StringRef format);
/// Values per block of `format`: 32, or 256 for the K-quants (q2_k to
/// q6_k) and iq4_xs.
int64_t quantBlockValues(llvm::StringRef format);
/// IQ4_NL's and IQ4_XS's non-linear codebook: a 4-bit code n stands for
/// kIq4Values[n] (times the block's scale).
inline constexpr int8_t kIq4Values[16] = {-127, -104, -83, -65, -49, -35,
                                          -22,  -10,  1,   13,  25,  38,
                                          53,   69,   89,  113};
/// table[n] for an i8 (or vector of i8) n in [0, 16), by a tree of 15
/// selects on n's four bits: any target, scalars or vectors.
mlir::Value buildTableLookup(mlir::OpBuilder &b, mlir::Location loc,
                             llvm::ArrayRef<int8_t> table, mlir::Value n);
/// Bytes of one row of K values in `format` (K a multiple of its block).
inline int64_t quantRowBytes(llvm::StringRef format, int64_t k) {
  return k / quantBlockValues(format) * quantBlockBytes(format);
}

/// The paged KV cache's element type for `--kv-dtype` ("f32", "f16" or
/// "int8"), or null for another name.
mlir::Type kvCacheElementType(mlir::MLIRContext *ctx, llvm::StringRef dtype);
/// An int8 cache keeps llama.cpp's Q8_0 blocks along head_dim: a row (one
/// token's keys or values of one KV head) is head_dim i8 codes, then one
/// little-endian f16 scale per group. Groups are 32 values, or the whole
/// row when head_dim is not a multiple of 32.
inline int64_t kvInt8Group(int64_t headDim) {
  return headDim % 32 == 0 ? 32 : headDim;
}
/// Elements of one cache row of `headDim` values: head_dim for f32 and f16,
/// head_dim codes plus two bytes per group for i8.
inline int64_t kvCacheRowElements(mlir::Type elt, int64_t headDim) {
  return elt.isInteger(8) ? headDim + 2 * (headDim / kvInt8Group(headDim))
                          : headDim;
}
} // namespace kiln

#endif // KILN_DIALECTS_KILN_KILNDIALECT_H
