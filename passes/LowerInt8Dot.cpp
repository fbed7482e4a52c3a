//===- LowerInt8Dot.cpp - kiln's byte ops to the CPU's instructions -------===//
#include "passes/Passes.h"

#include "dialects/kiln/KilnDialect.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/LLVMIR/LLVMDialect.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/Vector/IR/VectorOps.h"
#include "mlir/IR/PatternMatch.h"

namespace kiln {
#define GEN_PASS_DEF_LOWERINT8DOT
#include "passes/Passes.h.inc"
} // namespace kiln

using namespace mlir;

namespace {

/// x86: vpdpbusd ("vnni") or vpmaddubsw then vpmaddwd against ones
/// ("avx2"), both unsigned bytes times signed bytes. A signed lhs goes in
/// as |lhs| with its sign moved onto rhs (vpsignb), llama.cpp's trick:
/// |lhs| <= 128 and |rhs| <= 127 keep vpmaddubsw's saturating pair sums
/// exact.
Value lowerX86(OpBuilder &b, Location loc, kiln::Dot4I8Op op, bool vnni) {
  Value w = op.getLhs(), x = op.getRhs();
  auto v32i8 = cast<VectorType>(w.getType());
  auto v8i32 = op.getType();
  auto call = [&](Type t, StringRef name, ValueRange args) {
    return LLVM::CallIntrinsicOp::create(b, loc, t, b.getStringAttr(name), args)
        .getResult(0);
  };
  if (!op.getLhsNonnegative()) {
    x = call(v32i8, "llvm.x86.avx2.psign.b", {x, w});
    w = math::AbsIOp::create(b, loc, w);
  }
  if (vnni) {
    Value zero = arith::ConstantOp::create(
        b, loc, v8i32, DenseElementsAttr::get(v8i32, b.getI32IntegerAttr(0)));
    return call(v8i32, "llvm.x86.avx512.vpdpbusd.256", {zero, w, x});
  }
  auto v16i16 = VectorType::get({16}, b.getI16Type());
  Value pairs = call(v16i16, "llvm.x86.avx2.pmadd.ub.sw", {w, x});
  Value ones = arith::ConstantOp::create(
      b, loc, v16i16, DenseElementsAttr::get(v16i16, b.getI16IntegerAttr(1)));
  return call(v8i32, "llvm.x86.avx2.pmadd.wd", {pairs, ones});
}

/// Anywhere: widen to i32, multiply, add the four lanes of each group.
Value lowerGeneric(OpBuilder &b, Location loc, kiln::Dot4I8Op op) {
  auto v32i32 = VectorType::get({32}, b.getI32Type());
  Value p = arith::MulIOp::create(
      b, loc, arith::ExtSIOp::create(b, loc, v32i32, op.getLhs()),
      arith::ExtSIOp::create(b, loc, v32i32, op.getRhs()));
  Value sum;
  for (int64_t k = 0; k < 4; ++k) {
    SmallVector<int64_t> lanes;
    for (int64_t i = 0; i < 8; ++i)
      lanes.push_back(4 * i + k);
    Value part = vector::ShuffleOp::create(b, loc, p, p, lanes);
    sum = sum ? arith::AddIOp::create(b, loc, sum, part).getResult() : part;
  }
  return sum;
}

struct LowerInt8DotPass : kiln::impl::LowerInt8DotBase<LowerInt8DotPass> {
  void runOnOperation() override {
    ModuleOp module = getOperation();
    auto kind = module->getAttrOfType<StringAttr>("kiln.int8_dot");
    if (kind && kind.getValue() != "vnni" && kind.getValue() != "avx2") {
      module.emitError() << "kiln.int8_dot must be \"vnni\" or \"avx2\", not \""
                         << kind.getValue() << "\"";
      return signalPassFailure();
    }
    IRRewriter rewriter(&getContext());
    module.walk([&](kiln::Dot4I8Op op) {
      rewriter.setInsertionPoint(op);
      Value r = kind ? lowerX86(rewriter, op.getLoc(), op, kind.getValue() == "vnni")
                     : lowerGeneric(rewriter, op.getLoc(), op);
      rewriter.replaceOp(op, r);
    });
    // Table lookups: pshufb (SSSE3, which every AVX2 CPU has) takes the
    // index's low 4 bits when its top bit is clear, as here.
    module.walk([&](kiln::Table16I8Op op) {
      rewriter.setInsertionPoint(op);
      Location loc = op.getLoc();
      Value r;
      if (kind) {
        auto type = cast<VectorType>(op.getType());
        Value table = arith::ConstantOp::create(
            rewriter, loc, type,
            DenseElementsAttr::get(type, ArrayRef<int8_t>(op.getTable())));
        r = LLVM::CallIntrinsicOp::create(
                rewriter, loc, type,
                rewriter.getStringAttr("llvm.x86.ssse3.pshuf.b.128"),
                ValueRange{table, op.getIndices()})
                .getResult(0);
      } else {
        r = kiln::buildTableLookup(rewriter, loc, op.getTable(), op.getIndices());
      }
      rewriter.replaceOp(op, r);
    });
  }
};

} // namespace
