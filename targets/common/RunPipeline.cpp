//===- RunPipeline.cpp - Run a textual pass pipeline on a module ----------===//
#include "targets/common/RunPipeline.h"

#include "mlir/Pass/PassManager.h"
#include "mlir/Pass/PassRegistry.h"

using namespace mlir;

namespace kiln {

LogicalResult applyPassManagerOptions(PassManager &pm) {
  if (failed(applyPassManagerCLOptions(pm)))
    return failure();
  applyDefaultTimingPassManagerCLOptions(pm);
  return success();
}

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
  if (failed(applyPassManagerOptions(pm)))
    return failure();
  return pm.run(module);
}

std::string linalgPhasePipeline(int64_t maxKernelOperands) {
  return "kiln-lower-to-linalg, kiln-weights-to-arguments, canonicalize, cse, "
         "kiln-fuse-elementwise{max-operands=" +
         std::to_string(maxKernelOperands) + "}, canonicalize";
}

std::string bufferizePhasePipeline() {
  return "one-shot-bufferize{bufferize-function-boundaries "
         "function-boundary-type-conversion=identity-layout-map}, "
         "buffer-results-to-out-params{modify-public-functions=1 "
         "hoist-static-allocs=1}, canonicalize, kiln-copies-to-linalg, "
         "buffer-deallocation-pipeline, canonicalize";
}

} // namespace kiln
