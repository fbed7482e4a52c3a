//===- BufferizableOpInterfaceImpl.cpp - Paged-cache ops to loops ---------===//
//
// kiln.kv_store and kiln.paged_attention read tensors and a memref (the
// runtime's KV cache), so they take part in One-Shot Bufferize directly:
// their tensor operands are only read, the attention result is a new
// buffer, and bufferizing them emits their loops. The attention kernel is
// the online-softmax form (one pass over the cached keys, running max and
// sum) with a head_dim vector per key; its trip count is the run-time
// context length, so a decode step costs what the context holds, not the
// cache's capacity.
//
//===----------------------------------------------------------------------===//
#include "dialects/kiln/BufferizableOpInterfaceImpl.h"
#include "dialects/kiln/KilnDialect.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Bufferization/IR/BufferizableOpInterface.h"
#include "mlir/Dialect/Bufferization/IR/Bufferization.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/Dialect/Vector/IR/VectorOps.h"

using namespace mlir;
using namespace mlir::bufferization;

namespace kiln {
namespace {

/// The buffer of a tensor operand with an identity layout (vector loads
/// need a contiguous innermost dim); strided views are copied.
FailureOr<Value> contiguousBuffer(RewriterBase &rewriter, Location loc,
                                  Value tensor,
                                  const BufferizationOptions &options,
                                  const BufferizationState &state) {
  FailureOr<Value> buf = getBuffer(rewriter, tensor, options, state);
  if (failed(buf))
    return failure();
  auto type = cast<MemRefType>(buf->getType());
  if (type.getLayout().isIdentity())
    return buf;
  auto plain = MemRefType::get(type.getShape(), type.getElementType());
  FailureOr<Value> copy = options.createAlloc(rewriter, loc, plain, {});
  if (failed(copy) || failed(options.createMemCpy(rewriter, loc, *buf, *copy)))
    return failure();
  return copy;
}

struct CacheAddressing {
  Value table;       // memref<Mxi32>
  Value pos, n;      // index
  int64_t blockSize, maxBlock;

  static FailureOr<CacheAddressing>
  load(RewriterBase &b, Location loc, MemRefType cache, Value tableT,
       Value stepT, const BufferizationOptions &options,
       const BufferizationState &state) {
    CacheAddressing a;
    FailureOr<Value> table = getBuffer(b, tableT, options, state);
    FailureOr<Value> step = getBuffer(b, stepT, options, state);
    if (failed(table) || failed(step))
      return failure();
    a.table = *table;
    auto idx = [&](int64_t i) -> Value {
      Value c = arith::ConstantIndexOp::create(b, loc, i);
      Value v = memref::LoadOp::create(b, loc, *step, ValueRange{c});
      return arith::IndexCastOp::create(b, loc, b.getIndexType(), v);
    };
    a.pos = idx(0);
    a.n = idx(1);
    a.blockSize = cache.getDimSize(4);
    a.maxBlock = cache.getDimSize(0) - 1;
    return a;
  }

  /// (pool block, slot) of sequence position `j`. The block id is clamped
  /// into the pool: a bad table from a caller never addresses outside it.
  std::pair<Value, Value> locate(OpBuilder &b, Location loc, Value j) const {
    Value bs = arith::ConstantIndexOp::create(b, loc, blockSize);
    Value logical = arith::DivUIOp::create(b, loc, j, bs);
    Value slot = arith::RemUIOp::create(b, loc, j, bs);
    Value id = memref::LoadOp::create(b, loc, table, ValueRange{logical});
    Value block = arith::IndexCastOp::create(b, loc, b.getIndexType(), id);
    block = arith::MaxSIOp::create(
        b, loc, block, arith::ConstantIndexOp::create(b, loc, 0));
    block = arith::MinSIOp::create(
        b, loc, block, arith::ConstantIndexOp::create(b, loc, maxBlock));
    return {block, slot};
  }
};

struct KvStoreOpInterface
    : BufferizableOpInterface::ExternalModel<KvStoreOpInterface, KvStoreOp> {
  bool bufferizesToMemoryRead(Operation *, OpOperand &,
                              const AnalysisState &) const {
    return true;
  }
  bool bufferizesToMemoryWrite(Operation *, OpOperand &,
                               const AnalysisState &) const {
    return false;
  }
  AliasingValueList getAliasingValues(Operation *, OpOperand &,
                                      const AnalysisState &) const {
    return {};
  }

  LogicalResult bufferize(Operation *op, RewriterBase &rewriter,
                          const BufferizationOptions &options,
                          BufferizationState &state) const {
    auto store = cast<KvStoreOp>(op);
    Location loc = op->getLoc();
    rewriter.setInsertionPoint(op);
    auto cacheType = cast<MemRefType>(store.getCache().getType());
    auto addr = CacheAddressing::load(rewriter, loc, cacheType,
                                      store.getBlockTable(), store.getStep(),
                                      options, state);
    FailureOr<Value> k =
        contiguousBuffer(rewriter, loc, store.getK(), options, state);
    FailureOr<Value> v =
        contiguousBuffer(rewriter, loc, store.getV(), options, state);
    if (failed(addr) || failed(k) || failed(v))
      return failure();
    int64_t kvHeads = cacheType.getDimSize(3), headDim = cacheType.getDimSize(5);
    auto vecType = VectorType::get({headDim}, rewriter.getF32Type());
    auto c = [&](int64_t i) {
      return arith::ConstantIndexOp::create(rewriter, loc, i).getResult();
    };
    Value cache = store.getCache(), layer = c(store.getLayer());
    SmallVector<Value, 2> sources = {*k, *v};
    scf::ForOp::create(
        rewriter, loc, c(0), addr->n, c(1), ValueRange{},
        [&](OpBuilder &b, Location loc, Value i, ValueRange) {
          Value j = arith::AddIOp::create(b, loc, addr->pos, i);
          auto [block, slot] = addr->locate(b, loc, j);
          scf::ForOp::create(
              b, loc, c(0), c(kvHeads), c(1), ValueRange{},
              [&](OpBuilder &b, Location loc, Value h, ValueRange) {
                for (auto [which, src] : llvm::enumerate(sources)) {
                  Value row = vector::LoadOp::create(
                      b, loc, vecType, src, ValueRange{c(0), h, i, c(0)});
                  vector::StoreOp::create(
                      b, loc, row, cache,
                      ValueRange{block, layer, c(which), h, slot, c(0)});
                }
                scf::YieldOp::create(b, loc);
              });
          scf::YieldOp::create(b, loc);
        });
    rewriter.eraseOp(op);
    return success();
  }
};

struct PagedAttentionOpInterface
    : BufferizableOpInterface::ExternalModel<PagedAttentionOpInterface,
                                             PagedAttentionOp> {
  bool bufferizesToMemoryRead(Operation *, OpOperand &,
                              const AnalysisState &) const {
    return true;
  }
  bool bufferizesToMemoryWrite(Operation *, OpOperand &,
                               const AnalysisState &) const {
    return false;
  }
  AliasingValueList getAliasingValues(Operation *, OpOperand &,
                                      const AnalysisState &) const {
    return {};
  }
  bool bufferizesToAllocation(Operation *, Value) const { return true; }

  LogicalResult bufferize(Operation *op, RewriterBase &rewriter,
                          const BufferizationOptions &options,
                          BufferizationState &state) const {
    auto attn = cast<PagedAttentionOp>(op);
    Location loc = op->getLoc();
    rewriter.setInsertionPoint(op);
    auto cacheType = cast<MemRefType>(attn.getCache().getType());
    auto qType = cast<RankedTensorType>(attn.getQ().getType());
    auto addr = CacheAddressing::load(rewriter, loc, cacheType,
                                      attn.getBlockTable(), attn.getStep(),
                                      options, state);
    FailureOr<Value> q =
        contiguousBuffer(rewriter, loc, attn.getQ(), options, state);
    if (failed(addr) || failed(q))
      return failure();
    auto outType = MemRefType::get(qType.getShape(), qType.getElementType());
    FailureOr<Value> out = options.createAlloc(rewriter, loc, outType, {});
    if (failed(out))
      return failure();

    int64_t heads = qType.getDimSize(1), seq = qType.getDimSize(2);
    int64_t headDim = qType.getDimSize(3);
    int64_t group = heads / cacheType.getDimSize(3);
    int64_t window = attn.getWindow(), sinks = attn.getSinks();
    Type f32 = rewriter.getF32Type();
    auto vecType = VectorType::get({headDim}, f32);
    auto c = [&](OpBuilder &b, int64_t i) {
      return arith::ConstantIndexOp::create(b, loc, i).getResult();
    };
    auto f = [&](OpBuilder &b, float x) {
      return arith::ConstantOp::create(b, loc, b.getF32FloatAttr(x))
          .getResult();
    };
    Value cache = attn.getCache();
    Value layer = c(rewriter, attn.getLayer());
    Value end = arith::AddIOp::create(rewriter, loc, addr->pos, addr->n);
    auto fast = arith::FastMathFlagsAttr::get(rewriter.getContext(),
                                              arith::FastMathFlags::reassoc);

    scf::ParallelOp::create(
        rewriter, loc, ValueRange{c(rewriter, 0), c(rewriter, 0)},
        ValueRange{c(rewriter, heads), c(rewriter, seq)},
        ValueRange{c(rewriter, 1), c(rewriter, 1)},
        [&](OpBuilder &b, Location loc, ValueRange ivs) {
          Value h = ivs[0], i = ivs[1];
          Value kvHead = arith::DivUIOp::create(b, loc, h, c(b, group));
          Value p = arith::AddIOp::create(b, loc, addr->pos, i);
          Value hi = arith::MinUIOp::create(
              b, loc, arith::AddIOp::create(b, loc, p, c(b, 1)), end);
          Value qv = vector::LoadOp::create(b, loc, vecType, *q,
                                            ValueRange{c(b, 0), h, i, c(b, 0)});
          Value scale = f(b, attn.getScale().convertToFloat());

          // One online-softmax step per key: (max, sum, acc) carried.
          auto keyRange = [&](OpBuilder &b, Value lo, Value hiV,
                              ValueRange init) {
            auto loop = scf::ForOp::create(
                b, loc, lo, hiV, c(b, 1), init,
                [&](OpBuilder &b, Location loc, Value j, ValueRange st) {
                  auto [block, slot] = addr->locate(b, loc, j);
                  auto row = [&](int64_t which) {
                    return vector::LoadOp::create(
                        b, loc, vecType, cache,
                        ValueRange{block, layer, c(b, which), kvHead, slot,
                                   c(b, 0)});
                  };
                  Value prod = arith::MulFOp::create(b, loc, qv, row(0));
                  Value dot = vector::ReductionOp::create(
                      b, loc, vector::CombiningKind::ADD, prod, Value(),
                      fast.getValue());
                  Value s = arith::MulFOp::create(b, loc, dot, scale);
                  Value m = arith::MaximumFOp::create(b, loc, st[0], s);
                  Value corr = math::ExpOp::create(
                      b, loc, arith::SubFOp::create(b, loc, st[0], m));
                  Value pexp = math::ExpOp::create(
                      b, loc, arith::SubFOp::create(b, loc, s, m));
                  Value l = arith::AddFOp::create(
                      b, loc, arith::MulFOp::create(b, loc, st[1], corr), pexp);
                  Value acc = arith::AddFOp::create(
                      b, loc,
                      arith::MulFOp::create(
                          b, loc, st[2],
                          vector::BroadcastOp::create(b, loc, vecType, corr)),
                      arith::MulFOp::create(
                          b, loc, row(1),
                          vector::BroadcastOp::create(b, loc, vecType, pexp)));
                  scf::YieldOp::create(b, loc, ValueRange{m, l, acc});
                });
            return SmallVector<Value>(loop.getResults());
          };
          SmallVector<Value> st = {
              f(b, -std::numeric_limits<float>::infinity()), f(b, 0.0f),
              arith::ConstantOp::create(
                  b, loc, vecType,
                  DenseElementsAttr::get(vecType, b.getF32FloatAttr(0.0f)))};
          Value lo = c(b, 0);
          if (window > 0) {
            // Keys p - window < j <= p, after the first `sinks` keys.
            Value first = arith::SubIOp::create(
                b, loc, arith::MaxSIOp::create(b, loc, hi, c(b, window)),
                c(b, window));
            lo = first;
            if (sinks > 0) {
              Value sinkEnd = arith::MinUIOp::create(b, loc, c(b, sinks), first);
              st = keyRange(b, c(b, 0), sinkEnd, st);
              lo = arith::MaxUIOp::create(b, loc, first, sinkEnd);
            }
          }
          st = keyRange(b, lo, hi, st);
          Value inv = arith::DivFOp::create(b, loc, f(b, 1.0f), st[1]);
          Value res = arith::MulFOp::create(
              b, loc, st[2], vector::BroadcastOp::create(b, loc, vecType, inv));
          vector::StoreOp::create(b, loc, res, *out,
                                  ValueRange{c(b, 0), h, i, c(b, 0)});
        });
    replaceOpWithBufferizedValues(rewriter, op, *out);
    return success();
  }
};

} // namespace

void registerBufferizableOpInterfaceExternalModels(DialectRegistry &registry) {
  registry.addExtension(+[](MLIRContext *ctx, KilnDialect *) {
    ctx->loadDialect<arith::ArithDialect, math::MathDialect,
                     memref::MemRefDialect, scf::SCFDialect,
                     vector::VectorDialect>();
    KvStoreOp::attachInterface<KvStoreOpInterface>(*ctx);
    PagedAttentionOp::attachInterface<PagedAttentionOpInterface>(*ctx);
  });
}

} // namespace kiln
