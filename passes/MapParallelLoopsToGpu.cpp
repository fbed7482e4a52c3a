//===- MapParallelLoopsToGpu.cpp - Top-level loops to gpu.launch ----------===//
//
// The GPU targets' dispatch boundary is the same as the CPU's thread-pool
// boundary: one top-level scf.parallel per kernel. Linearizing its
// iteration space makes every kernel a 1-D grid of fixed-size workgroups,
// which both Vulkan and CUDA run well and which needs no per-shape mapping
// decisions. A kernel whose every invocation would run one long reduction
// (a matrix-vector product, a row max or sum) instead gets one workgroup
// per output: the lanes split the reduction's iterations, then combine
// their partial results in workgroup memory, by a tree or by subgroup
// operations (`reduction=`). Other inner loops stay sequential inside an
// invocation.
//
// kiln-parallel-dims-first (same file) puts every linalg.generic's parallel
// loops outside its reduction loops first, so that a matmul lowered as
// (m, k, n) becomes (m, n, k): all outputs parallel, k the inner reduction.
//
//===----------------------------------------------------------------------===//
#include "passes/Passes.h"

#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/Dialect/Linalg/Transforms/Transforms.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/GPU/IR/GPUDialect.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/Dialect/Utils/StaticValueUtils.h"
#include "mlir/IR/IRMapping.h"
#include "mlir/Interfaces/SideEffectInterfaces.h"
#include "mlir/Transforms/RegionUtils.h"

#include "llvm/ADT/TypeSwitch.h"

namespace kiln {
#define GEN_PASS_DEF_MAPPARALLELLOOPSTOGPU
#define GEN_PASS_DEF_PARALLELDIMSFIRST
#include "passes/Passes.h.inc"
} // namespace kiln

using namespace mlir;

namespace {

/// Vulkan guarantees 65535 workgroups per grid dimension; larger grids use y.
constexpr int64_t kMaxGridX = 65535;

/// The reduction kind of a combining op, when it is one a workgroup can
/// split (associative and commutative, with an identity).
std::optional<arith::AtomicRMWKind> reductionKind(Operation *op) {
  using K = arith::AtomicRMWKind;
  return llvm::TypeSwitch<Operation *, std::optional<K>>(op)
      .Case([](arith::AddFOp) { return K::addf; })
      .Case([](arith::AddIOp) { return K::addi; })
      .Case([](arith::MulFOp) { return K::mulf; })
      .Case([](arith::MulIOp) { return K::muli; })
      .Case([](arith::MaximumFOp) { return K::maximumf; })
      .Case([](arith::MinimumFOp) { return K::minimumf; })
      .Case([](arith::MaxNumFOp) { return K::maxnumf; })
      .Case([](arith::MinNumFOp) { return K::minnumf; })
      .Case([](arith::MaxSIOp) { return K::maxs; })
      .Case([](arith::MinSIOp) { return K::mins; })
      .Case([](arith::MaxUIOp) { return K::maxu; })
      .Case([](arith::MinUIOp) { return K::minu; })
      .Case([](arith::AndIOp) { return K::andi; })
      .Case([](arith::OrIOp) { return K::ori; })
      .Default([](Operation *) { return std::nullopt; });
}

gpu::AllReduceOperation subgroupKind(arith::AtomicRMWKind k) {
  using K = arith::AtomicRMWKind;
  using G = gpu::AllReduceOperation;
  switch (k) {
  case K::addf: case K::addi: return G::ADD;
  case K::mulf: case K::muli: return G::MUL;
  case K::maximumf: return G::MAXIMUMF;
  case K::minimumf: return G::MINIMUMF;
  case K::maxnumf: return G::MAXNUMF;
  case K::minnumf: return G::MINNUMF;
  case K::maxs: return G::MAXSI;
  case K::mins: return G::MINSI;
  case K::maxu: return G::MAXUI;
  case K::minu: return G::MINUI;
  case K::andi: return G::AND;
  default: return G::OR;
  }
}

/// Ops a lane may run whatever its share of the iterations: no regions,
/// nothing written.
bool readOnly(Operation &op) {
  return op.getNumRegions() == 0 &&
         (isa<memref::LoadOp>(op) || isMemoryEffectFree(&op));
}

/// A nest of sequential loops that folds one value, in one of two forms:
///  * memref: the innermost body loads `acc[idx]`, combines it with a value
///    and stores it back to `acc[idx]` (convert-linalg-to-parallel-loops'
///    form of a linalg reduction), `idx` fixed over the nest;
///  * iter_args: each loop carries one value, the inner loop's init is the
///    outer loop's argument, and the innermost combines it with a value
///    (or the outermost loop says `kiln.reduction = "addf"`: its value only
///    ever has terms added to it, the hand-built kernels' form).
/// Each loop has static bounds, and between the loops there are only
/// read-only ops, so the nest is one iteration space of `total` points.
struct ReductionNest {
  SmallVector<scf::ForOp> loops;
  SmallVector<int64_t> lbs, steps, trips;
  int64_t total = 1;
  arith::AtomicRMWKind kind;
  Type type;
  bool iterForm = false;
  // memref form: the accumulator's load, the combining op, its other
  // operand (the term each point adds) and the store.
  memref::LoadOp accLoad;
  Operation *combine = nullptr;
  Value term;
  memref::StoreOp accStore;
};

FailureOr<ReductionNest> matchReductionNest(scf::ForOp top) {
  ReductionNest n;
  unsigned carried = top.getNumRegionIterArgs();
  if (carried > 1)
    return failure();
  n.iterForm = carried == 1;
  auto vouched = top->getAttrOfType<StringAttr>("kiln.reduction");
  for (scf::ForOp l = top;;) {
    auto lb = getConstantIntValue(l.getLowerBound());
    auto ub = getConstantIntValue(l.getUpperBound());
    auto st = getConstantIntValue(l.getStep());
    if (!lb || !ub || !st || *st <= 0 || l.getNumRegionIterArgs() != carried)
      return failure();
    n.loops.push_back(l);
    n.lbs.push_back(*lb);
    n.steps.push_back(*st);
    n.trips.push_back(std::max<int64_t>(0, (*ub - *lb + *st - 1) / *st));
    n.total *= n.trips.back();
    scf::ForOp inner;
    for (Operation &op : l.getBody()->without_terminator()) {
      if (auto f = dyn_cast<scf::ForOp>(op)) {
        if (inner)
          return failure();
        inner = f;
        continue;
      }
      if (inner || (!readOnly(op) && !isa<memref::StoreOp>(op)))
        return failure();
    }
    if (!inner)
      break;
    for (Operation &op : l.getBody()->without_terminator())
      if (isa<memref::StoreOp>(op))
        return failure();
    if (n.iterForm) {
      Value arg = l.getRegionIterArgs()[0];
      auto yield = cast<scf::YieldOp>(l.getBody()->getTerminator());
      if (inner.getInitArgs()[0] != arg || !arg.hasOneUse() ||
          yield.getOperand(0) != inner.getResult(0))
        return failure();
    }
    l = inner;
  }
  scf::ForOp last = n.loops.back();
  Block *body = last.getBody();
  if (n.iterForm) {
    for (Operation &op : body->without_terminator())
      if (!readOnly(op))
        return failure();
    Value acc = last.getRegionIterArgs()[0];
    n.type = acc.getType();
    if (vouched) {
      if (vouched.getValue() != "addf" || !isa<FloatType>(n.type))
        return failure();
      n.kind = arith::AtomicRMWKind::addf;
    } else {
      Operation *c = body->getTerminator()->getOperand(0).getDefiningOp();
      auto kind = c ? reductionKind(c) : std::nullopt;
      if (!kind || c->getBlock() != body || !acc.hasOneUse() ||
          (c->getOperand(0) != acc && c->getOperand(1) != acc))
        return failure();
      n.kind = *kind;
    }
  } else {
    for (Operation &op : body->without_terminator()) {
      if (auto st = dyn_cast<memref::StoreOp>(op)) {
        if (n.accStore)
          return failure();
        n.accStore = st;
      } else if (!readOnly(op)) {
        return failure();
      }
    }
    if (!n.accStore)
      return failure();
    Operation *c = n.accStore.getValueToStore().getDefiningOp();
    auto kind = c ? reductionKind(c) : std::nullopt;
    if (!kind || c->getBlock() != body || !c->hasOneUse())
      return failure();
    for (Value operand : c->getOperands()) {
      auto ld = operand.getDefiningOp<memref::LoadOp>();
      if (ld && ld->getBlock() == body && ld.getMemRef() == n.accStore.getMemRef() &&
          ld.getIndices() == n.accStore.getIndices() && ld->hasOneUse())
        n.accLoad = ld;
    }
    if (!n.accLoad || c->getOperand(0) == c->getOperand(1))
      return failure();
    n.term = c->getOperand(c->getOperand(0) == n.accLoad ? 1 : 0);
    // The accumulator's place is fixed over the nest, and nothing else in
    // the nest reads its buffer.
    for (Value idx : n.accStore.getIndices())
      if (top->isAncestor(idx.getParentRegion()->getParentOp()))
        return failure();
    Value base = kiln::bufferBehindViews(n.accStore.getMemRef(), true);
    bool aliased = false;
    top.walk([&](memref::LoadOp ld) {
      aliased |= ld != n.accLoad &&
                 kiln::bufferBehindViews(ld.getMemRef(), true) == base;
    });
    if (aliased)
      return failure();
    n.kind = *kind;
    n.combine = c;
    n.type = c->getResult(0).getType();
  }
  if (!n.type.isF32() && !n.type.isInteger(32))
    return failure();
  return n;
}

/// The first loop of a parallel body when only read-only ops come before
/// it (the shape a shared or tiled reduction needs), else null.
scf::ForOp reductionLoopOf(scf::ParallelOp par) {
  for (Operation &op : par.getBody()->without_terminator()) {
    if (auto f = dyn_cast<scf::ForOp>(op))
      return f;
    if (!readOnly(op))
      return nullptr;
  }
  return nullptr;
}

/// Row-major delinearization of `id` over `trips`, last dim fastest:
/// iv[d] = lb[d] + (index along d) * step[d].
SmallVector<Value> delinearize(OpBuilder &b, Location loc, Value id,
                               ArrayRef<int64_t> lbs, ArrayRef<int64_t> steps,
                               ArrayRef<int64_t> trips) {
  auto c = [&](int64_t v) {
    return arith::ConstantIndexOp::create(b, loc, v).getResult();
  };
  SmallVector<Value> ivs(trips.size());
  Value rest = id;
  for (int64_t d = trips.size() - 1; d >= 0; --d) {
    Value idx = d == 0 ? rest : arith::RemUIOp::create(b, loc, rest, c(trips[d]));
    if (d > 0)
      rest = arith::DivUIOp::create(b, loc, rest, c(trips[d]));
    ivs[d] = lbs[d] == 0 && steps[d] == 1
                 ? idx
                 : arith::AddIOp::create(
                       b, loc, c(lbs[d]),
                       arith::MulIOp::create(b, loc, idx, c(steps[d])));
  }
  return ivs;
}

} // namespace

namespace {

/// Integer powers in place, as a loop over the exponent's bits: kernels
/// call nothing (convert-math-to-funcs would make a helper function with
/// branches, which SPIR-V kernels cannot call). `x^e` with an integer `e`:
/// square-and-multiply over |e|; for e < 0, 1 / x^|e| for floats and, for
/// integers, what truncating division gives (1 and -1 keep their power,
/// anything else is 0).
void expandIntegerPowers(func::FuncOp f) {
  SmallVector<Operation *> pows;
  f.walk([&](Operation *op) {
    if (isa<math::IPowIOp, math::FPowIOp>(op) &&
        !isa<VectorType>(op->getResult(0).getType()))
      pows.push_back(op);
  });
  for (Operation *op : pows) {
    OpBuilder b(op);
    Location loc = op->getLoc();
    Value x = op->getOperand(0), e = op->getOperand(1);
    auto it = cast<IntegerType>(e.getType());
    Type t = x.getType();
    bool isFloat = isa<FloatType>(t);
    auto ic = [&](int64_t v) {
      return arith::ConstantOp::create(b, loc, b.getIntegerAttr(it, v))
          .getResult();
    };
    Value one = isFloat ? arith::ConstantOp::create(b, loc, b.getFloatAttr(t, 1.0))
                              .getResult()
                        : arith::ConstantOp::create(b, loc, b.getIntegerAttr(t, 1))
                              .getResult();
    auto mul = [&](OpBuilder &bb, Value l, Value r) {
      return isFloat ? arith::MulFOp::create(bb, loc, l, r).getResult()
                     : arith::MulIOp::create(bb, loc, l, r).getResult();
    };
    Value negative = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::slt,
                                           e, ic(0));
    Value mag = arith::SelectOp::create(
        b, loc, negative, arith::SubIOp::create(b, loc, ic(0), e), e);
    Value lb = arith::ConstantIndexOp::create(b, loc, 0);
    Value ub = arith::ConstantIndexOp::create(b, loc, it.getWidth());
    Value st = arith::ConstantIndexOp::create(b, loc, 1);
    auto loop = scf::ForOp::create(
        b, loc, lb, ub, st, ValueRange{one, x, mag},
        [&](OpBuilder &lb2, Location loc, Value, ValueRange a) {
          Value bit = arith::AndIOp::create(
              lb2, loc, a[2],
              arith::ConstantOp::create(lb2, loc, lb2.getIntegerAttr(it, 1)));
          Value odd = arith::CmpIOp::create(
              lb2, loc, arith::CmpIPredicate::ne, bit,
              arith::ConstantOp::create(lb2, loc, lb2.getIntegerAttr(it, 0)));
          Value r = arith::SelectOp::create(lb2, loc, odd, mul(lb2, a[0], a[1]),
                                            a[0]);
          Value sq = mul(lb2, a[1], a[1]);
          Value rest = arith::ShRUIOp::create(
              lb2, loc, a[2],
              arith::ConstantOp::create(lb2, loc, lb2.getIntegerAttr(it, 1)));
          scf::YieldOp::create(lb2, loc, ValueRange{r, sq, rest});
        });
    Value pos = loop.getResult(0), result;
    if (isFloat) {
      result = arith::SelectOp::create(
          b, loc, negative, arith::DivFOp::create(b, loc, one, pos), pos);
    } else {
      // x^-n: 1 for x = 1; (-1)^n for x = -1; else 0 (as 1 / x^n truncates).
      Value zero = arith::ConstantOp::create(b, loc, b.getIntegerAttr(t, 0));
      Value minusOne = arith::ConstantOp::create(b, loc, b.getIntegerAttr(t, -1));
      Value isOne = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::eq, x, one);
      Value isMinusOne = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::eq,
                                               x, minusOne);
      Value neg = arith::SelectOp::create(
          b, loc, isOne, one,
          arith::SelectOp::create(b, loc, isMinusOne, pos, zero));
      result = arith::SelectOp::create(b, loc, negative, neg, pos);
    }
    op->getResult(0).replaceAllUsesWith(result);
    op->erase();
  }
}

struct MapParallelLoopsToGpuPass
    : kiln::impl::MapParallelLoopsToGpuBase<MapParallelLoopsToGpuPass> {
  using MapParallelLoopsToGpuBase::MapParallelLoopsToGpuBase;

  /// A launch of `blocks` x `threads` (over two grid dimensions past
  /// 65535 workgroups); `build` fills its body (before the terminator)
  /// given the linear workgroup id and the invocation's index in it.
  gpu::LaunchOp launch(OpBuilder &b, Location loc, int64_t blocks,
                       int64_t threads,
                       function_ref<void(OpBuilder &, Value, Value,
                                         ArrayRef<BlockArgument>)> build,
                       TypeRange workgroupMemory = {}) {
    auto c = [&](int64_t v) {
      return arith::ConstantIndexOp::create(b, loc, v).getResult();
    };
    int64_t gy = (blocks + kMaxGridX - 1) / kMaxGridX;
    int64_t gx = (blocks + gy - 1) / gy;
    auto l = gpu::LaunchOp::create(b, loc, c(gx), c(gy), c(1), c(threads),
                                   c(1), c(1), nullptr, nullptr, {},
                                   workgroupMemory);
    OpBuilder in = OpBuilder::atBlockBegin(&l.getBody().front());
    Value block = l.getBlockIds().x;
    if (gy > 1)
      block = arith::AddIOp::create(
          in, loc,
          arith::MulIOp::create(in, loc, l.getBlockIds().y,
                                arith::ConstantIndexOp::create(in, loc, gx)),
          block);
    build(in, block, l.getThreadIds().x, l.getWorkgroupAttributions());
    gpu::TerminatorOp::create(in, loc);
    sinkIntoKernel(l);
    return l;
  }

  /// One invocation per iteration: the linear invocation id.
  void launchLinear(OpBuilder &b, Location loc, int64_t blocks,
                    int64_t threads, function_ref<void(OpBuilder &, Value)> build) {
    launch(b, loc, blocks, threads,
           [&](OpBuilder &in, Value block, Value tid, ArrayRef<BlockArgument>) {
      Value id = arith::AddIOp::create(
          in, loc,
          arith::MulIOp::create(in, loc, block,
                                arith::ConstantIndexOp::create(in, loc, threads)),
          tid);
      build(in, id);
    });
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
    if (succeeded(mapTiled(par, lbs, steps, trips)) ||
        succeeded(mapCooperative(par, lbs, steps, trips, total))) {
      par.erase();
      return success();
    }
    int64_t w = std::min<int64_t>(workgroupSize, total);
    launchLinear(b, loc, (total + w - 1) / w, w, [&](OpBuilder &in, Value id) {
      Value n = arith::ConstantIndexOp::create(in, loc, total);
      Value inRange = arith::CmpIOp::create(in, loc, arith::CmpIPredicate::ult,
                                            id, n);
      auto guard = scf::IfOp::create(in, loc, inRange, /*withElse=*/false);
      OpBuilder body = guard.getThenBodyBuilder();
      IRMapping map;
      map.map(par.getInductionVars(),
              delinearize(body, loc, id, lbs, steps, trips));
      for (Operation &op : par.getBody()->without_terminator())
        body.clone(op, map);
    });
    par.erase();
    return success();
  }

  /// A matmul-shaped loop: its last two parallel loops (m, n) have at
  /// least `matmul-tile` iterations each, its body is [read-only ops] one
  /// reduction loop over k in the memref form [anything], and every load in
  /// that loop depends on m or on n, not both. One workgroup computes a
  /// T x T tile of outputs (T = matmul-tile, T*T invocations): for each
  /// k-step of T it stages the tile's operands in workgroup memory (each
  /// invocation loads one element of each), then every invocation folds T
  /// products from there. Outputs past the edge compute on clamped indices
  /// and do not store.
  LogicalResult mapTiled(scf::ParallelOp par, ArrayRef<int64_t> lbs,
                         ArrayRef<int64_t> steps, ArrayRef<int64_t> trips) {
    int64_t t = matmulTile;
    unsigned rank = par.getNumLoops();
    if (t < 2 || t * t > 1024 || rank < 2 || trips[rank - 1] < t ||
        trips[rank - 2] < t)
      return failure();
    scf::ForOp loop = reductionLoopOf(par);
    if (!loop)
      return failure();
    auto nest = matchReductionNest(loop);
    if (failed(nest) || nest->iterForm || nest->loops.size() != 1 ||
        nest->total < t)
      return failure();
    Value ivM = par.getInductionVars()[rank - 2];
    Value ivN = par.getInductionVars()[rank - 1];
    Value ivK = loop.getInductionVar();
    // What each value of the body depends on: bit 0 m, bit 1 n.
    llvm::DenseMap<Value, unsigned> deps;
    deps[ivM] = 1;
    deps[ivN] = 2;
    auto depOf = [&](Value v) {
      auto it = deps.find(v);
      return it == deps.end() ? 0u : it->second;
    };
    auto note = [&](Operation &op) {
      unsigned d = 0;
      for (Value v : op.getOperands())
        d |= depOf(v);
      for (Value r : op.getResults())
        deps[r] = d;
    };
    for (Operation &op : par.getBody()->without_terminator()) {
      if (&op == loop.getOperation())
        break;
      note(op);
    }
    Block *body = loop.getBody();
    SmallVector<memref::LoadOp> staged;
    SmallVector<bool> sideA; // staged[i] depends on m (or on neither)
    for (Operation &op : body->without_terminator()) {
      note(op);
      auto ld = dyn_cast<memref::LoadOp>(op);
      if (!ld || ld == nest->accLoad)
        continue;
      unsigned d = depOf(ld.getResult());
      Type et = ld.getType();
      if (d == 3 || (!et.isF32() && !et.isInteger(32)))
        return failure();
      staged.push_back(ld);
      sideA.push_back(d != 2);
    }
    // Each output has its own accumulator (as a parallel loop's must).
    unsigned accDeps = 0;
    for (Value idx : nest->accStore.getIndices())
      accDeps |= depOf(idx);
    if (accDeps != 3)
      return failure();
    Location loc = par.getLoc();
    MLIRContext *ctx = par.getContext();
    auto wgSpace = gpu::AddressSpaceAttr::get(ctx, gpu::AddressSpace::Workgroup);
    SmallVector<Type> shared;
    for (memref::LoadOp ld : staged)
      shared.push_back(MemRefType::get({t, t}, ld.getType(),
                                       MemRefLayoutAttrInterface(), wgSpace));
    int64_t tilesM = (trips[rank - 2] + t - 1) / t;
    int64_t tilesN = (trips[rank - 1] + t - 1) / t;
    int64_t batch = 1;
    for (unsigned d = 0; d + 2 < rank; ++d)
      batch *= trips[d];
    // Workgroup id: (batch dims..., tile of m, tile of n), row-major.
    SmallVector<int64_t> gridTrips(trips.begin(), trips.end() - 2);
    gridTrips.append({tilesM, tilesN});
    SmallVector<int64_t> zeros(gridTrips.size(), 0), ones(gridTrips.size(), 1);
    OpBuilder b(par);
    launch(
        b, loc, batch * tilesM * tilesN, t * t,
        [&](OpBuilder &in, Value block, Value tid, ArrayRef<BlockArgument> sh) {
          auto c = [&](OpBuilder &bb, int64_t v) {
            return arith::ConstantIndexOp::create(bb, loc, v).getResult();
          };
          SmallVector<Value> g =
              delinearize(in, loc, block, zeros, ones, gridTrips);
          Value ti = arith::DivUIOp::create(in, loc, tid, c(in, t));
          Value tj = arith::RemUIOp::create(in, loc, tid, c(in, t));
          // This invocation's (m, n) position, and the same clamped into
          // range for everything it loads.
          auto axis = [&](unsigned d, Value tile, Value lane, Value &pos) {
            pos = arith::AddIOp::create(
                in, loc, arith::MulIOp::create(in, loc, tile, c(in, t)), lane);
            Value last = c(in, trips[d] - 1);
            Value clamped = arith::MinUIOp::create(in, loc, pos, last);
            return arith::AddIOp::create(
                       in, loc, c(in, lbs[d]),
                       arith::MulIOp::create(in, loc, clamped, c(in, steps[d])))
                .getResult();
          };
          Value posM, posN;
          IRMapping map;
          for (unsigned d = 0; d + 2 < rank; ++d)
            map.map(par.getInductionVars()[d],
                    arith::AddIOp::create(
                        in, loc, c(in, lbs[d]),
                        arith::MulIOp::create(in, loc, g[d], c(in, steps[d]))));
          map.map(ivM, axis(rank - 2, g[rank - 2], ti, posM));
          map.map(ivN, axis(rank - 1, g[rank - 1], tj, posN));
          for (Operation &op : par.getBody()->without_terminator()) {
            if (&op == loop.getOperation())
              break;
            in.clone(op, map);
          }
          int64_t kTrips = nest->trips[0], klb = nest->lbs[0],
                  kst = nest->steps[0];
          Value identity =
              arith::getIdentityValue(nest->kind, nest->type, in, loc);
          auto kTiles = scf::ForOp::create(
              in, loc, c(in, 0), c(in, kTrips), c(in, t), ValueRange{identity},
              [&](OpBuilder &kb, Location loc, Value k0, ValueRange acc) {
                // Stage: A-side loads at (own m, k0 + tj), B-side at
                // (k0 + ti, own n); k clamped to the last iteration.
                for (auto [i, ld] : llvm::enumerate(staged)) {
                  IRMapping sm = map;
                  Value kl = arith::MinUIOp::create(
                      kb, loc,
                      arith::AddIOp::create(kb, loc, k0, sideA[i] ? tj : ti),
                      c(kb, kTrips - 1));
                  sm.map(ivK, arith::AddIOp::create(
                                  kb, loc, c(kb, klb),
                                  arith::MulIOp::create(kb, loc, kl, c(kb, kst))));
                  // The load's operands, computed in the loop body.
                  llvm::SetVector<Operation *> slice;
                  SmallVector<Operation *> work = {ld.getOperation()};
                  while (!work.empty()) {
                    Operation *op = work.pop_back_val();
                    for (Value v : op->getOperands())
                      if (Operation *def = v.getDefiningOp())
                        if (def->getBlock() == body && slice.insert(def))
                          work.push_back(def);
                  }
                  for (Operation &op : body->without_terminator())
                    if (slice.contains(&op))
                      kb.clone(op, sm);
                  Value v = kb.clone(*ld, sm)->getResult(0);
                  memref::StoreOp::create(kb, loc, v, sh[i], ValueRange{ti, tj});
                }
                gpu::BarrierOp::create(kb, loc);
                // Fold the tile's k-step from workgroup memory.
                Value count = c(kb, t);
                if (kTrips % t)
                  count = arith::MinUIOp::create(
                      kb, loc, count,
                      arith::SubIOp::create(kb, loc, c(kb, kTrips), k0));
                auto inner = scf::ForOp::create(
                    kb, loc, c(kb, 0), count, c(kb, 1), ValueRange{acc[0]},
                    [&](OpBuilder &ib, Location loc, Value kk, ValueRange a) {
                      IRMapping cm = map;
                      Value k = arith::AddIOp::create(ib, loc, k0, kk);
                      cm.map(ivK, arith::AddIOp::create(
                                      ib, loc, c(ib, klb),
                                      arith::MulIOp::create(ib, loc, k, c(ib, kst))));
                      for (auto [i, ld] : llvm::enumerate(staged))
                        cm.map(ld.getResult(),
                               memref::LoadOp::create(
                                   ib, loc, sh[i],
                                   sideA[i] ? ValueRange{ti, kk}
                                            : ValueRange{kk, tj}));
                      for (Operation &op : body->without_terminator()) {
                        auto ld = dyn_cast<memref::LoadOp>(op);
                        if ((ld && llvm::is_contained(staged, ld)) ||
                            &op == nest->accLoad || &op == nest->combine ||
                            &op == nest->accStore)
                          continue;
                        ib.clone(op, cm);
                      }
                      scf::YieldOp::create(
                          ib, loc,
                          arith::getReductionOp(nest->kind, ib, loc, a[0],
                                                cm.lookup(nest->term)));
                    });
                gpu::BarrierOp::create(kb, loc);
                scf::YieldOp::create(kb, loc, inner.getResults());
              });
          // Outputs inside the iteration space store and run what followed.
          Value inM = arith::CmpIOp::create(in, loc, arith::CmpIPredicate::ult,
                                            posM, c(in, trips[rank - 2]));
          Value inN = arith::CmpIOp::create(in, loc, arith::CmpIPredicate::ult,
                                            posN, c(in, trips[rank - 1]));
          auto fin = scf::IfOp::create(
              in, loc, arith::AndIOp::create(in, loc, inM, inN),
              /*withElse=*/false);
          OpBuilder f = fin.getThenBodyBuilder();
          Value old = f.clone(*nest->accLoad, map)->getResult(0);
          map.map(nest->combine->getResult(0),
                  arith::getReductionOp(nest->kind, f, loc, old,
                                        kTiles.getResult(0)));
          f.clone(*nest->accStore, map);
          bool after = false;
          for (Operation &op : par.getBody()->without_terminator()) {
            if (after)
              f.clone(op, map);
            after |= &op == loop.getOperation();
          }
        },
        shared);
    return success();
  }

  /// The parallel body as [read-only ops] reduction-nest [anything], with
  /// few enough outputs for one workgroup each and a long enough
  /// reduction: one workgroup per output, its lanes taking every
  /// W-th point of the nest, the partial results combined in workgroup
  /// memory; invocation 0 finishes (the store, the ops after the nest).
  LogicalResult mapCooperative(scf::ParallelOp par, ArrayRef<int64_t> lbs,
                               ArrayRef<int64_t> steps, ArrayRef<int64_t> trips,
                               int64_t outputs) {
    if (reduction == "serial" || outputs > kMaxGridX)
      return failure();
    scf::ForOp top = reductionLoopOf(par);
    if (!top)
      return failure();
    auto nest = matchReductionNest(top);
    if (failed(nest) || nest->total < minCooperativeTrips)
      return failure();
    // Lanes: a power of two no larger than the nest (every lane has work).
    int64_t w = 1;
    while (w * 2 <= std::min<int64_t>(workgroupSize, nest->total))
      w *= 2;
    Location loc = par.getLoc();
    OpBuilder b(par);
    auto shared = MemRefType::get(
        {w}, nest->type, MemRefLayoutAttrInterface(),
        gpu::AddressSpaceAttr::get(par.getContext(),
                                   gpu::AddressSpace::Workgroup));
    launch(
        b, loc, outputs, w,
        [&](OpBuilder &in, Value block, Value tid, ArrayRef<BlockArgument> sh) {
          auto c = [&](int64_t v) {
            return arith::ConstantIndexOp::create(in, loc, v).getResult();
          };
          IRMapping map;
          map.map(par.getInductionVars(),
                  delinearize(in, loc, block, lbs, steps, trips));
          for (Operation &op : par.getBody()->without_terminator()) {
            if (&op == top.getOperation())
              break;
            in.clone(op, map);
          }
          // The lane's share of the nest.
          Value identity = arith::getIdentityValue(nest->kind, nest->type, in,
                                                   loc);
          auto lanes = scf::ForOp::create(
              in, loc, tid, c(nest->total), c(w), ValueRange{identity},
              [&](OpBuilder &lb, Location loc, Value t, ValueRange partial) {
                SmallVector<Value> ivs = delinearize(lb, loc, t, nest->lbs,
                                                     nest->steps, nest->trips);
                for (auto [i, loop] : llvm::enumerate(nest->loops)) {
                  map.map(loop.getInductionVar(), ivs[i]);
                  if (nest->iterForm)
                    map.map(loop.getRegionIterArgs()[0], partial[0]);
                  for (Operation &op : loop.getBody()->without_terminator())
                    if (!isa<scf::ForOp>(op) && &op != nest->accLoad &&
                        &op != nest->combine && &op != nest->accStore)
                      lb.clone(op, map);
                }
                Value next;
                if (!nest->iterForm) {
                  next = arith::getReductionOp(nest->kind, lb, loc, partial[0],
                                               map.lookup(nest->term));
                } else {
                  next = map.lookup(
                      nest->loops.back().getBody()->getTerminator()->getOperand(0));
                }
                scf::YieldOp::create(lb, loc, next);
              });
          Value total = combineLanes(in, loc, lanes.getResult(0), tid, sh[0], w,
                                     nest->kind);
          // Invocation 0 finishes the output.
          Value first = arith::CmpIOp::create(in, loc, arith::CmpIPredicate::eq,
                                              tid, c(0));
          auto fin = scf::IfOp::create(in, loc, first, /*withElse=*/false);
          OpBuilder f = fin.getThenBodyBuilder();
          if (!nest->iterForm) {
            Value old = f.clone(*nest->accLoad, map)->getResult(0);
            Value sum = arith::getReductionOp(nest->kind, f, loc, old, total);
            map.map(nest->combine->getResult(0), sum);
            f.clone(*nest->accStore, map);
          } else {
            Value init = map.lookupOrDefault(top.getInitArgs()[0]);
            map.map(top.getResult(0),
                    arith::getReductionOp(nest->kind, f, loc, init, total));
          }
          bool after = false;
          for (Operation &op : par.getBody()->without_terminator()) {
            if (after)
              f.clone(op, map);
            after |= &op == top.getOperation();
          }
        },
        TypeRange{shared});
    return success();
  }

  /// Combines each lane's `partial` over the workgroup of `w` lanes, using
  /// `shared` (w slots of workgroup memory); the result is valid in lane 0.
  /// By a tree in workgroup memory, or by subgroup reductions and then one
  /// slot per subgroup (any subgroup size: the count comes from the device).
  Value combineLanes(OpBuilder &b, Location loc, Value partial, Value tid,
                     Value shared, int64_t w, arith::AtomicRMWKind kind) {
    auto c = [&](int64_t v) {
      return arith::ConstantIndexOp::create(b, loc, v).getResult();
    };
    Value zero = c(0);
    if (reduction != "subgroup") {
      memref::StoreOp::create(b, loc, partial, shared, tid);
      gpu::BarrierOp::create(b, loc);
      for (int64_t s = w / 2; s >= 1; s /= 2) {
        Value active = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::ult,
                                             tid, c(s));
        auto step = scf::IfOp::create(b, loc, active, /*withElse=*/false);
        OpBuilder t = step.getThenBodyBuilder();
        Value mine = memref::LoadOp::create(t, loc, shared, tid);
        Value offset = arith::ConstantIndexOp::create(t, loc, s);
        Value other = memref::LoadOp::create(
            t, loc, shared, arith::AddIOp::create(t, loc, tid, offset).getResult());
        memref::StoreOp::create(
            t, loc, arith::getReductionOp(kind, t, loc, mine, other), shared, tid);
        gpu::BarrierOp::create(b, loc);
      }
      return memref::LoadOp::create(b, loc, shared, zero);
    }
    Value r = gpu::SubgroupReduceOp::create(b, loc, partial, subgroupKind(kind),
                                            /*uniform=*/false);
    if (kind == arith::AtomicRMWKind::maximumf ||
        kind == arith::AtomicRMWKind::minimumf) {
      // Subgroup min/max leave NaN undefined; a NaN anywhere makes the
      // result NaN, as arith's maximumf/minimumf do.
      Type t = partial.getType();
      Value isNan = arith::CmpFOp::create(b, loc, arith::CmpFPredicate::UNO,
                                          partial, partial);
      Value one = arith::ConstantOp::create(b, loc, b.getFloatAttr(t, 1.0));
      Value none = arith::ConstantOp::create(b, loc, b.getFloatAttr(t, 0.0));
      Value nans = gpu::SubgroupReduceOp::create(
          b, loc, arith::SelectOp::create(b, loc, isNan, one, none),
          gpu::AllReduceOperation::ADD, /*uniform=*/false);
      Value any = arith::CmpFOp::create(b, loc, arith::CmpFPredicate::OGT,
                                        nans, none);
      Value nan = arith::ConstantOp::create(
          b, loc, b.getFloatAttr(t, APFloat::getNaN(
                                        cast<FloatType>(t).getFloatSemantics())));
      r = arith::SelectOp::create(b, loc, any, nan, r);
    }
    Value lane = gpu::LaneIdOp::create(b, loc, /*upper_bound=*/nullptr);
    Value sg = gpu::SubgroupIdOp::create(b, loc, /*upper_bound=*/nullptr);
    Value count = gpu::NumSubgroupsOp::create(b, loc, /*upper_bound=*/nullptr);
    Value leader = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::eq,
                                         lane, zero);
    auto write = scf::IfOp::create(b, loc, leader, /*withElse=*/false);
    OpBuilder wb = write.getThenBodyBuilder();
    memref::StoreOp::create(wb, loc, r, shared, sg);
    gpu::BarrierOp::create(b, loc);
    Value identity = arith::getIdentityValue(kind, partial.getType(), b, loc);
    auto sum = scf::ForOp::create(
        b, loc, zero, count, c(1), ValueRange{identity},
        [&](OpBuilder &fb, Location loc, Value i, ValueRange acc) {
          Value v = memref::LoadOp::create(fb, loc, shared, i);
          scf::YieldOp::create(
              fb, loc, arith::getReductionOp(kind, fb, loc, acc[0], v));
        });
    return sum.getResult(0);
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
    expandIntegerPowers(f);
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
      launchLinear(b, op.getLoc(), 1, 1, [&](OpBuilder &in, Value) {
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

namespace {

struct ParallelDimsFirstPass
    : kiln::impl::ParallelDimsFirstBase<ParallelDimsFirstPass> {
  void runOnOperation() override {
    SmallVector<linalg::GenericOp> generics;
    getOperation().walk([&](linalg::GenericOp g) { generics.push_back(g); });
    IRRewriter rewriter(&getContext());
    for (linalg::GenericOp g : generics) {
      SmallVector<unsigned> order;
      auto iters = g.getIteratorTypesArray();
      for (auto [i, t] : llvm::enumerate(iters))
        if (t == utils::IteratorType::parallel)
          order.push_back(i);
      for (auto [i, t] : llvm::enumerate(iters))
        if (t != utils::IteratorType::parallel)
          order.push_back(i);
      bool identity = true;
      for (auto [i, o] : llvm::enumerate(order))
        identity &= i == o;
      if (identity)
        continue;
      rewriter.setInsertionPoint(g);
      if (failed(linalg::interchangeGenericOp(rewriter, g, order))) {
        g.emitOpError("cannot put the parallel loops first");
        return signalPassFailure();
      }
    }
  }
};

} // namespace

mlir::Value kiln::bufferBehindViews(mlir::Value v, bool throughSubviews) {
  while (Operation *def = v.getDefiningOp()) {
    if (auto e = dyn_cast<memref::ExpandShapeOp>(def))
      v = e.getSrc();
    else if (auto c = dyn_cast<memref::CollapseShapeOp>(def))
      v = c.getSrc();
    else if (auto c = dyn_cast<memref::CastOp>(def))
      v = c.getSource();
    else if (auto sv = dyn_cast<memref::SubViewOp>(def);
             sv && throughSubviews)
      v = sv.getSource();
    else
      break;
  }
  return v;
}
