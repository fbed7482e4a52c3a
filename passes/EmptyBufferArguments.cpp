//===- EmptyBufferArguments.cpp - One-element types for empty buffers ------===//
#include "passes/Passes.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"

namespace kiln {
#define GEN_PASS_DEF_EMPTYBUFFERARGUMENTS
#include "passes/Passes.h.inc"
} // namespace kiln

using namespace mlir;

namespace {
struct EmptyBufferArgumentsPass
    : kiln::impl::EmptyBufferArgumentsBase<EmptyBufferArgumentsPass> {
  void runOnOperation() override {
    for (auto func : getOperation().getOps<func::FuncOp>()) {
      if (func.isExternal())
        continue;
      Block &entry = func.getBody().front();
      SmallVector<Type> inputs(func.getArgumentTypes());
      OpBuilder b(&entry, entry.begin());
      for (BlockArgument arg : entry.getArguments()) {
        auto type = dyn_cast<MemRefType>(arg.getType());
        if (!type || !type.hasStaticShape() || type.getNumElements() != 0 ||
            !type.getLayout().isIdentity())
          continue;
        auto one = MemRefType::get({1}, type.getElementType(), nullptr,
                                   type.getMemorySpace());
        arg.setType(one);
        inputs[arg.getArgNumber()] = one;
        if (arg.use_empty())
          continue;
        // Row-major strides of the original shape.
        SmallVector<int64_t> strides(type.getRank(), 1);
        for (int64_t d = type.getRank() - 2; d >= 0; --d)
          strides[d] = strides[d + 1] * type.getDimSize(d + 1);
        Value view = memref::ReinterpretCastOp::create(
            b, func.getLoc(), type, arg, /*offset=*/0, type.getShape(), strides);
        arg.replaceAllUsesExcept(view, view.getDefiningOp());
      }
      func.setFunctionType(
          FunctionType::get(&getContext(), inputs, func.getResultTypes()));
    }
  }
};
} // namespace
