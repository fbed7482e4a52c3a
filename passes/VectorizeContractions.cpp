//===- VectorizeContractions.cpp - Register-blocked matmuls ---------------===//
#include "passes/Passes.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/Dialect/Vector/IR/VectorOps.h"
#include "mlir/IR/PatternMatch.h"

namespace kiln {
#define GEN_PASS_DEF_VECTORIZECONTRACTIONS
#include "passes/Passes.h.inc"
} // namespace kiln

using namespace mlir;

namespace {

/// The first of `choices` that divides `size`, or 0.
int64_t fittingTile(int64_t size, std::initializer_list<int64_t> choices) {
  for (int64_t c : choices)
    if (c > 0 && size % c == 0)
      return c;
  return 0;
}

/// Whether the innermost dim of `type` is contiguous.
bool unitInnerStride(MemRefType type) {
  SmallVector<int64_t> strides;
  int64_t offset;
  return succeeded(type.getStridesAndOffset(strides, offset)) &&
         !strides.empty() && strides.back() == 1;
}

/// The operand's indices for loop values `ivs` through `map` (results are
/// loop dims or the constant 0 of a broadcast dim).
SmallVector<Value> indicesThrough(OpBuilder &b, Location loc, AffineMap map,
                                  ArrayRef<Value> ivs) {
  SmallVector<Value> idx;
  for (AffineExpr e : map.getResults()) {
    if (auto d = dyn_cast<AffineDimExpr>(e))
      idx.push_back(ivs[d.getPosition()]);
    else
      idx.push_back(arith::ConstantIndexOp::create(
          b, loc, cast<AffineConstantExpr>(e).getValue()));
  }
  return idx;
}

struct VectorizeContractionsPass
    : kiln::impl::VectorizeContractionsBase<VectorizeContractionsPass> {
  using VectorizeContractionsBase::VectorizeContractionsBase;

  void runOnOperation() override {
    SmallVector<linalg::GenericOp> matmuls;
    getOperation().walk([&](linalg::GenericOp op) {
      if (op->hasAttr("kiln.matmul") && op.hasPureBufferSemantics())
        matmuls.push_back(op);
    });
    IRRewriter rewriter(&getContext());
    for (linalg::GenericOp op : matmuls)
      rewrite(rewriter, op);
  }

  void rewrite(IRRewriter &rewriter, linalg::GenericOp op) {
    Location loc = op.getLoc();
    SmallVector<int64_t> ranges = op.getStaticLoopRanges();
    size_t loops = ranges.size(); // batch..., m, k, n
    if (loops < 3 || ShapedType::isDynamicShape(ranges) ||
        op.getNumDpsInputs() != 2)
      return;
    size_t mDim = loops - 3, kDim = loops - 2, nDim = loops - 1;
    Value lhs = op.getDpsInputs()[0], rhs = op.getDpsInputs()[1];
    Value out = op.getDpsInits()[0];
    auto outType = cast<MemRefType>(out.getType());
    auto elemType = dyn_cast<FloatType>(outType.getElementType());
    if (!elemType || !unitInnerStride(cast<MemRefType>(rhs.getType())) ||
        !unitInnerStride(outType))
      return;
    int64_t tm = fittingTile(ranges[mDim], {tileM, 4, 2, 1});
    int64_t tn = fittingTile(ranges[nDim], {tileN, 8});
    if (!tm || !tn)
      return;
    SmallVector<AffineMap> maps = op.getIndexingMapsArray();
    auto vecType = VectorType::get({tn}, elemType);

    rewriter.setInsertionPoint(op);
    auto c = [&](int64_t v) {
      return arith::ConstantIndexOp::create(rewriter, loc, v).getResult();
    };
    // scf.parallel over (batch..., m blocks, n blocks).
    SmallVector<Value> lbs, ubs, steps;
    for (size_t d = 0; d < loops; ++d) {
      if (d == kDim)
        continue;
      lbs.push_back(c(0));
      ubs.push_back(c(ranges[d]));
      steps.push_back(c(d == mDim ? tm : d == nDim ? tn : 1));
    }
    Value kUpper = c(ranges[kDim]), zero = c(0), one = c(1);
    auto parallel = scf::ParallelOp::create(
        rewriter, loc, lbs, ubs, steps,
        [&](OpBuilder &b, Location l, ValueRange outer) {
          // Loop values in generic order, k filled in per iteration.
          SmallVector<Value> ivs;
          for (size_t d = 0, j = 0; d < loops; ++d)
            ivs.push_back(d == kDim ? Value() : outer[j++]);
          auto row = [&](Value base, int64_t i) {
            return i ? arith::AddIOp::create(b, l, base, c(i)).getResult()
                     : base;
          };
          SmallVector<Value> accs;
          SmallVector<SmallVector<Value>> outIdx;
          for (int64_t i = 0; i < tm; ++i) {
            SmallVector<Value> rowIvs = ivs;
            rowIvs[mDim] = row(ivs[mDim], i);
            rowIvs[kDim] = zero;
            outIdx.push_back(indicesThrough(b, l, maps[2], rowIvs));
            accs.push_back(
                vector::LoadOp::create(b, l, vecType, out, outIdx.back()));
          }
          auto kLoop = scf::ForOp::create(
              b, l, zero, kUpper, one, accs,
              [&](OpBuilder &kb, Location kl, Value k, ValueRange carried) {
                SmallVector<Value> kIvs = ivs;
                kIvs[kDim] = k;
                Value bRow = vector::LoadOp::create(
                    kb, kl, vecType, rhs, indicesThrough(kb, kl, maps[1], kIvs));
                SmallVector<Value> next;
                for (int64_t i = 0; i < tm; ++i) {
                  SmallVector<Value> rowIvs = kIvs;
                  rowIvs[mDim] = row(ivs[mDim], i);
                  Value a = memref::LoadOp::create(
                      kb, kl, lhs, indicesThrough(kb, kl, maps[0], rowIvs));
                  Value aVec = vector::BroadcastOp::create(kb, kl, vecType, a);
                  Value prod = arith::MulFOp::create(kb, kl, aVec, bRow);
                  next.push_back(
                      arith::AddFOp::create(kb, kl, carried[i], prod));
                }
                scf::YieldOp::create(kb, kl, next);
              });
          for (int64_t i = 0; i < tm; ++i)
            vector::StoreOp::create(b, l, kLoop.getResult(i), out, outIdx[i]);
        });
    (void)parallel;
    rewriter.eraseOp(op);
  }
};

} // namespace
