//===- MapParallelLoopsToGpu.cpp - Top-level loops to gpu.launch ----------===//
//
// The GPU targets' dispatch boundary is the same as the CPU's thread-pool
// boundary: one top-level scf.parallel per kernel. Linearizing its
// iteration space makes every kernel a 1-D grid of fixed-size workgroups,
// which both Vulkan and CUDA run well and which needs no per-shape mapping
// decisions; inner (reduction) loops stay sequential inside an invocation.
//
//===----------------------------------------------------------------------===//
#include "passes/Passes.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/GPU/IR/GPUDialect.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/Dialect/Utils/StaticValueUtils.h"
#include "mlir/IR/IRMapping.h"
#include "mlir/Interfaces/SideEffectInterfaces.h"
#include "mlir/Transforms/RegionUtils.h"

namespace kiln {
#define GEN_PASS_DEF_MAPPARALLELLOOPSTOGPU
#include "passes/Passes.h.inc"
} // namespace kiln

using namespace mlir;

namespace {

struct MapParallelLoopsToGpuPass
    : kiln::impl::MapParallelLoopsToGpuBase<MapParallelLoopsToGpuPass> {
  using MapParallelLoopsToGpuBase::MapParallelLoopsToGpuBase;

  /// A launch of `blocks` x `threads`; `build` fills its body (before the
  /// terminator) given the linear invocation id.
  void launch(OpBuilder &b, Location loc, int64_t blocks, int64_t threads,
              function_ref<void(OpBuilder &, Value)> build) {
    auto c = [&](int64_t v) {
      return arith::ConstantIndexOp::create(b, loc, v).getResult();
    };
    auto l = gpu::LaunchOp::create(b, loc, c(blocks), c(1), c(1), c(threads),
                                   c(1), c(1));
    OpBuilder in = OpBuilder::atBlockBegin(&l.getBody().front());
    Value id = arith::AddIOp::create(
        in, loc,
        arith::MulIOp::create(in, loc, l.getBlockIds().x,
                              arith::ConstantIndexOp::create(in, loc, threads)),
        l.getThreadIds().x);
    build(in, id);
    gpu::TerminatorOp::create(in, loc);
    sinkIntoKernel(l);
  }

  /// Whether a host value is recomputed inside the kernels that use it:
  /// constants, views of buffers, pure scalar arithmetic and loads (a
  /// kernel's arguments are then whole buffers only).
  static bool sinkable(Operation *op) {
    return op && op->getNumRegions() == 0 && op->getNumResults() == 1 &&
           !isa<memref::AllocOp, memref::GetGlobalOp>(op) &&
           (isa<memref::LoadOp>(op) || isMemoryEffectFree(op));
  }

  static void sinkIntoKernel(gpu::LaunchOp l) {
    Region &body = l.getBody();
    for (bool changed = true; changed;) {
      changed = false;
      llvm::SetVector<Value> above;
      getUsedValuesDefinedAbove(body, above);
      for (Value v : above) {
        Operation *def = v.getDefiningOp();
        if (!sinkable(def))
          continue;
        OpBuilder top = OpBuilder::atBlockBegin(&body.front());
        Operation *copy = top.clone(*def);
        replaceAllUsesInRegionWith(v, copy->getResult(0), body);
        changed = true;
      }
    }
  }

  LogicalResult mapParallel(scf::ParallelOp par) {
    if (!par.getInitVals().empty())
      return par.emitOpError("parallel reductions are not supported on GPU "
                             "targets yet");
    SmallVector<int64_t> lbs, steps, trips;
    int64_t total = 1;
    for (unsigned d = 0; d < par.getNumLoops(); ++d) {
      auto lb = getConstantIntValue(par.getLowerBound()[d]);
      auto ub = getConstantIntValue(par.getUpperBound()[d]);
      auto st = getConstantIntValue(par.getStep()[d]);
      if (!lb || !ub || !st || *st <= 0)
        return par.emitOpError("GPU targets need static loop bounds");
      lbs.push_back(*lb);
      steps.push_back(*st);
      trips.push_back(std::max<int64_t>(0, (*ub - *lb + *st - 1) / *st));
      total *= trips.back();
    }
    OpBuilder b(par);
    Location loc = par.getLoc();
    if (total == 0) {
      par.erase();
      return success();
    }
    int64_t w = std::min<int64_t>(workgroupSize, total);
    launch(b, loc, (total + w - 1) / w, w, [&](OpBuilder &in, Value id) {
      Value n = arith::ConstantIndexOp::create(in, loc, total);
      Value inRange = arith::CmpIOp::create(in, loc, arith::CmpIPredicate::ult,
                                            id, n);
      auto guard = scf::IfOp::create(in, loc, inRange, /*withElse=*/false);
      OpBuilder body = guard.getThenBodyBuilder();
      // Row-major delinearization, last dim fastest (contiguous stores).
      IRMapping map;
      Value rest = id;
      for (int64_t d = par.getNumLoops() - 1; d >= 0; --d) {
        Value t = arith::ConstantIndexOp::create(body, loc, trips[d]);
        Value idx = d == 0 ? rest : arith::RemUIOp::create(body, loc, rest, t);
        if (d > 0)
          rest = arith::DivUIOp::create(body, loc, rest, t);
        Value iv = arith::AddIOp::create(
            body, loc, arith::ConstantIndexOp::create(body, loc, lbs[d]),
            arith::MulIOp::create(
                body, loc, idx,
                arith::ConstantIndexOp::create(body, loc, steps[d])));
        map.map(par.getInductionVars()[d], iv);
      }
      for (Operation &op : par.getBody()->without_terminator())
        body.clone(op, map);
    });
    par.erase();
    return success();
  }

  /// A parallel loop nested in a kernel (the n loop of a matmul whose
  /// reduction loop comes first) runs sequentially in its invocation.
  static LogicalResult serialize(scf::ParallelOp par) {
    if (!par.getInitVals().empty())
      return par.emitOpError("parallel reductions are not supported on GPU "
                             "targets yet");
    OpBuilder b(par);
    IRMapping map;
    SmallVector<scf::ForOp> loops;
    for (unsigned d = 0; d < par.getNumLoops(); ++d) {
      auto loop = scf::ForOp::create(b, par.getLoc(), par.getLowerBound()[d],
                                     par.getUpperBound()[d], par.getStep()[d]);
      map.map(par.getInductionVars()[d], loop.getInductionVar());
      b.setInsertionPoint(loop.getBody()->getTerminator());
      loops.push_back(loop);
    }
    for (Operation &op : par.getBody()->without_terminator())
      b.clone(op, map);
    par.erase();
    return success();
  }

  void runOnOperation() override {
    func::FuncOp f = getOperation();
    if (f.isExternal())
      return;
    for (Operation &op :
         llvm::make_early_inc_range(f.getBody().front().getOperations())) {
      if (auto par = dyn_cast<scf::ParallelOp>(op)) {
        SmallVector<scf::ParallelOp> nested;
        par.getBody()->walk([&](scf::ParallelOp inner) {
          nested.push_back(inner);
        });
        for (scf::ParallelOp inner : llvm::reverse(nested))
          if (failed(serialize(inner)))
            return signalPassFailure();
        if (failed(mapParallel(par)))
          return signalPassFailure();
        continue;
      }
      // Allocation, views, constants and the return stay on the host (loads
      // and pure ops are recomputed in the kernels that use them); any
      // other op with memory effects runs as one invocation.
      if (isa<memref::AllocOp, memref::DeallocOp, func::ReturnOp,
              gpu::LaunchOp, memref::LoadOp>(op) ||
          isMemoryEffectFree(&op))
        continue;
      if (!op.use_empty()) {
        op.emitOpError("GPU targets: a host op whose results are used");
        return signalPassFailure();
      }
      OpBuilder b(&op);
      Operation *moved = &op;
      launch(b, op.getLoc(), 1, 1, [&](OpBuilder &in, Value) {
        moved->moveBefore(in.getInsertionBlock(), in.getInsertionPoint());
      });
    }
    // Parallel loops left inside kernels (under a sequential loop that ran
    // as one invocation) run sequentially there.
    SmallVector<scf::ParallelOp> inside;
    f.walk([&](scf::ParallelOp p) {
      if (p->getParentOfType<gpu::LaunchOp>())
        inside.push_back(p);
    });
    for (scf::ParallelOp p : llvm::reverse(inside))
      if (failed(serialize(p)))
        return signalPassFailure();
    // What was sunk into kernels is dead on the host.
    Block &entry = f.getBody().front();
    for (bool changed = true; changed;) {
      changed = false;
      for (Operation &op : llvm::make_early_inc_range(llvm::reverse(entry)))
        if (op.use_empty() && sinkable(&op)) {
          op.erase();
          changed = true;
        }
    }
  }
};

} // namespace
