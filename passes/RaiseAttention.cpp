//===- RaiseAttention.cpp - kiln.attention and kiln.rms_norm from parts ---===//
#include "dialects/kiln/KilnDialect.h"
#include "passes/Passes.h"

#include "mlir/IR/Matchers.h"
#include "mlir/IR/PatternMatch.h"
#include "mlir/Transforms/GreedyPatternRewriteDriver.h"

namespace kiln {
#define GEN_PASS_DEF_RAISEATTENTION
#include "passes/Passes.h.inc"
} // namespace kiln

using namespace mlir;
using namespace kiln;

namespace {

/// The value of a splat float constant of any shape with one element.
std::optional<double> scalarConstant(Value v) {
  auto c = v.getDefiningOp<ConstantOp>();
  if (!c)
    return std::nullopt;
  auto attr = dyn_cast<DenseFPElementsAttr>(c.getValue());
  if (!attr || !attr.isSplat() || attr.getNumElements() != 1)
    return std::nullopt;
  return attr.getSplatValue<APFloat>().convertToDouble();
}

int64_t rankOf(Value v) { return cast<RankedTensorType>(v.getType()).getRank(); }

/// matmul(softmax(add?(mul|div?(matmul(q, kT), c), mask)), v)
struct RaiseAttentionPattern : OpRewritePattern<MatMulOp> {
  using OpRewritePattern::OpRewritePattern;
  LogicalResult matchAndRewrite(MatMulOp pv,
                                PatternRewriter &rewriter) const override {
    auto softmax = pv.getLhs().getDefiningOp<SoftmaxOp>();
    if (!softmax || !softmax->hasOneUse() || rankOf(pv.getLhs()) != 4 ||
        softmax.getAxis() != 3)
      return failure();
    Value scores = softmax.getInput();
    Value mask;
    if (auto add = scores.getDefiningOp<AddOp>()) {
      if (!add->hasOneUse())
        return failure();
      // The mask is whichever operand does not come from the q.k product.
      Value l = add.getLhs(), r = add.getRhs();
      bool lhsIsScores = l.getDefiningOp<MatMulOp>() || l.getDefiningOp<MulOp>() ||
                         l.getDefiningOp<DivOp>();
      scores = lhsIsScores ? l : r;
      mask = lhsIsScores ? r : l;
    }
    double scale = 1.0;
    if (auto mul = scores.getDefiningOp<MulOp>()) {
      auto c = scalarConstant(mul.getRhs());
      if (!c || !mul->hasOneUse())
        return failure();
      scale = *c;
      scores = mul.getLhs();
    } else if (auto div = scores.getDefiningOp<DivOp>()) {
      auto c = scalarConstant(div.getRhs());
      if (!c || *c == 0 || !div->hasOneUse())
        return failure();
      scale = 1.0 / *c;
      scores = div.getLhs();
    }
    auto qk = scores.getDefiningOp<MatMulOp>();
    if (!qk || !qk->hasOneUse() || rankOf(qk.getLhs()) != 4 ||
        rankOf(qk.getRhs()) != 4 || rankOf(pv.getRhs()) != 4)
      return failure();
    if (mask && cast<RankedTensorType>(mask.getType()).getElementType() !=
                    cast<RankedTensorType>(scores.getType()).getElementType())
      return failure();
    Location loc = pv.getLoc();
    auto kT = cast<RankedTensorType>(qk.getRhs().getType());
    auto kType = RankedTensorType::get(
        {kT.getDimSize(0), kT.getDimSize(1), kT.getDimSize(3), kT.getDimSize(2)},
        kT.getElementType());
    Value k = TransposeOp::create(rewriter, loc, kType, qk.getRhs(),
                                  ArrayRef<int64_t>{0, 1, 3, 2});
    rewriter.replaceOpWithNewOp<AttentionOp>(
        pv, pv.getType(), qk.getLhs(), k, pv.getRhs(), mask,
        rewriter.getF32FloatAttr(static_cast<float>(scale)),
        rewriter.getBoolAttr(false), rewriter.getI64IntegerAttr(0),
        rewriter.getI64IntegerAttr(0), rewriter.getF32FloatAttr(0.0f));
    return success();
  }
};

/// x * reciprocal(sqrt(mean(x^2) + eps)) * w, or x / sqrt(...) * w.
struct RaiseRmsNormPattern : OpRewritePattern<MulOp> {
  using OpRewritePattern::OpRewritePattern;

  /// The x of `x * (1 / sqrt(mean(x*x) + eps))`, and eps.
  static std::optional<std::pair<Value, double>> normalized(Value v) {
    Value x, denom;
    if (auto div = v.getDefiningOp<DivOp>()) {
      x = div.getLhs();
      denom = div.getRhs();
    } else if (auto mul = v.getDefiningOp<MulOp>()) {
      // x * reciprocal(d), or x * (1 / d) as HF Llama's torch.rsqrt exports.
      for (auto [a, b] : {std::pair{mul.getLhs(), mul.getRhs()},
                          std::pair{mul.getRhs(), mul.getLhs()}}) {
        if (auto rec = b.getDefiningOp<ReciprocalOp>()) {
          x = a;
          denom = rec.getInput();
        } else if (auto inv = b.getDefiningOp<DivOp>();
                   inv && scalarConstant(inv.getLhs()) == 1.0) {
          x = a;
          denom = inv.getRhs();
        }
      }
    }
    if (!x)
      return std::nullopt;
    auto sqrt = denom.getDefiningOp<SqrtOp>();
    auto add = sqrt ? sqrt.getInput().getDefiningOp<AddOp>() : AddOp();
    if (!add)
      return std::nullopt;
    auto eps = scalarConstant(add.getRhs());
    auto mean = add.getLhs().getDefiningOp<ReduceMeanOp>();
    int64_t rank = rankOf(x);
    if (!eps || !mean || !mean.getKeepdims() || mean.getAxes().size() != 1 ||
        mean.getAxes()[0] != rank - 1)
      return std::nullopt;
    Value sq = mean.getInput();
    bool squares = false;
    if (auto m = sq.getDefiningOp<MulOp>())
      squares = m.getLhs() == x && m.getRhs() == x;
    else if (auto p = sq.getDefiningOp<PowOp>())
      squares = p.getLhs() == x && scalarConstant(p.getRhs()) == 2.0;
    if (!squares)
      return std::nullopt;
    return std::make_pair(x, *eps);
  }

  LogicalResult matchAndRewrite(MulOp op,
                                PatternRewriter &rewriter) const override {
    for (auto [normed, weight] : {std::pair{op.getLhs(), op.getRhs()},
                                  std::pair{op.getRhs(), op.getLhs()}}) {
      auto found = normalized(normed);
      if (!found || !normed.hasOneUse())
        continue;
      auto [x, eps] = *found;
      auto wType = cast<RankedTensorType>(weight.getType());
      int64_t last = cast<RankedTensorType>(x.getType()).getShape().back();
      if (wType.getRank() != 1 || wType.getDimSize(0) != last ||
          op.getType() != x.getType())
        continue;
      rewriter.replaceOpWithNewOp<RmsNormOp>(
          op, op.getType(), x, weight,
          rewriter.getF32FloatAttr(static_cast<float>(eps)));
      return success();
    }
    return failure();
  }
};

/// x * cos + concat(-x[..., D/2:], x[..., :D/2]) * sin (HF's rotate_half).
struct RaiseRopePattern : OpRewritePattern<AddOp> {
  using OpRewritePattern::OpRewritePattern;

  /// The x of `concat(neg(slice(x, D/2..D)), slice(x, 0..D/2))`.
  static Value rotateHalfOf(Value v) {
    auto cat = v.getDefiningOp<ConcatOp>();
    if (!cat || cat.getInputs().size() != 2)
      return nullptr;
    auto neg = cat.getInputs()[0].getDefiningOp<NegOp>();
    auto hi = neg ? neg.getInput().getDefiningOp<SliceOp>() : SliceOp();
    auto lo = cat.getInputs()[1].getDefiningOp<SliceOp>();
    if (!hi || !lo || hi.getInput() != lo.getInput())
      return nullptr;
    Value x = lo.getInput();
    auto t = cast<RankedTensorType>(x.getType());
    int64_t rank = t.getRank(), d = t.getShape().back();
    if (cat.getAxis() != rank - 1 || cat.getType() != t || d % 2)
      return nullptr;
    auto isHalf = [&](SliceOp s, int64_t first) {
      ArrayRef<int64_t> starts = s.getStarts(), steps = s.getSteps();
      auto st = cast<RankedTensorType>(s.getType());
      for (int64_t i = 0; i < rank; ++i)
        if (steps[i] != 1 || starts[i] != (i == rank - 1 ? first : 0) ||
            st.getDimSize(i) != (i == rank - 1 ? d / 2 : t.getDimSize(i)))
          return false;
      return true;
    };
    return isHalf(lo, 0) && isHalf(hi, d / 2) ? x : nullptr;
  }

  LogicalResult matchAndRewrite(AddOp op,
                                PatternRewriter &rewriter) const override {
    auto m1 = op.getLhs().getDefiningOp<MulOp>();
    auto m2 = op.getRhs().getDefiningOp<MulOp>();
    if (!m1 || !m2)
      return failure();
    for (auto [a, b] : {std::pair{m1, m2}, std::pair{m2, m1}}) {
      // a = x * cos, b = rotate_half(x) * sin (either operand order).
      for (auto [bx, sin] : {std::pair{b.getLhs(), b.getRhs()},
                             std::pair{b.getRhs(), b.getLhs()}}) {
        Value x = rotateHalfOf(bx);
        if (!x || op.getType() != x.getType())
          continue;
        Value cos = a.getLhs() == x ? a.getRhs()
                    : a.getRhs() == x ? a.getLhs() : Value();
        auto full = [&](Value c) {
          auto ct = cast<RankedTensorType>(c.getType());
          auto xt = cast<RankedTensorType>(x.getType());
          return ct.getRank() <= xt.getRank() &&
                 ct.getShape().back() == xt.getShape().back();
        };
        if (!cos || !full(cos) || !full(sin))
          continue;
        rewriter.replaceOpWithNewOp<RopeOp>(op, op.getType(), x, cos, sin);
        return success();
      }
    }
    return failure();
  }
};

/// The MLP's gate: `(g * sigmoid(g)) * u` (either operand order at both
/// multiplies; SiLU exports as x * sigmoid(x)) becomes kiln.swiglu(g, u)
/// when g, u and the result share one type (no broadcast).
struct RaiseSwiGluPattern : OpRewritePattern<MulOp> {
  using OpRewritePattern::OpRewritePattern;

  /// The x of `x * sigmoid(x)`, or null.
  static Value siluInput(Value v) {
    auto mul = v.getDefiningOp<MulOp>();
    if (!mul)
      return {};
    for (auto [a, s] : {std::pair{mul.getLhs(), mul.getRhs()},
                        std::pair{mul.getRhs(), mul.getLhs()}})
      if (auto sig = s.getDefiningOp<SigmoidOp>(); sig && sig.getInput() == a)
        return a;
    return {};
  }

  LogicalResult matchAndRewrite(MulOp op,
                                PatternRewriter &rewriter) const override {
    Type type = op.getResult().getType();
    if (!cast<RankedTensorType>(type).getElementType().isF32())
      return failure();
    for (auto [s, u] : {std::pair{op.getLhs(), op.getRhs()},
                        std::pair{op.getRhs(), op.getLhs()}}) {
      Value g = siluInput(s);
      if (!g || g.getType() != type || u.getType() != type)
        continue;
      rewriter.replaceOpWithNewOp<SwiGluOp>(op, type, g, u);
      return success();
    }
    return failure();
  }
};

struct RaiseAttentionPass : kiln::impl::RaiseAttentionBase<RaiseAttentionPass> {
  void runOnOperation() override {
    RewritePatternSet patterns(&getContext());
    patterns.add<RaiseAttentionPattern, RaiseRmsNormPattern, RaiseRopePattern,
                 RaiseSwiGluPattern>(&getContext());
    if (failed(applyPatternsGreedily(getOperation(), std::move(patterns))))
      signalPassFailure();
  }
};

} // namespace
