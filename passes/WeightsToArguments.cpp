//===- WeightsToArguments.cpp - Bind weights to function arguments -------===//
#include "dialects/kiln/KilnDialect.h"
#include "passes/Passes.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/IR/Builders.h"

namespace kiln {
#define GEN_PASS_DEF_WEIGHTSTOARGUMENTS
#include "passes/Passes.h.inc"
} // namespace kiln

using namespace mlir;

namespace {
struct WeightsToArgumentsPass
    : kiln::impl::WeightsToArgumentsBase<WeightsToArgumentsPass> {
  void runOnOperation() override {
    for (auto func : getOperation().getOps<func::FuncOp>()) {
      if (func.isExternal())
        continue;
      Block &entry = func.getBody().front();
      // One argument per distinct weight name, in first-use order.
      llvm::StringMap<BlockArgument> args;
      SmallVector<Attribute> names;
      SmallVector<kiln::WeightOp> weights;
      func.walk([&](kiln::WeightOp op) { weights.push_back(op); });
      for (kiln::WeightOp op : weights) {
        auto it = args.find(op.getName());
        if (it == args.end()) {
          unsigned index = func.getNumArguments();
          if (failed(func.insertArgument(index, op.getType(), {}, op.getLoc()))) {
            op.emitOpError("cannot become a function argument");
            return signalPassFailure();
          }
          it = args.insert({op.getName(), entry.getArgument(index)}).first;
          names.push_back(op.getNameAttr());
        }
        if (it->second.getType() != op.getType()) {
          op.emitOpError("weight '") << op.getName()
                                     << "' is used with two types";
          return signalPassFailure();
        }
        op.replaceAllUsesWith(it->second);
        op.erase();
      }
      func->setAttr("kiln.weights", ArrayAttr::get(&getContext(), names));
      // Inputs belong to the caller and weights are mapped read-only:
      // bufferization must never write into an argument.
      for (unsigned i = 0; i < func.getNumArguments(); ++i)
        if (isa<TensorType>(func.getArgument(i).getType()))
          func.setArgAttr(i, "bufferization.writable",
                        BoolAttr::get(&getContext(), false));
    }
  }
};
} // namespace
