//===- CpuTarget.h - Native code for the host CPU ---------------*- C++ -*-===//
#ifndef KILN_TARGETS_CPU_CPUTARGET_H
#define KILN_TARGETS_CPU_CPUTARGET_H

#include "mlir/IR/BuiltinOps.h"

#include <string>
#include <vector>

namespace kiln {

struct CpuTargetOptions {
  /// LLVM CPU name; "native" means the compiling machine's CPU.
  std::string cpu = "native";
  /// Stop after this phase and print the module: "linalg", "bufferize",
  /// "llvm" (MLIR LLVM dialect) or "llvm-ir".
  std::string stopAfter;
};

/// The compiled form of one kiln function on the CPU.
struct CpuKernel {
  std::string function; // kiln function name
  std::string symbol;   // exported `void symbol(void **bindings, void *env)`
  unsigned numInputs = 0, numOutputs = 0;
  /// Bound after the inputs: the paged KV cache (kiln.kv_store).
  bool kvCache = false;
  /// Weights bound after the inputs, in argument order.
  std::vector<std::string> weights;
  /// Bytes of the scratch buffer bound after the outputs (0: none).
  int64_t scratchBytes = 0;
};

struct CpuExecutable {
  std::vector<char> image; // ELF shared object
  std::string arch, cpu, features;
  std::vector<CpuKernel> kernels;
};

/// The pass pipeline from the kiln dialect to the LLVM dialect, as text
/// (kiln-opt runs the same string).
std::string cpuLoweringPipeline(llvm::StringRef stopAfter = "");

/// Compiles `module` (kiln dialect, left unchanged) to a shared object.
/// When options.stopAfter is set, prints that phase to `os` and returns an
/// executable with no image.
mlir::FailureOr<CpuExecutable> buildCpuExecutable(mlir::ModuleOp module,
                                                  const CpuTargetOptions &options,
                                                  llvm::raw_ostream &os);

} // namespace kiln

#endif // KILN_TARGETS_CPU_CPUTARGET_H
