//===- Passes.h - Kiln passes -----------------------------------*- C++ -*-===//
#ifndef KILN_PASSES_PASSES_H
#define KILN_PASSES_PASSES_H

#include "mlir/Pass/Pass.h"

namespace kiln {
#define GEN_PASS_DECL
#include "passes/Passes.h.inc"

#define GEN_PASS_REGISTRATION
#include "passes/Passes.h.inc"

/// The buffer a memref value views: a function argument or an allocation,
/// seen through expand/collapse_shape and cast (views of all its bytes in
/// order), and through subview too when `throughSubviews` (a part of it).
/// GPU lowering: a kernel argument must be a whole buffer; the shared
/// reductions' alias check counts any part.
mlir::Value bufferBehindViews(mlir::Value v, bool throughSubviews = false);

class WeightStore;
/// kiln-quantize-weights: matmuls by f32 weights become kiln.quant_matmul
/// by the weights packed group-wise in `format` (q8_0, q4_0 or q4_1), the
/// packed bytes added to `store` (QuantizeWeights.cpp).
std::unique_ptr<mlir::Pass> createQuantizeWeights(WeightStore &store,
                                                  llvm::StringRef format);
} // namespace kiln

#endif // KILN_PASSES_PASSES_H
