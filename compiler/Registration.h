//===- Registration.h - Dialects and passes the tools know ------*- C++ -*-===//
#ifndef KILN_COMPILER_REGISTRATION_H
#define KILN_COMPILER_REGISTRATION_H

#include "mlir/IR/DialectRegistry.h"

namespace kiln {
/// The kiln dialect plus every upstream dialect and extension the lowering
/// pipelines use.
void registerAllKilnDialects(mlir::DialectRegistry &registry);
/// Kiln's passes and the upstream ones its pipelines name.
void registerAllKilnPasses();
} // namespace kiln

#endif
