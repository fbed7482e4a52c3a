//===- VulkanTarget.h - SPIR-V kernels for Vulkan ---------------*- C++ -*-===//
#ifndef KILN_TARGETS_VULKAN_VULKANTARGET_H
#define KILN_TARGETS_VULKAN_VULKANTARGET_H

#include "targets/gpu/GpuLowering.h"

namespace kiln {

/// What the kernels of one Vulkan variant may use (its SPIR-V target
/// environment). Written `PROFILE[+CAP|-CAP]...`:
///  * `portable`: SPIR-V 1.3 (Vulkan 1.1); the kernels may declare Int8,
///    Int16, Int64, Float16, Float64, StorageBuffer8BitAccess and
///    StorageBuffer16BitAccess, each module only those it uses (the
///    artifact lists them, the runtime checks them); reductions shared by
///    a workgroup combine in workgroup memory;
///  * `subgroup`: `portable` plus GroupNonUniform and
///    GroupNonUniformArithmetic: reductions combine with subgroup
///    operations (any subgroup size);
///  * `-CAP` / `+CAP` take one of those capabilities away or add it back;
///    a kernel that needs one the environment lacks is a compile error
///    naming both;
///  * `@1.N` sets the SPIR-V version (1.3 to 1.6; the device's Vulkan
///    version must consume it: 1.1 takes 1.3, 1.2 takes 1.5, 1.3 takes 1.6).
struct VulkanEnv {
  std::string name = "portable";
  std::vector<std::string> capabilities;
  bool subgroups = false;
  /// SPIR-V 1.N (`@1.N`; default 1.3, what Vulkan 1.1 consumes).
  unsigned spirvMinor = 3;
};

/// Parses one environment; on failure `error` says why.
std::optional<VulkanEnv> parseVulkanEnv(llvm::StringRef spec,
                                        std::string &error);

struct VulkanTargetOptions {
  /// Workgroup size and how reductions are shared.
  GpuLoweringOptions lowering{64, "tree"};
  /// Stop after "linalg", "bufferize" (host + gpu kernels) or "spirv" and
  /// print the module.
  std::string stopAfter;
  /// The target environment (its reduction form overrides `lowering`'s).
  VulkanEnv env;
};

struct VulkanExecutable {
  /// The environment's name, stored as the artifact target's variant.
  std::string variant;
  std::string spirvVersion = "spirv1.3";
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
