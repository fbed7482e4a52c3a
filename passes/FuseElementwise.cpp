//===- FuseElementwise.cpp - Fusion without recomputation -----------------===//
#include "passes/Passes.h"

#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/Dialect/Linalg/Transforms/Transforms.h"
#include "mlir/Transforms/GreedyPatternRewriteDriver.h"

namespace kiln {
#define GEN_PASS_DEF_FUSEELEMENTWISE
#include "passes/Passes.h.inc"
} // namespace kiln

using namespace mlir;

namespace {

/// Whether fusing the producer of `operand` into its consumer computes each
/// produced element exactly once.
bool fusesWithoutRecomputation(OpOperand *operand) {
  auto consumer = dyn_cast<linalg::GenericOp>(operand->getOwner());
  if (!consumer || consumer.getNumReductionLoops() != 0)
    return false;
  AffineMap map = consumer.getMatchingIndexingMap(operand);
  return map.isPermutation();
}

/// The distinct operands the fused op would have: the consumer's and the
/// producer's, less the fused value.
int64_t fusedOperands(OpOperand *operand) {
  llvm::SmallDenseSet<Value> values;
  Operation *consumer = operand->getOwner();
  for (OpOperand &o : consumer->getOpOperands())
    if (&o != operand)
      values.insert(o.get());
  if (Operation *producer = operand->get().getDefiningOp())
    for (Value v : producer->getOperands())
      values.insert(v);
  return values.size();
}

struct FuseElementwisePass
    : kiln::impl::FuseElementwiseBase<FuseElementwisePass> {
  using FuseElementwiseBase::FuseElementwiseBase;
  void runOnOperation() override {
    RewritePatternSet patterns(&getContext());
    int64_t bound = maxOperands;
    linalg::populateElementwiseOpsFusionPatterns(
        patterns, [bound](OpOperand *operand) {
          return fusesWithoutRecomputation(operand) &&
                 (bound <= 0 || fusedOperands(operand) <= bound);
        });
    if (failed(applyPatternsGreedily(getOperation(), std::move(patterns))))
      signalPassFailure();
  }
};

} // namespace
