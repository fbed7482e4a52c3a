//===- CudaTarget.h - PTX and cubin for NVIDIA GPUs -------------*- C++ -*-===//
#ifndef KILN_TARGETS_CUDA_CUDATARGET_H
#define KILN_TARGETS_CUDA_CUDATARGET_H

#include "targets/gpu/GpuLowering.h"

namespace kiln {

struct CudaTargetOptions {
  /// GPUs to make cubins for ("sm_80", "sm_90"); the PTX targets the first
  /// (lowest) and is the fallback for newer GPUs.
  std::vector<std::string> sms = {"sm_80", "sm_90"};
  /// Block size and how reductions are shared: by warp shuffles
  /// ("subgroup"), through shared memory ("tree") or not ("serial").
  GpuLoweringOptions lowering{128, "subgroup"};
  /// Stop after "linalg", "bufferize" or "ptx" and print it.
  std::string stopAfter;
};

struct CudaExecutable {
  GpuProgram program;
  /// Per kernel of `program`: its PTX, and per SM (same order as
  /// `sms`) its cubin; `sms` is empty when ptxas was not found.
  std::vector<std::string> ptx;
  std::vector<std::string> sms;
  std::vector<std::vector<std::vector<char>>> cubins; // [sm][kernel]
  std::string ptxArch; // e.g. "sm_80"
};

/// Compiles `module` (kiln dialect, left unchanged) to PTX through MLIR's
/// GPU-to-NVVM conversion and LLVM's NVPTX backend, and to cubins with the
/// CUDA toolkit's ptxas when it is found (else PTX only, with a warning).
mlir::FailureOr<CudaExecutable>
buildCudaExecutable(mlir::ModuleOp module, const CudaTargetOptions &options,
                    llvm::raw_ostream &os);

} // namespace kiln

#endif // KILN_TARGETS_CUDA_CUDATARGET_H
