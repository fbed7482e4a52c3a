//===- RunPipeline.h - Run a textual pass pipeline on a module --*- C++ -*-===//
#ifndef KILN_TARGETS_COMMON_RUNPIPELINE_H
#define KILN_TARGETS_COMMON_RUNPIPELINE_H

#include "mlir/IR/BuiltinOps.h"
#include "mlir/Pass/PassManager.h"

#include <string>

namespace kiln {

/// MLIR's pass-manager command-line options (--mlir-timing,
/// --mlir-print-ir-after=..., when the tool registered them) applied to
/// `pm`.
mlir::LogicalResult applyPassManagerOptions(mlir::PassManager &pm);

/// Parses `pipeline` (passes on a builtin.module, with or without the
/// `builtin.module(...)` wrapper) and runs it on `module`; `what` names the
/// pipeline in the error when it does not parse.
mlir::LogicalResult runPipeline(mlir::ModuleOp module, llvm::StringRef pipeline,
                                llvm::StringRef what);

/// The phases every target shares, as pipeline text: kiln to linalg on
/// tensors (weights as arguments, elementwise fusion), and linalg to
/// buffers (identity layouts at function boundaries, results as out
/// parameters, copies as linalg, deallocations). `maxKernelOperands` > 0
/// bounds the buffers a fused elementwise op reads and writes (a GPU
/// kernel binds each; Vulkan devices limit them per stage).
std::string linalgPhasePipeline(int64_t maxKernelOperands = 0);
std::string bufferizePhasePipeline();

} // namespace kiln

#endif // KILN_TARGETS_COMMON_RUNPIPELINE_H
