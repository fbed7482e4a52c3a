//===- VulkanTarget.h - SPIR-V kernels for Vulkan ---------------*- C++ -*-===//
#ifndef KILN_TARGETS_VULKAN_VULKANTARGET_H
#define KILN_TARGETS_VULKAN_VULKANTARGET_H

#include "targets/gpu/GpuLowering.h"

namespace kiln {

struct VulkanTargetOptions {
  /// Invocations per workgroup (the x size of every kernel's workgroup).
  int64_t workgroupSize = 64;
  /// Stop after "linalg", "bufferize" (host + gpu kernels) or "spirv" and
  /// print the module.
  std::string stopAfter;
};

struct VulkanExecutable {
  GpuProgram program;
  /// One SPIR-V module per kernel of `program`.
  std::vector<std::vector<uint32_t>> modules;
  /// The SPIR-V capabilities the modules declare (minimal per module,
  /// spirv-update-vce), beyond Shader.
  std::vector<std::string> capabilities;
};

/// Compiles `module` (kiln dialect, left unchanged) to SPIR-V kernels and
/// a dispatch list per function.
mlir::FailureOr<VulkanExecutable>
buildVulkanExecutable(mlir::ModuleOp module, const VulkanTargetOptions &options,
                      llvm::raw_ostream &os);

} // namespace kiln

#endif // KILN_TARGETS_VULKAN_VULKANTARGET_H
