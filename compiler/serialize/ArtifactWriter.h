//===- ArtifactWriter.h - Write the .kiln artifact --------------*- C++ -*-===//
#ifndef KILN_COMPILER_SERIALIZE_ARTIFACTWRITER_H
#define KILN_COMPILER_SERIALIZE_ARTIFACTWRITER_H

#include "compiler/WeightStore.h"
#include "targets/cpu/CpuTarget.h"

#include "mlir/IR/BuiltinOps.h"

#include <map>
#include <string>

namespace kiln {

/// Writes `module`'s functions (kiln dialect: signatures and weight types),
/// the weights they use and the CPU executable to `path`.
mlir::LogicalResult
writeArtifact(llvm::StringRef path, mlir::ModuleOp module,
              const WeightStore &weights, const CpuExecutable &cpu,
              const std::map<std::string, std::string> &metadata);

} // namespace kiln

#endif // KILN_COMPILER_SERIALIZE_ARTIFACTWRITER_H
