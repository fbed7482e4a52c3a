//===- SimplifyAttention.cpp - Attention policy and the KV budget ---------===//
//
// On the LLM form: an optional sliding window with attention sinks for the
// layers that attend to everything, then the cache's size. When every
// layer is windowed the cache only has to hold what a window can see, so
// the block table and the pool become a ring of a few blocks that the
// runtime slides: memory follows the window, not the context.
//
//===----------------------------------------------------------------------===//
#include "dialects/kiln/KilnDialect.h"
#include "passes/Passes.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/IR/Builders.h"
#include "llvm/ADT/SetVector.h"

namespace kiln {
#define GEN_PASS_DEF_SIMPLIFYATTENTION
#include "passes/Passes.h.inc"
} // namespace kiln

using namespace mlir;
using namespace kiln;

namespace {

struct SimplifyAttentionPass
    : kiln::impl::SimplifyAttentionBase<SimplifyAttentionPass> {
  using SimplifyAttentionBase::SimplifyAttentionBase;

  void runOnOperation() override {
    ModuleOp module = getOperation();
    if (window < 0 || sinks < 0 || (sinks > 0 && window == 0)) {
      module.emitError("kiln-simplify-attention: window must be >= 0, and "
                       "sinks need a window");
      return signalPassFailure();
    }
    SmallVector<PagedAttentionOp> layers;
    module.walk([&](PagedAttentionOp op) { layers.push_back(op); });
    if (layers.empty()) {
      if (window > 0) {
        module.emitError("kiln-simplify-attention: an attention window "
                         "needs the LLM form (a KV cache), and this model "
                         "has none");
        return signalPassFailure();
      }
      return;
    }
    Builder b(&getContext());
    for (PagedAttentionOp op : layers)
      if (op.getWindow() == 0 && window > 0) {
        op.setWindowAttr(b.getI64IntegerAttr(window));
        op.setSinksAttr(b.getI64IntegerAttr(sinks));
      }
    if (!ring || llvm::any_of(layers, [](PagedAttentionOp op) {
          return op.getWindow() == 0;
        }))
      return;

    // The ring: pinned blocks for the sinks, then enough blocks that the
    // runtime can always drop the oldest one before a call of C tokens
    // (docs/runtime.md): sinkBlocks + 1 + ceil((W + C - 2) / block).
    auto cacheType = cast<MemRefType>(layers[0].getCache().getType());
    int64_t block = cacheType.getDimSize(4), blocks = cacheType.getDimSize(0);
    int64_t w = 0, s = 0, calls = 1;
    for (PagedAttentionOp op : layers) {
      w = std::max<int64_t>(w, op.getWindow());
      s = std::max<int64_t>(s, op.getSinks());
      calls = std::max<int64_t>(
          calls, cast<RankedTensorType>(op.getQ().getType()).getDimSize(2));
    }
    int64_t ringBlocks = (s + block - 1) / block + 1 +
                         (w + calls - 2 + block - 1) / block;
    if (ringBlocks >= blocks)
      return;
    auto ringCache = MemRefType::get(
        {ringBlocks, cacheType.getDimSize(1), cacheType.getDimSize(2),
         cacheType.getDimSize(3), block, cacheType.getDimSize(5)},
        cacheType.getElementType());
    auto ringTable = RankedTensorType::get({ringBlocks}, b.getI32Type());
    // The cache ops name the cache and block table: arguments of the step
    // functions, which take the ring's shapes (the ops accept any static
    // table and pool). Nothing else may read a table that changes shape.
    llvm::SetVector<Value> caches, tables;
    module.walk([&](Operation *op) {
      if (auto store = dyn_cast<KvStoreOp>(op)) {
        caches.insert(store.getCache());
        tables.insert(store.getBlockTable());
      } else if (auto attn = dyn_cast<PagedAttentionOp>(op)) {
        caches.insert(attn.getCache());
        tables.insert(attn.getBlockTable());
      }
    });
    llvm::SetVector<func::FuncOp> changed;
    auto retype = [&](Value v, Type type) {
      auto arg = dyn_cast<BlockArgument>(v);
      auto f = arg ? dyn_cast<func::FuncOp>(arg.getOwner()->getParentOp())
                   : nullptr;
      if (!f)
        return false;
      arg.setType(type);
      changed.insert(f);
      return true;
    };
    for (Value table : tables)
      if (!llvm::all_of(table.getUsers(),
                        [](Operation *u) {
                          return isa<KvStoreOp, PagedAttentionOp>(u);
                        }) ||
          !retype(table, ringTable)) {
        module.emitError("kiln-simplify-attention: the block table is not "
                         "a function argument read only by the cache ops");
        return signalPassFailure();
      }
    for (Value cache : caches)
      if (!retype(cache, ringCache)) {
        module.emitError("kiln-simplify-attention: the KV cache is not a "
                         "function argument");
        return signalPassFailure();
      }
    for (func::FuncOp f : changed)
      f.setType(FunctionType::get(&getContext(),
                                  f.getBody().front().getArgumentTypes(),
                                  f.getResultTypes()));
  }
};

} // namespace
