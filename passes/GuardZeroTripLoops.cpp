//===- GuardZeroTripLoops.cpp - Defined results for empty loops -----------===//
//
// SPIR-V kernels get scf.for results through function variables that only
// the loop body stores (MLIR's SCF -> SPIR-V conversion), so a loop that
// runs zero times would hand its users undefined values. Guarding such
// loops with an scf.if whose else branch yields the initial values keeps
// the scf semantics on every path.
//
//===----------------------------------------------------------------------===//
#include "passes/Passes.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/Dialect/Utils/StaticValueUtils.h"
#include "mlir/IR/Builders.h"

namespace kiln {
#define GEN_PASS_DEF_GUARDZEROTRIPLOOPS
#include "passes/Passes.h.inc"
} // namespace kiln

using namespace mlir;

namespace {

struct GuardZeroTripLoopsPass
    : kiln::impl::GuardZeroTripLoopsBase<GuardZeroTripLoopsPass> {
  void runOnOperation() override {
    SmallVector<scf::ForOp> loops;
    getOperation()->walk([&](scf::ForOp loop) {
      std::optional<int64_t> lb = getConstantIntValue(loop.getLowerBound());
      std::optional<int64_t> ub = getConstantIntValue(loop.getUpperBound());
      if (loop.getNumResults() > 0 && !(lb && ub && *lb < *ub))
        loops.push_back(loop);
    });
    for (scf::ForOp loop : loops) {
      OpBuilder b(loop);
      Location loc = loop.getLoc();
      Value runs = arith::CmpIOp::create(
          b, loc,
          loop.getUnsignedCmp() ? arith::CmpIPredicate::ult
                                : arith::CmpIPredicate::slt,
          loop.getLowerBound(), loop.getUpperBound());
      auto guard = scf::IfOp::create(b, loc, loop.getResultTypes(), runs,
                                     /*addThenBlock=*/true,
                                     /*addElseBlock=*/true);
      loop->replaceAllUsesWith(guard.getResults());
      Block *then = guard.thenBlock();
      loop->moveBefore(then, then->end());
      b.setInsertionPointToEnd(then);
      scf::YieldOp::create(b, loc, loop.getResults());
      b.setInsertionPointToEnd(guard.elseBlock());
      scf::YieldOp::create(b, loc, loop.getInitArgs());
    }
  }
};

} // namespace
