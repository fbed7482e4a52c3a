//===- BufferizableOpInterfaceImpl.h - Paged-cache ops in bufferization ---===//
#ifndef KILN_DIALECTS_KILN_BUFFERIZABLEOPINTERFACEIMPL_H
#define KILN_DIALECTS_KILN_BUFFERIZABLEOPINTERFACEIMPL_H

#include "mlir/IR/DialectRegistry.h"

namespace kiln {
/// Lets One-Shot Bufferize turn kiln.kv_store and kiln.paged_attention
/// into loops over the runtime's cache.
void registerBufferizableOpInterfaceExternalModels(
    mlir::DialectRegistry &registry);
} // namespace kiln

#endif
