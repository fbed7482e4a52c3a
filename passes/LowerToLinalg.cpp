//===- LowerToLinalg.cpp - kiln ops to linalg on tensors ------------------===//
//
// Every kiln primitive becomes one linalg.generic (or a tensor reshape /
// insert_slice); composite ops are first rewritten into primitives so that
// each scalar formula is written once.
//
//===----------------------------------------------------------------------===//
#include "dialects/kiln/KilnDialect.h"
#include "passes/Passes.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/IR/PatternMatch.h"
#include "mlir/Transforms/GreedyPatternRewriteDriver.h"
#include "llvm/ADT/TypeSwitch.h"

#include <cmath>

namespace kiln {
#define GEN_PASS_DEF_LOWERTOLINALG
#include "passes/Passes.h.inc"
} // namespace kiln

using namespace mlir;
using namespace kiln;

namespace {

RankedTensorType tensorTypeOf(Value v) {
  return cast<RankedTensorType>(v.getType());
}

Value emptyTensor(OpBuilder &b, Location loc, RankedTensorType type) {
  return tensor::EmptyOp::create(b, loc, type.getShape(),
                                 type.getElementType());
}

Value scalarConstant(OpBuilder &b, Location loc, Type type, double value) {
  if (auto ft = dyn_cast<FloatType>(type))
    return arith::ConstantOp::create(b, loc, type, b.getFloatAttr(ft, value));
  return arith::ConstantOp::create(
      b, loc, type, b.getIntegerAttr(type, static_cast<int64_t>(value)));
}

/// Indexing map reading `operand` inside a loop nest over `resultShape`
/// with numpy broadcasting (trailing dims aligned, size-1 dims pinned to 0).
AffineMap broadcastMap(MLIRContext *ctx, ArrayRef<int64_t> operandShape,
                       ArrayRef<int64_t> resultShape) {
  unsigned rank = resultShape.size();
  unsigned offset = rank - operandShape.size();
  SmallVector<AffineExpr> exprs;
  for (unsigned i = 0; i < operandShape.size(); ++i) {
    if (operandShape[i] == 1 && resultShape[offset + i] != 1)
      exprs.push_back(getAffineConstantExpr(0, ctx));
    else
      exprs.push_back(getAffineDimExpr(offset + i, ctx));
  }
  return AffineMap::get(rank, 0, exprs, ctx);
}

using ScalarFn =
    llvm::function_ref<Value(OpBuilder &, Location, ValueRange scalars)>;

/// A parallel linalg.generic producing `resultType` from broadcast operands.
Value buildElementwise(OpBuilder &b, Location loc, RankedTensorType resultType,
                       ValueRange operands, ScalarFn fn) {
  MLIRContext *ctx = b.getContext();
  SmallVector<AffineMap> maps;
  for (Value v : operands)
    maps.push_back(
        broadcastMap(ctx, tensorTypeOf(v).getShape(), resultType.getShape()));
  maps.push_back(b.getMultiDimIdentityMap(resultType.getRank()));
  SmallVector<utils::IteratorType> iters(resultType.getRank(),
                                         utils::IteratorType::parallel);
  auto generic = linalg::GenericOp::create(
      b, loc, TypeRange{resultType}, operands,
      ValueRange{emptyTensor(b, loc, resultType)}, maps, iters,
      [&](OpBuilder &nb, Location nloc, ValueRange args) {
        Value r = fn(nb, nloc, args.drop_back());
        linalg::YieldOp::create(nb, nloc, r);
      });
  return generic.getResult(0);
}

//===----------------------------------------------------------------------===//
// Scalar formulas
//===----------------------------------------------------------------------===//

bool isFloat(Type t) { return isa<FloatType>(t); }

Value castScalar(OpBuilder &b, Location loc, Value v, Type to) {
  Type from = v.getType();
  if (from == to)
    return v;
  if (to.isInteger(1)) {
    Value zero = scalarConstant(b, loc, from, 0);
    if (isFloat(from))
      return arith::CmpFOp::create(b, loc, arith::CmpFPredicate::UNE, v, zero);
    return arith::CmpIOp::create(b, loc, arith::CmpIPredicate::ne, v, zero);
  }
  if (isFloat(from) && isFloat(to)) {
    if (from.getIntOrFloatBitWidth() < to.getIntOrFloatBitWidth())
      return arith::ExtFOp::create(b, loc, to, v);
    return arith::TruncFOp::create(b, loc, to, v);
  }
  if (isFloat(from))
    return arith::FPToSIOp::create(b, loc, to, v);
  // Booleans are unsigned 0/1; every other integer here is signed.
  bool fromBool = from.isInteger(1);
  if (isFloat(to))
    return fromBool ? Value(arith::UIToFPOp::create(b, loc, to, v))
                    : Value(arith::SIToFPOp::create(b, loc, to, v));
  if (from.getIntOrFloatBitWidth() < to.getIntOrFloatBitWidth())
    return fromBool ? Value(arith::ExtUIOp::create(b, loc, to, v))
                    : Value(arith::ExtSIOp::create(b, loc, to, v));
  return arith::TruncIOp::create(b, loc, to, v);
}

Value sigmoid(OpBuilder &b, Location loc, Value x) {
  Type t = x.getType();
  Value one = scalarConstant(b, loc, t, 1.0);
  Value e = math::ExpOp::create(b, loc, arith::NegFOp::create(b, loc, x));
  return arith::DivFOp::create(b, loc, one, arith::AddFOp::create(b, loc, one, e));
}

/// The scalar body of a unary op; null when the element type is unsupported.
Value unaryScalar(Operation *op, OpBuilder &b, Location loc, Value x,
                  Type outType) {
  Type t = x.getType();
  bool f = isFloat(t);
  auto c = [&](double v) { return scalarConstant(b, loc, t, v); };
  return TypeSwitch<Operation *, Value>(op)
      .Case([&](NegOp) -> Value {
        return f ? Value(arith::NegFOp::create(b, loc, x))
                 : Value(arith::SubIOp::create(b, loc, c(0), x));
      })
      .Case([&](AbsOp) -> Value {
        return f ? Value(math::AbsFOp::create(b, loc, x))
                 : Value(math::AbsIOp::create(b, loc, x));
      })
      .Case([&](ReluOp) -> Value {
        return f ? Value(arith::MaximumFOp::create(b, loc, x, c(0)))
                 : Value(arith::MaxSIOp::create(b, loc, x, c(0)));
      })
      .Case([&](SignOp) -> Value {
        Value zero = c(0);
        Value pos, neg;
        if (f) {
          pos = arith::CmpFOp::create(b, loc, arith::CmpFPredicate::OGT, x, zero);
          neg = arith::CmpFOp::create(b, loc, arith::CmpFPredicate::OLT, x, zero);
        } else {
          pos = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::sgt, x, zero);
          neg = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::slt, x, zero);
        }
        Value r = arith::SelectOp::create(b, loc, neg, c(-1), zero);
        return arith::SelectOp::create(b, loc, pos, c(1), r);
      })
      .Case([&](NotOp) -> Value {
        return arith::XOrIOp::create(
            b, loc, x, arith::ConstantOp::create(b, loc, b.getBoolAttr(true)));
      })
      .Case([&](CastOp) -> Value { return castScalar(b, loc, x, outType); })
      .Case([&](ClipOp clip) -> Value {
        Value r = x;
        if (auto lo = clip.getMin())
          r = f ? Value(arith::MaximumFOp::create(b, loc, r, c(lo->convertToDouble())))
                : Value(arith::MaxSIOp::create(b, loc, r, c(lo->convertToDouble())));
        if (auto hi = clip.getMax())
          r = f ? Value(arith::MinimumFOp::create(b, loc, r, c(hi->convertToDouble())))
                : Value(arith::MinSIOp::create(b, loc, r, c(hi->convertToDouble())));
        return r;
      })
      .Default([&](Operation *) -> Value {
        if (!f)
          return nullptr;
        return TypeSwitch<Operation *, Value>(op)
            .Case([&](ExpOp) { return math::ExpOp::create(b, loc, x); })
            .Case([&](LogOp) { return math::LogOp::create(b, loc, x); })
            .Case([&](TanhOp) { return math::TanhOp::create(b, loc, x); })
            .Case([&](ErfOp) { return math::ErfOp::create(b, loc, x); })
            .Case([&](SqrtOp) { return math::SqrtOp::create(b, loc, x); })
            .Case([&](FloorOp) { return math::FloorOp::create(b, loc, x); })
            .Case([&](CeilOp) { return math::CeilOp::create(b, loc, x); })
            .Case([&](RoundOp) { return math::RoundEvenOp::create(b, loc, x); })
            .Case([&](SinOp) { return math::SinOp::create(b, loc, x); })
            .Case([&](CosOp) { return math::CosOp::create(b, loc, x); })
            .Case([&](SigmoidOp) { return sigmoid(b, loc, x); })
            .Case([&](ReciprocalOp) {
              return arith::DivFOp::create(b, loc, c(1), x);
            })
            .Case([&](SoftplusOp) -> Value {
              // log1p(exp(-|x|)) + max(x, 0) never overflows.
              Value ax = math::AbsFOp::create(b, loc, x);
              Value e = math::ExpOp::create(b, loc,
                                            arith::NegFOp::create(b, loc, ax));
              Value l = math::Log1pOp::create(b, loc, e);
              return arith::AddFOp::create(
                  b, loc, l, arith::MaximumFOp::create(b, loc, x, c(0)));
            })
            .Case([&](LeakyReluOp lr) -> Value {
              Value neg = arith::CmpFOp::create(b, loc,
                                                arith::CmpFPredicate::OLT, x, c(0));
              Value scaled = arith::MulFOp::create(
                  b, loc, x, c(lr.getAlpha().convertToFloat()));
              return arith::SelectOp::create(b, loc, neg, scaled, x);
            })
            .Case([&](EluOp elu) -> Value {
              Value neg = arith::CmpFOp::create(b, loc,
                                                arith::CmpFPredicate::OLT, x, c(0));
              Value em1 = math::ExpM1Op::create(b, loc, x);
              Value scaled = arith::MulFOp::create(
                  b, loc, em1, c(elu.getAlpha().convertToFloat()));
              return arith::SelectOp::create(b, loc, neg, scaled, x);
            })
            .Case([&](GeluOp gelu) -> Value {
              Value half = c(0.5), one = c(1.0);
              Value inner;
              if (gelu.getTanhApproximation()) {
                // 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
                Value x3 = arith::MulFOp::create(
                    b, loc, x, arith::MulFOp::create(b, loc, x, x));
                Value s = arith::AddFOp::create(
                    b, loc, x, arith::MulFOp::create(b, loc, c(0.044715), x3));
                inner = math::TanhOp::create(
                    b, loc,
                    arith::MulFOp::create(b, loc, c(std::sqrt(2.0 / M_PI)), s));
              } else {
                inner = math::ErfOp::create(
                    b, loc, arith::MulFOp::create(b, loc, x, c(M_SQRT1_2)));
              }
              Value hx = arith::MulFOp::create(b, loc, half, x);
              return arith::MulFOp::create(
                  b, loc, hx, arith::AddFOp::create(b, loc, one, inner));
            })
            .Default([](Operation *) { return Value(); });
      });
}

/// The scalar body of a binary op; null when the element type is unsupported.
Value binaryScalar(Operation *op, OpBuilder &b, Location loc, Value l,
                   Value r) {
  Type t = l.getType();
  bool f = isFloat(t);
  auto cmp = [&](arith::CmpFPredicate fp, arith::CmpIPredicate ip) -> Value {
    if (f)
      return arith::CmpFOp::create(b, loc, fp, l, r);
    return arith::CmpIOp::create(b, loc, ip, l, r);
  };
  using FP = arith::CmpFPredicate;
  using IP = arith::CmpIPredicate;
  return TypeSwitch<Operation *, Value>(op)
      .Case([&](AddOp) -> Value {
        return f ? Value(arith::AddFOp::create(b, loc, l, r))
                 : Value(arith::AddIOp::create(b, loc, l, r));
      })
      .Case([&](SubOp) -> Value {
        return f ? Value(arith::SubFOp::create(b, loc, l, r))
                 : Value(arith::SubIOp::create(b, loc, l, r));
      })
      .Case([&](MulOp) -> Value {
        return f ? Value(arith::MulFOp::create(b, loc, l, r))
                 : Value(arith::MulIOp::create(b, loc, l, r));
      })
      .Case([&](DivOp) -> Value {
        return f ? Value(arith::DivFOp::create(b, loc, l, r))
                 : Value(arith::DivSIOp::create(b, loc, l, r));
      })
      .Case([&](PowOp) -> Value {
        return f ? Value(math::PowFOp::create(b, loc, l, r))
                 : Value(math::IPowIOp::create(b, loc, l, r));
      })
      .Case([&](MaxOp) -> Value {
        return f ? Value(arith::MaximumFOp::create(b, loc, l, r))
                 : Value(arith::MaxSIOp::create(b, loc, l, r));
      })
      .Case([&](MinOp) -> Value {
        return f ? Value(arith::MinimumFOp::create(b, loc, l, r))
                 : Value(arith::MinSIOp::create(b, loc, l, r));
      })
      .Case([&](SwiGluOp) -> Value {
        if (!f)
          return Value();
        Value silu = arith::MulFOp::create(b, loc, l, sigmoid(b, loc, l));
        return arith::MulFOp::create(b, loc, silu, r);
      })
      .Case([&](FModOp) -> Value {
        return f ? Value(arith::RemFOp::create(b, loc, l, r))
                 : Value(arith::RemSIOp::create(b, loc, l, r));
      })
      .Case([&](ModOp) -> Value {
        if (f)
          return arith::RemFOp::create(b, loc, l, r);
        // Python's %: a nonzero remainder takes the divisor's sign.
        Value rem = arith::RemSIOp::create(b, loc, l, r);
        Value zero = arith::ConstantOp::create(b, loc, t, b.getIntegerAttr(t, 0));
        Value nonzero = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::ne, rem, zero);
        Value remNeg = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::slt, rem, zero);
        Value rNeg = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::slt, r, zero);
        Value differ = arith::XOrIOp::create(b, loc, remNeg, rNeg);
        Value fix = arith::AndIOp::create(b, loc, nonzero, differ);
        Value adjusted = arith::AddIOp::create(b, loc, rem, r);
        return arith::SelectOp::create(b, loc, fix, adjusted, rem);
      })
      .Case([&](AndOp) -> Value {
        return f ? Value() : Value(arith::AndIOp::create(b, loc, l, r));
      })
      .Case([&](OrOp) -> Value {
        return f ? Value() : Value(arith::OrIOp::create(b, loc, l, r));
      })
      .Case([&](XorOp) -> Value {
        return f ? Value() : Value(arith::XOrIOp::create(b, loc, l, r));
      })
      .Case([&](EqualOp) { return cmp(FP::OEQ, IP::eq); })
      .Case([&](LessOp) { return cmp(FP::OLT, IP::slt); })
      .Case([&](LessEqualOp) { return cmp(FP::OLE, IP::sle); })
      .Case([&](GreaterOp) { return cmp(FP::OGT, IP::sgt); })
      .Case([&](GreaterEqualOp) { return cmp(FP::OGE, IP::sge); })
      .Default([](Operation *) { return Value(); });
}

//===----------------------------------------------------------------------===//
// Patterns
//===----------------------------------------------------------------------===//

LogicalResult requireStatic(Operation *op, PatternRewriter &rewriter) {
  for (Type t : llvm::concat<Type>(op->getOperandTypes(), op->getResultTypes()))
    if (auto st = dyn_cast<ShapedType>(t); st && !st.hasStaticShape())
      return op->emitOpError("has a symbolic dim; bind it at compile time "
                             "(kiln-compile --dim NAME=VALUE)");
  return success();
}

template <typename OpTy>
struct UnaryLowering : OpRewritePattern<OpTy> {
  using OpRewritePattern<OpTy>::OpRewritePattern;
  LogicalResult matchAndRewrite(OpTy op,
                                PatternRewriter &rewriter) const override {
    if (failed(requireStatic(op, rewriter)))
      return failure();
    auto resultType = tensorTypeOf(op.getResult());
    bool ok = true;
    Value r = buildElementwise(
        rewriter, op.getLoc(), resultType, op->getOperands().take_front(1),
        [&](OpBuilder &b, Location loc, ValueRange s) -> Value {
          Value v = unaryScalar(op, b, loc, s[0], resultType.getElementType());
          if (!v) {
            ok = false;
            v = s[0];
          }
          return v;
        });
    if (!ok)
      return op.emitOpError("unsupported element type ")
             << tensorTypeOf(op->getOperand(0)).getElementType();
    rewriter.replaceOp(op, r);
    return success();
  }
};

template <typename OpTy>
struct BinaryLowering : OpRewritePattern<OpTy> {
  using OpRewritePattern<OpTy>::OpRewritePattern;
  LogicalResult matchAndRewrite(OpTy op,
                                PatternRewriter &rewriter) const override {
    if (failed(requireStatic(op, rewriter)))
      return failure();
    if (tensorTypeOf(op.getLhs()).getElementType() !=
        tensorTypeOf(op.getRhs()).getElementType())
      return op.emitOpError("operand element types differ");
    bool ok = true;
    Value r = buildElementwise(
        rewriter, op.getLoc(), tensorTypeOf(op.getResult()), op->getOperands(),
        [&](OpBuilder &b, Location loc, ValueRange s) -> Value {
          Value v = binaryScalar(op, b, loc, s[0], s[1]);
          if (!v) {
            ok = false;
            v = s[0];
          }
          return v;
        });
    if (!ok)
      return op.emitOpError("unsupported element type ")
             << tensorTypeOf(op.getLhs()).getElementType();
    rewriter.replaceOp(op, r);
    return success();
  }
};

/// x^2 and x^3 (GELU's tanh form, variance) as products: exact and
/// vectorizable, unlike powf.
struct SmallPowerToMul : OpRewritePattern<PowOp> {
  using OpRewritePattern::OpRewritePattern;
  LogicalResult matchAndRewrite(PowOp op,
                                PatternRewriter &rewriter) const override {
    auto c = op.getRhs().getDefiningOp<ConstantOp>();
    auto value = c ? dyn_cast<DenseFPElementsAttr>(c.getValue()) : nullptr;
    if (!value || !value.isSplat())
      return failure();
    double e = value.getSplatValue<APFloat>().convertToDouble();
    if (e != 2.0 && e != 3.0)
      return failure();
    auto t = tensorTypeOf(op.getResult());
    if (tensorTypeOf(op.getLhs()) != t)
      return failure();
    Value x = op.getLhs();
    Value r = MulOp::create(rewriter, op.getLoc(), t, x, x);
    if (e == 3.0)
      r = MulOp::create(rewriter, op.getLoc(), t, r, x);
    rewriter.replaceOp(op, r);
    return success();
  }
};

struct WhereLowering : OpRewritePattern<WhereOp> {
  using OpRewritePattern::OpRewritePattern;
  LogicalResult matchAndRewrite(WhereOp op,
                                PatternRewriter &rewriter) const override {
    if (failed(requireStatic(op, rewriter)))
      return failure();
    Value r = buildElementwise(
        rewriter, op.getLoc(), tensorTypeOf(op.getResult()), op->getOperands(),
        [&](OpBuilder &b, Location loc, ValueRange s) -> Value {
          return arith::SelectOp::create(b, loc, s[0], s[1], s[2]);
        });
    rewriter.replaceOp(op, r);
    return success();
  }
};

struct BroadcastLowering : OpRewritePattern<BroadcastOp> {
  using OpRewritePattern::OpRewritePattern;
  LogicalResult matchAndRewrite(BroadcastOp op,
                                PatternRewriter &rewriter) const override {
    if (failed(requireStatic(op, rewriter)))
      return failure();
    Value r = buildElementwise(
        rewriter, op.getLoc(), tensorTypeOf(op.getResult()), op->getOperands(),
        [](OpBuilder &, Location, ValueRange s) { return s[0]; });
    rewriter.replaceOp(op, r);
    return success();
  }
};

/// Identity value of a reduction, and its combiner.
struct ReduceKind {
  double init;
  Value (*combine)(OpBuilder &, Location, Value acc, Value x);
};

Value combineAdd(OpBuilder &b, Location loc, Value acc, Value x) {
  if (isFloat(x.getType()))
    return arith::AddFOp::create(b, loc, acc, x);
  return arith::AddIOp::create(b, loc, acc, x);
}
Value combineMul(OpBuilder &b, Location loc, Value acc, Value x) {
  if (isFloat(x.getType()))
    return arith::MulFOp::create(b, loc, acc, x);
  return arith::MulIOp::create(b, loc, acc, x);
}
Value combineMax(OpBuilder &b, Location loc, Value acc, Value x) {
  if (isFloat(x.getType()))
    return arith::MaximumFOp::create(b, loc, acc, x);
  return arith::MaxSIOp::create(b, loc, acc, x);
}
Value combineMin(OpBuilder &b, Location loc, Value acc, Value x) {
  if (isFloat(x.getType()))
    return arith::MinimumFOp::create(b, loc, acc, x);
  return arith::MinSIOp::create(b, loc, acc, x);
}

Value reductionInit(OpBuilder &b, Location loc, Type t, double init) {
  if (std::isinf(init) && !isFloat(t)) {
    unsigned w = t.getIntOrFloatBitWidth();
    APInt v = init > 0 ? APInt::getSignedMaxValue(w) : APInt::getSignedMinValue(w);
    return arith::ConstantOp::create(b, loc, t, b.getIntegerAttr(t, v));
  }
  return scalarConstant(b, loc, t, init);
}

/// Reduce `input` over `axes` into `resultType` (keepdims decided by the
/// result rank).
Value buildReduction(OpBuilder &b, Location loc, Value input,
                     ArrayRef<int64_t> axes, RankedTensorType resultType,
                     ReduceKind kind) {
  MLIRContext *ctx = b.getContext();
  auto inType = tensorTypeOf(input);
  int64_t rank = inType.getRank();
  bool keep = resultType.getRank() == rank;
  llvm::SmallDenseSet<int64_t> reduced(axes.begin(), axes.end());
  SmallVector<AffineExpr> outExprs;
  SmallVector<utils::IteratorType> iters;
  for (int64_t i = 0; i < rank; ++i) {
    if (reduced.contains(i)) {
      iters.push_back(utils::IteratorType::reduction);
      if (keep)
        outExprs.push_back(getAffineConstantExpr(0, ctx));
    } else {
      iters.push_back(utils::IteratorType::parallel);
      outExprs.push_back(getAffineDimExpr(i, ctx));
    }
  }
  Type et = resultType.getElementType();
  Value init = linalg::FillOp::create(
                   b, loc, reductionInit(b, loc, et, kind.init),
                   emptyTensor(b, loc, resultType))
                   .getResult(0);
  SmallVector<AffineMap> maps = {b.getMultiDimIdentityMap(rank),
                                 AffineMap::get(rank, 0, outExprs, ctx)};
  auto generic = linalg::GenericOp::create(
      b, loc, TypeRange{resultType}, ValueRange{input}, ValueRange{init}, maps,
      iters, [&](OpBuilder &nb, Location nloc, ValueRange args) {
        linalg::YieldOp::create(nb, nloc,
                                kind.combine(nb, nloc, args[1], args[0]));
      });
  return generic.getResult(0);
}

template <typename OpTy>
struct ReduceLowering : OpRewritePattern<OpTy> {
  ReduceLowering(MLIRContext *ctx, ReduceKind kind, bool mean)
      : OpRewritePattern<OpTy>(ctx), kind(kind), mean(mean) {}
  LogicalResult matchAndRewrite(OpTy op,
                                PatternRewriter &rewriter) const override {
    if (failed(requireStatic(op, rewriter)))
      return failure();
    Location loc = op.getLoc();
    auto resultType = tensorTypeOf(op.getResult());
    Value r = buildReduction(rewriter, loc, op.getInput(), op.getAxes(),
                             resultType, kind);
    if (mean) {
      int64_t count = 1;
      for (int64_t a : op.getAxes())
        count *= tensorTypeOf(op.getInput()).getDimSize(a);
      r = buildElementwise(
          rewriter, loc, resultType, ValueRange{r},
          [&](OpBuilder &b, Location l, ValueRange s) -> Value {
            Value n = scalarConstant(b, l, s[0].getType(), double(count));
            if (isFloat(s[0].getType()))
              return arith::DivFOp::create(b, l, s[0], n);
            return arith::DivSIOp::create(b, l, s[0], n);
          });
    }
    rewriter.replaceOp(op, r);
    return success();
  }
  ReduceKind kind;
  bool mean;
};

struct MatMulLowering : OpRewritePattern<MatMulOp> {
  using OpRewritePattern::OpRewritePattern;
  LogicalResult matchAndRewrite(MatMulOp op,
                                PatternRewriter &rewriter) const override {
    if (failed(requireStatic(op, rewriter)))
      return failure();
    MLIRContext *ctx = rewriter.getContext();
    Location loc = op.getLoc();
    auto resultType = tensorTypeOf(op.getResult());
    // Loops (batch..., m, k, n): with n innermost, the inner loop walks the
    // rhs and the output contiguously and vectorizes without reassociating
    // the reduction.
    int64_t rank = resultType.getRank();
    int64_t batch = rank - 2;
    AffineExpr m = getAffineDimExpr(batch, ctx);
    AffineExpr k = getAffineDimExpr(batch + 1, ctx);
    AffineExpr n = getAffineDimExpr(batch + 2, ctx);
    auto batchExprs = [&](RankedTensorType t) {
      SmallVector<AffineExpr> exprs;
      int64_t tb = t.getRank() - 2;
      for (int64_t i = 0; i < tb; ++i) {
        int64_t d = batch - tb + i;
        if (t.getDimSize(i) == 1 && resultType.getDimSize(d) != 1)
          exprs.push_back(getAffineConstantExpr(0, ctx));
        else
          exprs.push_back(getAffineDimExpr(d, ctx));
      }
      return exprs;
    };
    SmallVector<AffineExpr> lhsExprs = batchExprs(tensorTypeOf(op.getLhs()));
    lhsExprs.append({m, k});
    SmallVector<AffineExpr> rhsExprs = batchExprs(tensorTypeOf(op.getRhs()));
    rhsExprs.append({k, n});
    SmallVector<AffineExpr> outExprs;
    for (int64_t i = 0; i < batch; ++i)
      outExprs.push_back(getAffineDimExpr(i, ctx));
    outExprs.append({m, n});
    SmallVector<AffineMap> maps = {AffineMap::get(rank + 1, 0, lhsExprs, ctx),
                                   AffineMap::get(rank + 1, 0, rhsExprs, ctx),
                                   AffineMap::get(rank + 1, 0, outExprs, ctx)};
    SmallVector<utils::IteratorType> iters(rank + 1,
                                           utils::IteratorType::parallel);
    iters[batch + 1] = utils::IteratorType::reduction;
    Type et = resultType.getElementType();
    Value init = linalg::FillOp::create(rewriter, loc,
                                        scalarConstant(rewriter, loc, et, 0),
                                        emptyTensor(rewriter, loc, resultType))
                     .getResult(0);
    auto generic = linalg::GenericOp::create(
        rewriter, loc, TypeRange{resultType},
        ValueRange{op.getLhs(), op.getRhs()}, ValueRange{init}, maps, iters,
        [&](OpBuilder &b, Location l, ValueRange a) {
          linalg::YieldOp::create(
              b, l, combineAdd(b, l, a[2], combineMul(b, l, a[0], a[1])));
        });
    // Targets recognize their matmuls by this mark (the loop order above).
    generic->setAttr("kiln.matmul", rewriter.getUnitAttr());
    rewriter.replaceOp(op, generic.getResult(0));
    return success();
  }
};

struct TransposeLowering : OpRewritePattern<TransposeOp> {
  using OpRewritePattern::OpRewritePattern;
  LogicalResult matchAndRewrite(TransposeOp op,
                                PatternRewriter &rewriter) const override {
    if (failed(requireStatic(op, rewriter)))
      return failure();
    MLIRContext *ctx = rewriter.getContext();
    auto resultType = tensorTypeOf(op.getResult());
    ArrayRef<int64_t> perm = op.getPerm();
    // Result dim i reads input dim perm[i]: input dim j is loop inv[j].
    SmallVector<AffineExpr> exprs(perm.size());
    for (auto [i, p] : llvm::enumerate(perm))
      exprs[p] = getAffineDimExpr(i, ctx);
    SmallVector<AffineMap> maps = {
        AffineMap::get(perm.size(), 0, exprs, ctx),
        rewriter.getMultiDimIdentityMap(perm.size())};
    SmallVector<utils::IteratorType> iters(perm.size(),
                                           utils::IteratorType::parallel);
    auto generic = linalg::GenericOp::create(
        rewriter, op.getLoc(), TypeRange{resultType}, ValueRange{op.getInput()},
        ValueRange{emptyTensor(rewriter, op.getLoc(), resultType)}, maps, iters,
        [](OpBuilder &b, Location l, ValueRange a) {
          linalg::YieldOp::create(b, l, a[0]);
        });
    rewriter.replaceOp(op, generic.getResult(0));
    return success();
  }
};

struct SliceLowering : OpRewritePattern<SliceOp> {
  using OpRewritePattern::OpRewritePattern;
  LogicalResult matchAndRewrite(SliceOp op,
                                PatternRewriter &rewriter) const override {
    if (failed(requireStatic(op, rewriter)))
      return failure();
    MLIRContext *ctx = rewriter.getContext();
    Location loc = op.getLoc();
    auto inType = tensorTypeOf(op.getInput());
    auto resultType = tensorTypeOf(op.getResult());
    int64_t rank = resultType.getRank();
    if (static_cast<int64_t>(op.getStarts().size()) != rank ||
        static_cast<int64_t>(op.getSteps().size()) != rank)
      return op.emitOpError("needs one start and one step per dim");
    // A negative step reads the same elements as a positive one started at
    // the last element, in reverse: extract ascending, then flip those dims.
    SmallVector<int64_t> offsets, strides;
    SmallVector<AffineExpr> flip;
    bool anyFlip = false;
    for (int64_t i = 0; i < rank; ++i) {
      int64_t start = op.getStarts()[i], step = op.getSteps()[i];
      int64_t n = resultType.getDimSize(i);
      int64_t last = start + (n - 1) * step;
      if (n > 0 && (start < 0 || start >= inType.getDimSize(i) || last < 0 ||
                    last >= inType.getDimSize(i)))
        return op.emitOpError("reads out of bounds in dim ") << i;
      AffineExpr d = getAffineDimExpr(i, ctx);
      if (step < 0) {
        offsets.push_back(last);
        strides.push_back(-step);
        flip.push_back(getAffineConstantExpr(n - 1, ctx) - d);
        anyFlip = true;
      } else {
        offsets.push_back(start);
        strides.push_back(step);
        flip.push_back(d);
      }
    }
    Value v = tensor::ExtractSliceOp::create(rewriter, loc, resultType,
                                             op.getInput(), ValueRange{},
                                             ValueRange{}, ValueRange{}, offsets,
                                             resultType.getShape(), strides);
    if (anyFlip) {
      SmallVector<AffineMap> maps = {AffineMap::get(rank, 0, flip, ctx),
                                     rewriter.getMultiDimIdentityMap(rank)};
      SmallVector<utils::IteratorType> iters(rank,
                                             utils::IteratorType::parallel);
      v = linalg::GenericOp::create(
              rewriter, loc, TypeRange{resultType}, ValueRange{v},
              ValueRange{emptyTensor(rewriter, loc, resultType)}, maps, iters,
              [](OpBuilder &b, Location l, ValueRange a) {
                linalg::YieldOp::create(b, l, a[0]);
              })
              .getResult(0);
    }
    rewriter.replaceOp(op, v);
    return success();
  }
};

struct ReshapeLowering : OpRewritePattern<ReshapeOp> {
  using OpRewritePattern::OpRewritePattern;
  LogicalResult matchAndRewrite(ReshapeOp op,
                                PatternRewriter &rewriter) const override {
    if (failed(requireStatic(op, rewriter)))
      return failure();
    Location loc = op.getLoc();
    auto inType = tensorTypeOf(op.getInput());
    auto outType = tensorTypeOf(op.getResult());
    Value v = op.getInput();
    if (inType == outType) {
      rewriter.replaceOp(op, v);
      return success();
    }
    // Row-major reshape = collapse everything to 1-D, then expand.
    auto flat = RankedTensorType::get({inType.getNumElements()},
                                      inType.getElementType());
    auto all = [](int64_t rank) {
      SmallVector<ReassociationIndices> r;
      if (rank == 0)
        return r;
      ReassociationIndices one;
      for (int64_t i = 0; i < rank; ++i)
        one.push_back(i);
      r.push_back(one);
      return r;
    };
    if (inType.getRank() != 1)
      v = tensor::CollapseShapeOp::create(
          rewriter, loc, inType.getRank() == 0 ? outType : flat, v,
          all(inType.getRank()));
    if (inType.getRank() == 0) {
      // A scalar expands straight to the all-ones result shape.
      v = tensor::ExpandShapeOp::create(rewriter, loc, outType, op.getInput(),
                                        SmallVector<ReassociationIndices>{});
    } else if (outType.getRank() == 0) {
      v = tensor::CollapseShapeOp::create(rewriter, loc, outType, v,
                                          SmallVector<ReassociationIndices>{});
    } else if (outType.getRank() != 1) {
      v = tensor::ExpandShapeOp::create(rewriter, loc, outType, v,
                                        all(outType.getRank()));
    }
    rewriter.replaceOp(op, v);
    return success();
  }
};

struct ConcatLowering : OpRewritePattern<ConcatOp> {
  using OpRewritePattern::OpRewritePattern;
  LogicalResult matchAndRewrite(ConcatOp op,
                                PatternRewriter &rewriter) const override {
    if (failed(requireStatic(op, rewriter)))
      return failure();
    Location loc = op.getLoc();
    auto resultType = tensorTypeOf(op.getResult());
    int64_t axis = static_cast<int64_t>(op.getAxis());
    Value acc = emptyTensor(rewriter, loc, resultType);
    int64_t offset = 0;
    for (Value in : op.getInputs()) {
      auto t = tensorTypeOf(in);
      SmallVector<int64_t> offsets(t.getRank(), 0), strides(t.getRank(), 1);
      offsets[axis] = offset;
      acc = tensor::InsertSliceOp::create(rewriter, loc, in, acc, ValueRange{},
                                          ValueRange{}, ValueRange{}, offsets,
                                          t.getShape(), strides);
      offset += t.getDimSize(axis);
    }
    rewriter.replaceOp(op, acc);
    return success();
  }
};

struct GatherLowering : OpRewritePattern<GatherOp> {
  using OpRewritePattern::OpRewritePattern;
  LogicalResult matchAndRewrite(GatherOp op,
                                PatternRewriter &rewriter) const override {
    if (failed(requireStatic(op, rewriter)))
      return failure();
    MLIRContext *ctx = rewriter.getContext();
    Location loc = op.getLoc();
    auto inType = tensorTypeOf(op.getInput());
    auto idxType = tensorTypeOf(op.getIndices());
    auto resultType = tensorTypeOf(op.getResult());
    int64_t axis = static_cast<int64_t>(op.getAxis()),
            rank = resultType.getRank();
    int64_t idxRank = idxType.getRank();
    SmallVector<AffineExpr> idxExprs;
    for (int64_t i = 0; i < idxRank; ++i)
      idxExprs.push_back(getAffineDimExpr(axis + i, ctx));
    SmallVector<AffineMap> maps = {AffineMap::get(rank, 0, idxExprs, ctx),
                                   rewriter.getMultiDimIdentityMap(rank)};
    SmallVector<utils::IteratorType> iters(rank, utils::IteratorType::parallel);
    Value input = op.getInput();
    int64_t axisSize = inType.getDimSize(axis);
    auto generic = linalg::GenericOp::create(
        rewriter, loc, TypeRange{resultType}, ValueRange{op.getIndices()},
        ValueRange{emptyTensor(rewriter, loc, resultType)}, maps, iters,
        [&](OpBuilder &b, Location l, ValueRange a) {
          Value idx = arith::IndexCastOp::create(b, l, b.getIndexType(), a[0]);
          Value size = arith::ConstantIndexOp::create(b, l, axisSize);
          Value zero = arith::ConstantIndexOp::create(b, l, 0);
          Value neg = arith::CmpIOp::create(b, l, arith::CmpIPredicate::slt,
                                            idx, zero);
          idx = arith::SelectOp::create(
              b, l, neg, arith::AddIOp::create(b, l, idx, size), idx);
          // Out-of-range indices are clamped rather than read out of bounds.
          Value maxIdx = arith::ConstantIndexOp::create(b, l, axisSize - 1);
          idx = arith::MaxSIOp::create(b, l, idx, zero);
          idx = arith::MinSIOp::create(b, l, idx, maxIdx);
          SmallVector<Value> coords;
          for (int64_t i = 0; i < axis; ++i)
            coords.push_back(linalg::IndexOp::create(b, l, i));
          coords.push_back(idx);
          for (int64_t i = axis + 1; i < inType.getRank(); ++i)
            coords.push_back(linalg::IndexOp::create(b, l, i - 1 + idxRank));
          Value v = tensor::ExtractOp::create(b, l, input, coords);
          linalg::YieldOp::create(b, l, v);
        });
    rewriter.replaceOp(op, generic.getResult(0));
    return success();
  }
};

struct GatherElementsLowering : OpRewritePattern<GatherElementsOp> {
  using OpRewritePattern::OpRewritePattern;
  LogicalResult matchAndRewrite(GatherElementsOp op,
                                PatternRewriter &rewriter) const override {
    if (failed(requireStatic(op, rewriter)))
      return failure();
    auto inType = tensorTypeOf(op.getInput());
    auto resultType = tensorTypeOf(op.getResult());
    int64_t axis = static_cast<int64_t>(op.getAxis());
    int64_t axisSize = inType.getDimSize(axis);
    Value input = op.getInput();
    Value r = buildElementwise(
        rewriter, op.getLoc(), resultType, ValueRange{op.getIndices()},
        [&](OpBuilder &b, Location l, ValueRange s) -> Value {
          Value idx = arith::IndexCastOp::create(b, l, b.getIndexType(), s[0]);
          Value size = arith::ConstantIndexOp::create(b, l, axisSize);
          Value zero = arith::ConstantIndexOp::create(b, l, 0);
          Value neg = arith::CmpIOp::create(b, l, arith::CmpIPredicate::slt,
                                            idx, zero);
          idx = arith::SelectOp::create(
              b, l, neg, arith::AddIOp::create(b, l, idx, size), idx);
          idx = arith::MaxSIOp::create(b, l, idx, zero);
          idx = arith::MinSIOp::create(
              b, l, idx, arith::ConstantIndexOp::create(b, l, axisSize - 1));
          SmallVector<Value> coords;
          for (int64_t i = 0; i < inType.getRank(); ++i)
            coords.push_back(i == axis ? idx
                                       : Value(linalg::IndexOp::create(b, l, i)));
          return tensor::ExtractOp::create(b, l, input, coords);
        });
    rewriter.replaceOp(op, r);
    return success();
  }
};

/// arg_max / arg_min: one reduction carrying (best value, its index).
template <typename OpTy, bool IsMax>
struct ArgReduceLowering : OpRewritePattern<OpTy> {
  using OpRewritePattern<OpTy>::OpRewritePattern;
  LogicalResult matchAndRewrite(OpTy op,
                                PatternRewriter &rewriter) const override {
    if (failed(requireStatic(op, rewriter)))
      return failure();
    MLIRContext *ctx = rewriter.getContext();
    Location loc = op.getLoc();
    auto inType = tensorTypeOf(op.getInput());
    Type et = inType.getElementType();
    int64_t rank = inType.getRank();
    int64_t axis = static_cast<int64_t>(op.getAxis());
    bool keep = op.getKeepdims(), last = op.getSelectLastIndex();
    SmallVector<int64_t> redShape;
    SmallVector<AffineExpr> outExprs;
    SmallVector<utils::IteratorType> iters;
    for (int64_t i = 0; i < rank; ++i) {
      if (i == axis) {
        iters.push_back(utils::IteratorType::reduction);
        if (keep) {
          outExprs.push_back(getAffineConstantExpr(0, ctx));
          redShape.push_back(1);
        }
      } else {
        iters.push_back(utils::IteratorType::parallel);
        outExprs.push_back(getAffineDimExpr(i, ctx));
        redShape.push_back(inType.getDimSize(i));
      }
    }
    auto valType = RankedTensorType::get(redShape, et);
    auto idxType = RankedTensorType::get(redShape, rewriter.getI64Type());
    Value valInit = linalg::FillOp::create(
                        rewriter, loc,
                        reductionInit(rewriter, loc, et, IsMax ? -INFINITY : INFINITY),
                        emptyTensor(rewriter, loc, valType))
                        .getResult(0);
    Value idxInit = linalg::FillOp::create(
                        rewriter, loc, scalarConstant(rewriter, loc, rewriter.getI64Type(), -1),
                        emptyTensor(rewriter, loc, idxType))
                        .getResult(0);
    AffineMap outMap = AffineMap::get(rank, 0, outExprs, ctx);
    SmallVector<AffineMap> maps = {rewriter.getMultiDimIdentityMap(rank), outMap,
                                   outMap};
    auto generic = linalg::GenericOp::create(
        rewriter, loc, TypeRange{valType, idxType}, ValueRange{op.getInput()},
        ValueRange{valInit, idxInit}, maps, iters,
        [&](OpBuilder &b, Location l, ValueRange a) {
          Value x = a[0], best = a[1], bestIdx = a[2];
          Value i = arith::IndexCastOp::create(
              b, l, b.getI64Type(), linalg::IndexOp::create(b, l, axis));
          Value better;
          if (isFloat(et)) {
            auto strict = IsMax ? arith::CmpFPredicate::OGT : arith::CmpFPredicate::OLT;
            auto loose = IsMax ? arith::CmpFPredicate::OGE : arith::CmpFPredicate::OLE;
            better = arith::CmpFOp::create(b, l, last ? loose : strict, x, best);
          } else {
            auto strict = IsMax ? arith::CmpIPredicate::sgt : arith::CmpIPredicate::slt;
            auto loose = IsMax ? arith::CmpIPredicate::sge : arith::CmpIPredicate::sle;
            better = arith::CmpIOp::create(b, l, last ? loose : strict, x, best);
          }
          // The first element always wins (the init is only a sentinel).
          Value first = arith::CmpIOp::create(
              b, l, arith::CmpIPredicate::slt, bestIdx,
              arith::ConstantOp::create(b, l, b.getI64IntegerAttr(0)));
          Value take = arith::OrIOp::create(b, l, better, first);
          linalg::YieldOp::create(
              b, l,
              ValueRange{arith::SelectOp::create(b, l, take, x, best),
                         arith::SelectOp::create(b, l, take, i, bestIdx)});
        });
    rewriter.replaceOp(op, generic.getResult(1));
    return success();
  }
};

struct TriluLowering : OpRewritePattern<TriluOp> {
  using OpRewritePattern::OpRewritePattern;
  LogicalResult matchAndRewrite(TriluOp op,
                                PatternRewriter &rewriter) const override {
    if (failed(requireStatic(op, rewriter)))
      return failure();
    auto resultType = tensorTypeOf(op.getResult());
    int64_t rank = resultType.getRank();
    bool upper = op.getUpper();
    int64_t k = static_cast<int64_t>(op.getK());
    Value r = buildElementwise(
        rewriter, op.getLoc(), resultType, ValueRange{op.getInput()},
        [&](OpBuilder &b, Location l, ValueRange s) -> Value {
          Value i = linalg::IndexOp::create(b, l, rank - 2);
          Value j = linalg::IndexOp::create(b, l, rank - 1);
          Value diff = arith::SubIOp::create(b, l, j, i); // j - i
          Value kk = arith::ConstantIndexOp::create(b, l, k);
          Value keep = arith::CmpIOp::create(
              b, l, upper ? arith::CmpIPredicate::sge : arith::CmpIPredicate::sle,
              diff, kk);
          Value zero = scalarConstant(b, l, s[0].getType(), 0);
          return arith::SelectOp::create(b, l, keep, s[0], zero);
        });
    rewriter.replaceOp(op, r);
    return success();
  }
};

struct ConstantLowering : OpRewritePattern<ConstantOp> {
  using OpRewritePattern::OpRewritePattern;
  LogicalResult matchAndRewrite(ConstantOp op,
                                PatternRewriter &rewriter) const override {
    auto value = dyn_cast<DenseElementsAttr>(op.getValue());
    if (!value)
      return op.emitOpError("needs dense elements");
    rewriter.replaceOpWithNewOp<arith::ConstantOp>(op, value);
    return success();
  }
};

//===----------------------------------------------------------------------===//
// Decompositions of composite ops into kiln primitives
//===----------------------------------------------------------------------===//

RankedTensorType keepDimsType(RankedTensorType t, ArrayRef<int64_t> axes) {
  SmallVector<int64_t> shape(t.getShape());
  for (int64_t a : axes)
    shape[a] = 1;
  return RankedTensorType::get(shape, t.getElementType());
}

Value splat(OpBuilder &b, Location loc, Type elementType, double v) {
  auto t = RankedTensorType::get({}, elementType);
  Attribute a = isFloat(elementType)
                    ? Attribute(b.getFloatAttr(elementType, v))
                    : Attribute(b.getIntegerAttr(elementType, int64_t(v)));
  return ConstantOp::create(b, loc, t, DenseElementsAttr::get(t, a));
}

template <typename OpTy, bool Log>
struct SoftmaxDecomposition : OpRewritePattern<OpTy> {
  using OpRewritePattern<OpTy>::OpRewritePattern;
  LogicalResult matchAndRewrite(OpTy op,
                                PatternRewriter &rewriter) const override {
    Location loc = op.getLoc();
    Value x = op.getInput();
    auto t = tensorTypeOf(x);
    SmallVector<int64_t> axes = {static_cast<int64_t>(op.getAxis())};
    auto kt = keepDimsType(t, axes);
    BoolAttr keep = rewriter.getBoolAttr(true);
    DenseI64ArrayAttr axesAttr = rewriter.getDenseI64ArrayAttr(axes);
    Value mx = ReduceMaxOp::create(rewriter, loc, kt, x, axesAttr, keep);
    Value shifted = SubOp::create(rewriter, loc, t, x, mx);
    Value e = ExpOp::create(rewriter, loc, t, shifted);
    Value s = ReduceSumOp::create(rewriter, loc, kt, e, axesAttr, keep);
    Value r;
    if (Log)
      r = SubOp::create(rewriter, loc, t, shifted,
                        LogOp::create(rewriter, loc, kt, s));
    else
      r = DivOp::create(rewriter, loc, t, e, s);
    rewriter.replaceOp(op, r);
    return success();
  }
};

struct LayerNormDecomposition : OpRewritePattern<LayerNormOp> {
  using OpRewritePattern::OpRewritePattern;
  LogicalResult matchAndRewrite(LayerNormOp op,
                                PatternRewriter &rewriter) const override {
    Location loc = op.getLoc();
    Value x = op.getInput();
    auto t = tensorTypeOf(x);
    SmallVector<int64_t> axes;
    for (int64_t i = static_cast<int64_t>(op.getAxis()); i < t.getRank(); ++i)
      axes.push_back(i);
    auto kt = keepDimsType(t, axes);
    BoolAttr keep = rewriter.getBoolAttr(true);
    DenseI64ArrayAttr axesAttr = rewriter.getDenseI64ArrayAttr(axes);
    Type et = t.getElementType();
    Value mean = ReduceMeanOp::create(rewriter, loc, kt, x, axesAttr, keep);
    Value d = SubOp::create(rewriter, loc, t, x, mean);
    Value var = ReduceMeanOp::create(rewriter, loc, kt,
                                     MulOp::create(rewriter, loc, t, d, d),
                                     axesAttr, keep);
    Value eps = splat(rewriter, loc, et, op.getEpsilon().convertToFloat());
    Value stdev = SqrtOp::create(rewriter, loc, kt,
                                 AddOp::create(rewriter, loc, kt, var, eps));
    Value r = DivOp::create(rewriter, loc, t, d, stdev);
    r = MulOp::create(rewriter, loc, t, r, op.getScale());
    if (op.getBias())
      r = AddOp::create(rewriter, loc, t, r, op.getBias());
    rewriter.replaceOp(op, r);
    return success();
  }
};

struct RmsNormDecomposition : OpRewritePattern<RmsNormOp> {
  using OpRewritePattern::OpRewritePattern;
  LogicalResult matchAndRewrite(RmsNormOp op,
                                PatternRewriter &rewriter) const override {
    Location loc = op.getLoc();
    Value x = op.getInput();
    auto t = tensorTypeOf(x);
    SmallVector<int64_t> axes = {t.getRank() - 1};
    auto kt = keepDimsType(t, axes);
    Type et = t.getElementType();
    Value sq = MulOp::create(rewriter, loc, t, x, x);
    Value mean = ReduceMeanOp::create(rewriter, loc, kt, sq,
                                      rewriter.getDenseI64ArrayAttr(axes),
                                      rewriter.getBoolAttr(true));
    Value eps = splat(rewriter, loc, et, op.getEpsilon().convertToFloat());
    Value inv = ReciprocalOp::create(
        rewriter, loc, kt,
        SqrtOp::create(rewriter, loc, kt,
                       AddOp::create(rewriter, loc, kt, mean, eps)));
    Value r = MulOp::create(rewriter, loc, t, x, inv);
    rewriter.replaceOpWithNewOp<MulOp>(op, t, r, op.getScale());
    return success();
  }
};

/// RoPE as kiln primitives: x * cos + concat(-x2, x1) * sin.
struct RopeDecomposition : OpRewritePattern<RopeOp> {
  using OpRewritePattern::OpRewritePattern;
  LogicalResult matchAndRewrite(RopeOp op,
                                PatternRewriter &rewriter) const override {
    Location loc = op.getLoc();
    auto t = tensorTypeOf(op.getInput());
    int64_t rank = t.getRank(), d = t.getShape().back();
    SmallVector<int64_t> halfShape(t.getShape());
    halfShape.back() = d / 2;
    auto ht = RankedTensorType::get(halfShape, t.getElementType());
    SmallVector<int64_t> start(rank, 0), steps(rank, 1);
    Value x1 = SliceOp::create(rewriter, loc, ht, op.getInput(), start, steps);
    start.back() = d / 2;
    Value x2 = SliceOp::create(rewriter, loc, ht, op.getInput(), start, steps);
    Value rotated = ConcatOp::create(
        rewriter, loc, t, ValueRange{NegOp::create(rewriter, loc, ht, x2), x1},
        rewriter.getI64IntegerAttr(rank - 1));
    Value a = MulOp::create(rewriter, loc, t, op.getInput(), op.getCos());
    Value b = MulOp::create(rewriter, loc, t, rotated, op.getSin());
    rewriter.replaceOpWithNewOp<AddOp>(op, t, a, b);
    return success();
  }
};

/// Attention as kiln primitives: grouped heads repeated, q k^T, scale,
/// soft-cap, mask, causal/window masking, softmax, times v.
struct AttentionDecomposition : OpRewritePattern<AttentionOp> {
  using OpRewritePattern::OpRewritePattern;
  LogicalResult matchAndRewrite(AttentionOp op,
                                PatternRewriter &rewriter) const override {
    if (failed(requireStatic(op, rewriter)))
      return failure();
    Location loc = op.getLoc();
    auto qt = tensorTypeOf(op.getQ());
    Type et = qt.getElementType();
    int64_t b = qt.getDimSize(0), hq = qt.getDimSize(1), s = qt.getDimSize(2);
    auto repeatHeads = [&](Value kv) -> Value {
      auto t = tensorTypeOf(kv);
      int64_t hkv = t.getDimSize(1), l = t.getDimSize(2), d = t.getDimSize(3);
      if (hkv == hq)
        return kv;
      int64_t g = hq / hkv;
      Value r = ReshapeOp::create(
          rewriter, loc, RankedTensorType::get({b, hkv, 1, l, d}, et), kv);
      r = BroadcastOp::create(
          rewriter, loc, RankedTensorType::get({b, hkv, g, l, d}, et), r);
      return ReshapeOp::create(rewriter, loc,
                               RankedTensorType::get({b, hq, l, d}, et), r);
    };
    Value k = repeatHeads(op.getK()), v = repeatHeads(op.getV());
    auto kt = tensorTypeOf(k);
    int64_t l = kt.getDimSize(2), d = kt.getDimSize(3);
    Value kT = TransposeOp::create(
        rewriter, loc, RankedTensorType::get({b, hq, d, l}, et), k,
        ArrayRef<int64_t>{0, 1, 3, 2});
    auto st = RankedTensorType::get({b, hq, s, l}, et);
    Value scores = MatMulOp::create(rewriter, loc, st, op.getQ(), kT);
    float scale = op.getScale().convertToFloat();
    if (scale != 1.0f)
      scores = MulOp::create(rewriter, loc, st, scores,
                             splat(rewriter, loc, et, scale));
    // Soft-capping, before the mask (a masked -inf must stay -inf).
    if (float cap = op.getSoftcap().convertToFloat(); cap > 0) {
      Value t = TanhOp::create(
          rewriter, loc, st,
          DivOp::create(rewriter, loc, st, scores, splat(rewriter, loc, et, cap)));
      scores = MulOp::create(rewriter, loc, st, t, splat(rewriter, loc, et, cap));
    }
    if (op.getMask())
      scores = AddOp::create(rewriter, loc, st, scores, op.getMask());
    int64_t window = op.getWindow(), sinks = op.getSinks();
    if (op.getCausal() || window > 0) {
      // Query i is position i + (l - s) of the keys.
      SmallVector<bool> keep;
      for (int64_t i = 0; i < s; ++i)
        for (int64_t j = 0; j < l; ++j) {
          int64_t pos = i + (l - s);
          bool visible = !op.getCausal() || j <= pos;
          if (window > 0)
            visible = visible && (pos - j < window || j < sinks);
          keep.push_back(visible);
        }
      auto mt = RankedTensorType::get({s, l}, rewriter.getI1Type());
      Value m = ConstantOp::create(rewriter, loc, mt,
                                   DenseElementsAttr::get(mt, keep));
      scores = WhereOp::create(rewriter, loc, st, m, scores,
                               splat(rewriter, loc, et, -INFINITY));
    }
    Value probs = SoftmaxOp::create(rewriter, loc, st, scores,
                                    rewriter.getI64IntegerAttr(3));
    rewriter.replaceOpWithNewOp<MatMulOp>(op, op.getType(), probs, v);
    return success();
  }
};

struct LowerToLinalgPass
    : kiln::impl::LowerToLinalgBase<LowerToLinalgPass> {
  void runOnOperation() override {
    MLIRContext *ctx = &getContext();
    RewritePatternSet patterns(ctx);
    // Benefit 2: tried before the generic pow lowering.
    patterns.add<SmallPowerToMul>(ctx, /*benefit=*/2);
    patterns.add<SoftmaxDecomposition<SoftmaxOp, false>,
                 SoftmaxDecomposition<LogSoftmaxOp, true>,
                 LayerNormDecomposition, RmsNormDecomposition,
                 RopeDecomposition, AttentionDecomposition>(ctx);
    patterns.add<UnaryLowering<NegOp>, UnaryLowering<AbsOp>,
                 UnaryLowering<ExpOp>, UnaryLowering<LogOp>,
                 UnaryLowering<TanhOp>, UnaryLowering<ErfOp>,
                 UnaryLowering<SigmoidOp>, UnaryLowering<ReluOp>,
                 UnaryLowering<SqrtOp>, UnaryLowering<ReciprocalOp>,
                 UnaryLowering<NotOp>, UnaryLowering<FloorOp>,
                 UnaryLowering<CeilOp>, UnaryLowering<SinOp>,
                 UnaryLowering<CosOp>, UnaryLowering<SignOp>,
                 UnaryLowering<SoftplusOp>, UnaryLowering<CastOp>,
                 UnaryLowering<LeakyReluOp>, UnaryLowering<EluOp>,
                 UnaryLowering<GeluOp>, UnaryLowering<ClipOp>,
                 UnaryLowering<RoundOp>>(ctx);
    patterns.add<BinaryLowering<AddOp>, BinaryLowering<SubOp>,
                 BinaryLowering<MulOp>, BinaryLowering<DivOp>,
                 BinaryLowering<PowOp>, BinaryLowering<MaxOp>,
                 BinaryLowering<MinOp>, BinaryLowering<AndOp>,
                 BinaryLowering<OrOp>, BinaryLowering<XorOp>,
                 BinaryLowering<EqualOp>, BinaryLowering<LessOp>,
                 BinaryLowering<LessEqualOp>, BinaryLowering<GreaterOp>,
                 BinaryLowering<GreaterEqualOp>, BinaryLowering<ModOp>,
                 BinaryLowering<FModOp>, BinaryLowering<SwiGluOp>>(ctx);
    patterns.add<WhereLowering, BroadcastLowering, MatMulLowering,
                 TransposeLowering, SliceLowering, ReshapeLowering,
                 ConcatLowering, GatherLowering, TriluLowering,
                 ConstantLowering, GatherElementsLowering,
                 ArgReduceLowering<ArgMaxOp, true>,
                 ArgReduceLowering<ArgMinOp, false>>(ctx);
    patterns.add<ReduceLowering<ReduceSumOp>>(ctx, ReduceKind{0, combineAdd},
                                              false);
    patterns.add<ReduceLowering<ReduceMeanOp>>(ctx, ReduceKind{0, combineAdd},
                                               true);
    patterns.add<ReduceLowering<ReduceProdOp>>(ctx, ReduceKind{1, combineMul},
                                               false);
    patterns.add<ReduceLowering<ReduceMaxOp>>(
        ctx, ReduceKind{-INFINITY, combineMax}, false);
    patterns.add<ReduceLowering<ReduceMinOp>>(
        ctx, ReduceKind{INFINITY, combineMin}, false);

    if (failed(applyPatternsGreedily(getOperation(), std::move(patterns))))
      return signalPassFailure();
    // A pattern that declined has already said why at the op.
    WalkResult left = getOperation().walk([](Operation *op) {
      // Weights become arguments; the paged-cache and quantized ops lower
      // while bufferizing (dialects/kiln/BufferizableOpInterfaceImpl.cpp).
      if (isa<KilnDialect>(op->getDialect()) &&
          !isa<WeightOp, KvStoreOp, PagedAttentionOp, QuantMatMulOp,
               QuantGatherOp>(op))
        return WalkResult::interrupt();
      return WalkResult::advance();
    });
    if (left.wasInterrupted())
      signalPassFailure();
  }
};

} // namespace
