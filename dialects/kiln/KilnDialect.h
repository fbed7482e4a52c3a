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
/// Bytes of one 32-value block of a GGUF quantization format ("q8_0",
/// "q4_0", "q4_1"); 0 for an unknown one.
int64_t quantBlockBytes(llvm::StringRef format);
/// Values per block of `format`: 32, or 256 for the K-quants (q4_k, q6_k).
int64_t quantBlockValues(llvm::StringRef format);
/// Bytes of one row of K values in `format` (K a multiple of its block).
inline int64_t quantRowBytes(llvm::StringRef format, int64_t k) {
  return k / quantBlockValues(format) * quantBlockBytes(format);
}
} // namespace kiln

#endif // KILN_DIALECTS_KILN_KILNDIALECT_H
