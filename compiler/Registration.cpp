//===- Registration.cpp - Dialects and passes the tools know --------------===//
#include "compiler/Registration.h"
#include "dialects/kiln/BufferizableOpInterfaceImpl.h"
#include "dialects/kiln/KilnDialect.h"
#include "passes/Passes.h"

#include "mlir/InitAllDialects.h"
#include "mlir/InitAllExtensions.h"
#include "mlir/InitAllPasses.h"

namespace kiln {

void registerAllKilnDialects(mlir::DialectRegistry &registry) {
  registry.insert<KilnDialect>();
  mlir::registerAllDialects(registry);
  mlir::registerAllExtensions(registry);
  registerBufferizableOpInterfaceExternalModels(registry);
}

void registerAllKilnPasses() {
  mlir::registerAllPasses();
  registerKilnPasses();
}

} // namespace kiln
