//===- RunPipeline.h - Run a textual pass pipeline on a module --*- C++ -*-===//
#ifndef KILN_TARGETS_COMMON_RUNPIPELINE_H
#define KILN_TARGETS_COMMON_RUNPIPELINE_H

#include "mlir/IR/BuiltinOps.h"

namespace kiln {

/// Parses `pipeline` (passes on a builtin.module, with or without the
/// `builtin.module(...)` wrapper) and runs it on `module`; `what` names the
/// pipeline in the error when it does not parse.
mlir::LogicalResult runPipeline(mlir::ModuleOp module, llvm::StringRef pipeline,
                                llvm::StringRef what);

} // namespace kiln

#endif // KILN_TARGETS_COMMON_RUNPIPELINE_H
