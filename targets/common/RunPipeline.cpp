//===- RunPipeline.cpp - Run a textual pass pipeline on a module ----------===//
#include "targets/common/RunPipeline.h"

#include "mlir/Pass/PassManager.h"
#include "mlir/Pass/PassRegistry.h"

using namespace mlir;

namespace kiln {

LogicalResult runPipeline(ModuleOp module, StringRef pipeline, StringRef what) {
  PassManager pm(module.getContext());
  std::string error;
  llvm::raw_string_ostream errOs(error);
  // The pass manager is already anchored on builtin.module.
  StringRef inner = pipeline;
  if (inner.consume_front("builtin.module("))
    inner = inner.drop_back();
  if (failed(parsePassPipeline(inner, pm, errOs)))
    return emitError(module.getLoc()) << "bad " << what << " pipeline: " << error;
  return pm.run(module);
}

} // namespace kiln
