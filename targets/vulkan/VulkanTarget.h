//===- VulkanTarget.h - SPIR-V kernels for Vulkan ---------------*- C++ -*-===//
#ifndef KILN_TARGETS_VULKAN_VULKANTARGET_H
#define KILN_TARGETS_VULKAN_VULKANTARGET_H

#include "mlir/IR/BuiltinOps.h"

#include <map>
#include <string>
#include <vector>

namespace kiln {

struct VulkanTargetOptions {
  /// Invocations per workgroup (the x size of every kernel's workgroup).
  int64_t workgroupSize = 64;
  /// Stop after "linalg", "bufferize" (host + gpu kernels) or "spirv" and
  /// print the module.
  std::string stopAfter;
};

/// A buffer a dispatch binds: a function input/output, a weight, or one of
/// the function's temporaries (allocated by the runtime per session).
struct GpuBinding {
  enum Kind { Input, Output, Constant, Temporary } kind;
  unsigned index;     // input/output/temporary index
  std::string weight; // Constant: the weight's name
};

struct GpuDispatch {
  unsigned kernel; // index into VulkanExecutable::kernels
  uint32_t workgroups[3];
  std::vector<GpuBinding> bindings; // descriptor set 0, binding i
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

struct VulkanExecutable {
  /// Constants by the weight name their bindings use.
  std::map<std::string, GpuGlobal> globals;
  /// One SPIR-V module per kernel, entry point `kernels[i]`.
  std::vector<std::vector<uint32_t>> modules;
  std::vector<std::string> kernels;
  std::vector<GpuFunction> functions;
};

/// The pass pipeline from the kiln dialect to host code + gpu kernels.
std::string vulkanLoweringPipeline(const VulkanTargetOptions &options);

/// Compiles `module` (kiln dialect, left unchanged) to SPIR-V kernels and
/// a dispatch list per function.
mlir::FailureOr<VulkanExecutable>
buildVulkanExecutable(mlir::ModuleOp module, const VulkanTargetOptions &options,
                      llvm::raw_ostream &os);

} // namespace kiln

#endif // KILN_TARGETS_VULKAN_VULKANTARGET_H
