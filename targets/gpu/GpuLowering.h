//===- GpuLowering.h - Shared GPU lowering: kernels + dispatches -*- C++ -*-===//
#ifndef KILN_TARGETS_GPU_GPULOWERING_H
#define KILN_TARGETS_GPU_GPULOWERING_H

#include "mlir/IR/BuiltinOps.h"
#include "mlir/IR/OwningOpRef.h"

#include <map>
#include <string>
#include <vector>

namespace kiln {

/// A buffer a dispatch binds: a function input/output, a weight, or one of
/// the function's temporaries (allocated by the runtime per session).
struct GpuBinding {
  enum Kind { Input, Output, Constant, Temporary, KvCache } kind;
  unsigned index;     // input/output/temporary index (KvCache: 0)
  std::string weight; // Constant: the weight's name
};

struct GpuDispatch {
  unsigned kernel; // index into GpuProgram::kernels
  uint32_t workgroups[3];
  uint32_t workgroupSize[3]; // invocations per workgroup (CUDA's block)
  std::vector<GpuBinding> bindings; // argument / binding i
};

struct GpuFunction {
  std::string function;
  std::vector<int64_t> temporaryBytes;
  std::vector<GpuDispatch> dispatches;
};

/// A constant the lowering made (a folded tensor that became a global),
/// bound like a weight.
struct GpuGlobal {
  mlir::MemRefType type;
  std::vector<char> bytes;
};

/// What every GPU target shares: per function, the dispatches; the
/// kernels they launch; constants the lowering made.
struct GpuProgram {
  std::map<std::string, GpuGlobal> globals;
  /// Kernel entry points, `kernelModules[i]` the gpu.module holding
  /// `kernels[i]`.
  std::vector<std::string> kernels, kernelModules;
  std::vector<GpuFunction> functions;
  int64_t workgroupSize = 64;
  /// Kernels dropped as copies of another (mergeIdenticalKernels).
  size_t mergedKernels = 0;
};

/// How kernels are formed, for every GPU target.
struct GpuLoweringOptions {
  /// Invocations per workgroup (a power of two).
  int64_t workgroupSize = 64;
  /// How a workgroup combines partial reductions: "tree" (workgroup
  /// memory, any device), "subgroup" (subgroup operations) or "serial"
  /// (no shared reductions: one invocation per output).
  std::string reduction = "tree";
  /// Most buffers an elementwise kernel binds (fusion stops there). Vulkan
  /// guarantees only 4 storage buffers per stage; real devices have 24 and
  /// more (lavapipe 32): 16 leaves room and costs almost no fusion.
  int64_t maxKernelOperands = 16;
};

/// The pass pipeline from the kiln dialect to host code + outlined gpu
/// kernels (shared by the Vulkan and CUDA targets).
std::string gpuLoweringPipeline(const GpuLoweringOptions &options,
                                llvm::StringRef stopAfter = "");

/// Lowers a copy of `module`, reads each function's dispatch list into
/// `program` and returns a module holding only the gpu.modules (the
/// kernels, still in the gpu dialect). With `stopAfter` "linalg" or
/// "bufferize", prints that phase to `os` and returns null.
mlir::FailureOr<mlir::OwningOpRef<mlir::ModuleOp>>
lowerForGpu(mlir::ModuleOp module, const GpuLoweringOptions &options,
            llvm::StringRef stopAfter, llvm::raw_ostream &os,
            GpuProgram &program);

} // namespace kiln

#endif // KILN_TARGETS_GPU_GPULOWERING_H
