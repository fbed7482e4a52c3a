//===- PlanScratch.cpp - Liveness-based placement of temporaries ----------===//
#include "passes/Passes.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Interfaces/DataLayoutInterfaces.h"

namespace kiln {
#define GEN_PASS_DEF_PLANSCRATCH
#include "passes/Passes.h.inc"
} // namespace kiln

using namespace mlir;

namespace {

constexpr int64_t kAlign = 64;

struct Buffer {
  memref::AllocOp alloc;
  memref::DeallocOp dealloc;
  int64_t begin, end; // op positions in the block: [begin, end]
  int64_t size, offset = -1;
};

struct PlanScratchPass : kiln::impl::PlanScratchBase<PlanScratchPass> {
  void runOnOperation() override {
    for (auto func : getOperation().getOps<func::FuncOp>())
      if (!func.isExternal() && func.isPublic())
        plan(func);
  }

  void plan(func::FuncOp func) {
    Block &block = func.getBody().front();
    DataLayout layout = DataLayout::closest(func);
    llvm::DenseMap<Operation *, int64_t> position;
    int64_t pos = 0;
    for (Operation &op : block)
      position[&op] = pos++;
    std::vector<Buffer> buffers;
    for (auto alloc : block.getOps<memref::AllocOp>()) {
      MemRefType type = alloc.getType();
      if (!type.hasStaticShape() || !type.getLayout().isIdentity() ||
          !alloc.getDynamicSizes().empty() || !alloc.getSymbolOperands().empty())
        continue;
      memref::DeallocOp dealloc;
      bool escapes = false;
      for (Operation *user : alloc->getUsers()) {
        if (auto d = dyn_cast<memref::DeallocOp>(user)) {
          if (d->getBlock() != &block || dealloc)
            escapes = true;
          dealloc = d;
        } else if (isa<func::ReturnOp>(user)) {
          escapes = true;
        }
      }
      if (escapes || !dealloc)
        continue;
      int64_t bytes = type.getNumElements() *
                      static_cast<int64_t>(layout.getTypeSize(type.getElementType()));
      buffers.push_back({alloc, dealloc, position[alloc], position[dealloc],
                         std::max<int64_t>(bytes, 1)});
    }
    if (buffers.empty())
      return;

    // Largest first, each at the lowest aligned offset free for its lifetime.
    std::vector<Buffer *> order;
    for (Buffer &b : buffers)
      order.push_back(&b);
    llvm::stable_sort(order, [](Buffer *a, Buffer *b) { return a->size > b->size; });
    std::vector<Buffer *> placed;
    int64_t total = 0;
    for (Buffer *b : order) {
      std::vector<std::pair<int64_t, int64_t>> taken;
      for (Buffer *p : placed)
        if (p->begin <= b->end && b->begin <= p->end)
          taken.push_back({p->offset, p->offset + p->size});
      llvm::sort(taken);
      int64_t offset = 0;
      for (auto [lo, hi] : taken) {
        if (offset + b->size <= lo)
          break;
        offset = std::max(offset, (hi + kAlign - 1) / kAlign * kAlign);
      }
      b->offset = offset;
      total = std::max(total, offset + b->size);
      placed.push_back(b);
    }
    total = (total + kAlign - 1) / kAlign * kAlign;

    MLIRContext *ctx = &getContext();
    auto scratchType = MemRefType::get({total}, IntegerType::get(ctx, 8));
    unsigned index = func.getNumArguments();
    if (failed(func.insertArgument(index, scratchType, {}, func.getLoc())))
      return signalPassFailure();
    Value scratch = func.getArgument(index);
    OpBuilder b(ctx);
    for (Buffer &buf : buffers) {
      b.setInsertionPoint(buf.alloc);
      Value offset = arith::ConstantIndexOp::create(b, buf.alloc.getLoc(), buf.offset);
      Value view = memref::ViewOp::create(b, buf.alloc.getLoc(), buf.alloc.getType(),
                                          scratch, offset, ValueRange{});
      buf.alloc.replaceAllUsesWith(view);
      buf.dealloc.erase();
      buf.alloc.erase();
    }
    func->setAttr("kiln.scratch_size", b.getI64IntegerAttr(total));
  }
};

} // namespace
