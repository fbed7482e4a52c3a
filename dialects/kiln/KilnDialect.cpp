//===- KilnDialect.cpp - The kiln dialect ---------------------------------===//
#include "dialects/kiln/KilnDialect.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/IR/Builders.h"
#include "mlir/IR/OpImplementation.h"
#include "mlir/IR/PatternMatch.h"
#include "llvm/ADT/StringSwitch.h"

using namespace mlir;
using namespace kiln;

#include "dialects/kiln/KilnDialect.cpp.inc"

void KilnDialect::initialize() {
  addOperations<
#define GET_OP_LIST
#include "dialects/kiln/KilnOps.cpp.inc"
      >();
}

/// Static element count, or -1 when a dim is symbolic.
static int64_t staticNumElements(ShapedType type) {
  return type.hasStaticShape() ? type.getNumElements() : -1;
}

LogicalResult MatMulOp::verify() {
  auto lhs = cast<RankedTensorType>(getLhs().getType());
  auto rhs = cast<RankedTensorType>(getRhs().getType());
  if (lhs.getRank() < 2 || rhs.getRank() < 2)
    return emitOpError("operands must have rank >= 2");
  int64_t k0 = lhs.getShape().back();
  int64_t k1 = rhs.getShape()[rhs.getRank() - 2];
  if (!ShapedType::isDynamic(k0) && !ShapedType::isDynamic(k1) && k0 != k1)
    return emitOpError("contraction dims differ: ") << k0 << " vs " << k1;
  return success();
}

LogicalResult AttentionOp::verify() {
  auto q = cast<RankedTensorType>(getQ().getType());
  auto k = cast<RankedTensorType>(getK().getType());
  auto v = cast<RankedTensorType>(getV().getType());
  auto r = cast<RankedTensorType>(getResult().getType());
  if (q.getRank() != 4 || k.getRank() != 4 || v.getRank() != 4 ||
      r.getRank() != 4)
    return emitOpError("q, k, v and the result must have rank 4");
  auto known = [](int64_t a, int64_t b) {
    return ShapedType::isDynamic(a) || ShapedType::isDynamic(b) || a == b;
  };
  int64_t hq = q.getDimSize(1), hkv = k.getDimSize(1);
  if (!ShapedType::isDynamic(hq) && !ShapedType::isDynamic(hkv) &&
      (hkv == 0 || hq % hkv))
    return emitOpError("query heads (") << hq << ") are not a multiple of "
                                        << "key/value heads (" << hkv << ")";
  if (!known(q.getDimSize(3), k.getDimSize(3)))
    return emitOpError("q and k head dims differ");
  if (!known(k.getDimSize(2), v.getDimSize(2)) ||
      !known(k.getDimSize(1), v.getDimSize(1)))
    return emitOpError("k and v differ in heads or length");
  if (!(getSoftcap().convertToFloat() >= 0))
    return emitOpError("softcap must be >= 0");
  if (getWindow() < 0 || getSinks() < 0)
    return emitOpError("window and sinks must be >= 0");
  return success();
}

/// Shared checks of the paged-cache operands; `heads` and `seq` come from
/// the new tokens' tensor ([1, heads, S, head_dim]).
static LogicalResult verifyPagedCache(Operation *op, MemRefType cache,
                                      RankedTensorType tokens,
                                      RankedTensorType table,
                                      RankedTensorType step, int64_t layer,
                                      bool queries) {
  Type elt = cache.getElementType();
  if (cache.getRank() != 6 || !cache.hasStaticShape() ||
      !(elt.isF32() || elt.isF16() || elt.isInteger(8)))
    return op->emitOpError("cache must be a static f32, f16 or i8 memref "
                           "[blocks, layers, 2, kv_heads, block_size, "
                           "row]");
  ArrayRef<int64_t> c = cache.getShape();
  if (c[2] != 2)
    return op->emitOpError("cache dim 2 must be 2 (keys, values)");
  if (layer < 0 || layer >= c[1])
    return op->emitOpError("layer ") << layer << " is outside the cache's "
                                     << c[1] << " layers";
  if (tokens.getRank() != 4 || !tokens.hasStaticShape() ||
      tokens.getDimSize(0) != 1)
    return op->emitOpError("new tokens must be [1, heads, S, head_dim], got ")
           << tokens;
  // An i8 row is head_dim codes plus an f16 scale per group.
  if (kvCacheRowElements(elt, tokens.getDimSize(3)) != c[5])
    return op->emitOpError("a cache row of ")
           << c[5] << " " << elt << " does not hold head_dim "
           << tokens.getDimSize(3) << " (needs "
           << kvCacheRowElements(elt, tokens.getDimSize(3)) << ")";
  int64_t heads = tokens.getDimSize(1);
  if (queries ? heads % c[3] != 0 : heads != c[3])
    return op->emitOpError(queries ? "query heads (" : "key/value heads (")
           << heads << ") do not match the cache's " << c[3] << " kv heads";
  if (table.getRank() != 1 || !table.getElementType().isInteger(32) ||
      !table.hasStaticShape())
    return op->emitOpError("block_table must be a static 1-D i32 tensor");
  if (step.getRank() != 1 || step.getDimSize(0) != 2 ||
      !step.getElementType().isInteger(64))
    return op->emitOpError("step must be tensor<2xi64> ([pos, n])");
  return success();
}

LogicalResult KvStoreOp::verify() {
  auto k = cast<RankedTensorType>(getK().getType());
  if (getV().getType() != k)
    return emitOpError("k and v types differ");
  return verifyPagedCache(*this, cast<MemRefType>(getCache().getType()), k,
                          cast<RankedTensorType>(getBlockTable().getType()),
                          cast<RankedTensorType>(getStep().getType()),
                          getLayer(), /*queries=*/false);
}

LogicalResult PagedAttentionOp::verify() {
  auto q = cast<RankedTensorType>(getQ().getType());
  if (getResult().getType() != q)
    return emitOpError("result type must equal the queries' type");
  if (!(getSoftcap().convertToFloat() >= 0))
    return emitOpError("softcap must be >= 0");
  if (getWindow() < 0 || getSinks() < 0)
    return emitOpError("window and sinks must be >= 0");
  if (getRoundedProbs() &&
      !cast<MemRefType>(getCache().getType()).getElementType().isF16())
    return emitOpError("rounded_probs needs an f16 cache");
  return verifyPagedCache(*this, cast<MemRefType>(getCache().getType()), q,
                          cast<RankedTensorType>(getBlockTable().getType()),
                          cast<RankedTensorType>(getStep().getType()),
                          getLayer(), /*queries=*/true);
}

Type kiln::kvCacheElementType(MLIRContext *ctx, StringRef dtype) {
  if (dtype == "f32")
    return Float32Type::get(ctx);
  if (dtype == "f16")
    return Float16Type::get(ctx);
  if (dtype == "int8")
    return IntegerType::get(ctx, 8);
  return nullptr;
}

int64_t kiln::quantBlockBytes(StringRef format) {
  return llvm::StringSwitch<int64_t>(format)
      .Case("q8_0", 34)
      .Case("q4_0", 18)
      .Case("q4_1", 20)
      .Case("q5_0", 22)
      .Case("q5_1", 24)
      .Case("f16", 64)
      .Case("q2_k", 84)
      .Case("q3_k", 110)
      .Case("q4_k", 144)
      .Case("q5_k", 176)
      .Case("q6_k", 210)
      .Case("iq4_nl", 18)
      .Case("iq4_xs", 136)
      .Default(0);
}

int64_t kiln::quantBlockValues(StringRef format) {
  return format.ends_with("_k") || format == "iq4_xs" ? 256 : 32;
}

/// Checks a quantized [rows, K / 32 * block_bytes] i8 weight for rows of K.
static LogicalResult verifyQuantWeight(Operation *op, Type weight,
                                       StringRef format, int64_t k) {
  int64_t bb = quantBlockBytes(format);
  if (!bb)
    return op->emitOpError("unknown quantization format '")
           << format << "' (known: q8_0, q4_0, q4_1, q5_0, q5_1, f16, q2_k, q3_k, q4_k, q5_k, q6_k, iq4_nl, iq4_xs)";
  auto w = cast<RankedTensorType>(weight);
  int64_t values = quantBlockValues(format);
  if (k % values)
    return op->emitOpError("K = ") << k << " is not a multiple of " << values
                                   << " (" << format << " blocks)";
  if (w.getRank() != 2 || !w.getElementType().isInteger(8) ||
      w.getDimSize(1) != quantRowBytes(format, k))
    return op->emitOpError("weight must be i8 [rows, ")
           << quantRowBytes(format, k) << "] for K = " << k << " in " << format
           << ", got " << w;
  return success();
}

LogicalResult QuantMatMulOp::verify() {
  auto x = cast<RankedTensorType>(getInput().getType());
  auto r = cast<RankedTensorType>(getResult().getType());
  if (x.getRank() != 2 || !x.hasStaticShape() || !x.getElementType().isF32())
    return emitOpError("input must be a static f32 [M, K]");
  if (failed(verifyQuantWeight(*this, getWeight().getType(), getFormat(),
                               x.getDimSize(1))))
    return failure();
  if (getActivations() != "f32" && getActivations() != "q8")
    return emitOpError("activations must be \"f32\" or \"q8\", not \"")
           << getActivations() << "\"";
  auto w = cast<RankedTensorType>(getWeight().getType());
  if (r.getRank() != 2 || r.getDimSize(0) != x.getDimSize(0) ||
      r.getDimSize(1) != w.getDimSize(0) || !r.getElementType().isF32())
    return emitOpError("result must be f32 [M, N] = [")
           << x.getDimSize(0) << ", " << w.getDimSize(0) << "]";
  return success();
}

LogicalResult QuantGatherOp::verify() {
  auto idx = cast<RankedTensorType>(getIndices().getType());
  auto r = cast<RankedTensorType>(getResult().getType());
  if (!idx.hasStaticShape() || !idx.getElementType().isInteger(64))
    return emitOpError("indices must be a static i64 tensor");
  if (r.getRank() != idx.getRank() + 1 || !r.getElementType().isF32() ||
      r.getShape().drop_back() != idx.getShape())
    return emitOpError("result must be f32 indices.shape + [K]");
  return verifyQuantWeight(*this, getTable().getType(), getFormat(),
                           r.getShape().back());
}

LogicalResult Table16I8Op::verify() {
  if (getTable().size() != 16)
    return emitOpError("table must hold 16 bytes, not ") << getTable().size();
  return success();
}

Value kiln::buildTableLookup(OpBuilder &b, Location loc, ArrayRef<int8_t> table,
                             Value n) {
  Type t = n.getType();
  auto constant = [&](int64_t v) -> Value {
    if (auto vt = dyn_cast<VectorType>(t))
      return arith::ConstantOp::create(
          b, loc, vt, DenseElementsAttr::get(vt, b.getI8IntegerAttr(v)));
    return arith::ConstantOp::create(b, loc, b.getI8IntegerAttr(v));
  };
  SmallVector<Value> level;
  for (int8_t v : table)
    level.push_back(constant(v));
  // Bit k of n picks between neighbours of level k: 16, 8, 4, 2, 1.
  for (int64_t k = 0; k < 4; ++k) {
    Value bit = arith::CmpIOp::create(
        b, loc, arith::CmpIPredicate::ne,
        arith::AndIOp::create(b, loc, n, constant(1 << k)), constant(0));
    SmallVector<Value> next;
    for (size_t i = 0; i + 1 < level.size(); i += 2)
      next.push_back(
          arith::SelectOp::create(b, loc, bit, level[i + 1], level[i]));
    level = std::move(next);
  }
  return level[0];
}

LogicalResult RopeOp::verify() {
  auto x = cast<RankedTensorType>(getInput().getType());
  if (getResult().getType() != x)
    return emitOpError("result type must equal the input's");
  if (x.getRank() < 1 || ShapedType::isDynamic(x.getShape().back()) ||
      x.getShape().back() % 2)
    return emitOpError("the last dim must be static and even");
  for (Value t : {getCos(), getSin()}) {
    auto tt = cast<RankedTensorType>(t.getType());
    if (tt.getRank() > x.getRank() || tt.getShape().back() != x.getShape().back())
      return emitOpError("cos and sin must be full width (")
             << x.getShape().back() << ") and broadcast to the input";
  }
  return success();
}

LogicalResult ReshapeOp::verify() {
  int64_t in = staticNumElements(cast<ShapedType>(getInput().getType()));
  int64_t out = staticNumElements(cast<ShapedType>(getResult().getType()));
  if (in >= 0 && out >= 0 && in != out)
    return emitOpError("element count changes from ") << in << " to " << out;
  return success();
}

LogicalResult TransposeOp::verify() {
  auto type = cast<RankedTensorType>(getInput().getType());
  ArrayRef<int64_t> perm = getPerm();
  if (static_cast<int64_t>(perm.size()) != type.getRank())
    return emitOpError("perm has ") << perm.size() << " entries for rank "
                                    << type.getRank();
  llvm::SmallVector<bool> seen(perm.size(), false);
  for (int64_t p : perm) {
    if (p < 0 || p >= type.getRank() || seen[p])
      return emitOpError("perm is not a permutation");
    seen[p] = true;
  }
  return success();
}

OpFoldResult ConstantOp::fold(FoldAdaptor) { return getValue(); }

OpFoldResult CastOp::fold(FoldAdaptor) {
  if (getInput().getType() == getType())
    return getInput();
  return {};
}

OpFoldResult ReshapeOp::fold(FoldAdaptor) {
  if (getInput().getType() == getType())
    return getInput();
  // reshape(reshape(x)) is one reshape of x.
  if (auto inner = getInput().getDefiningOp<ReshapeOp>()) {
    getInputMutable().assign(inner.getInput());
    return getResult();
  }
  return {};
}

OpFoldResult TransposeOp::fold(FoldAdaptor) {
  for (auto [i, p] : llvm::enumerate(getPerm()))
    if (static_cast<int64_t>(i) != p)
      return {};
  return getInput();
}

namespace {
/// transpose(transpose(x, p), q) = transpose(x, p[q[i]]).
struct ComposeTransposes : OpRewritePattern<TransposeOp> {
  using OpRewritePattern::OpRewritePattern;
  LogicalResult matchAndRewrite(TransposeOp op,
                                PatternRewriter &rewriter) const override {
    auto inner = op.getInput().getDefiningOp<TransposeOp>();
    if (!inner)
      return failure();
    SmallVector<int64_t> perm;
    for (int64_t q : op.getPerm())
      perm.push_back(inner.getPerm()[q]);
    rewriter.replaceOpWithNewOp<TransposeOp>(op, op.getType(), inner.getInput(),
                                             perm);
    return success();
  }
};
} // namespace

void TransposeOp::getCanonicalizationPatterns(RewritePatternSet &results,
                                              MLIRContext *context) {
  results.add<ComposeTransposes>(context);
}

ParseResult ConstantOp::parse(OpAsmParser &parser, OperationState &result) {
  ElementsAttr value;
  if (parser.parseOptionalAttrDict(result.attributes) ||
      parser.parseAttribute(value, "value", result.attributes))
    return failure();
  result.addTypes(value.getType());
  return success();
}

void ConstantOp::print(OpAsmPrinter &p) {
  p.printOptionalAttrDict((*this)->getAttrs(), {"value"});
  p << " " << getValue();
}

LogicalResult ConstantOp::verify() {
  if (getValue().getType() != getType())
    return emitOpError("value type ") << getValue().getType()
                                      << " differs from result type "
                                      << getType();
  return success();
}

#define GET_OP_CLASSES
#include "dialects/kiln/KilnOps.cpp.inc"
