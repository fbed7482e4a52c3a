//===- OutlineParallelLoops.cpp - scf.parallel through a thread pool ------===//
#include "passes/Passes.h"

#include "mlir/Conversion/LLVMCommon/TypeConverter.h"
#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/LLVMIR/LLVMDialect.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/Dialect/Utils/StaticValueUtils.h"
#include "mlir/IR/IRMapping.h"
#include "mlir/Transforms/RegionUtils.h"

#include <map>

namespace kiln {
#define GEN_PASS_DEF_OUTLINEPARALLELLOOPS
#include "passes/Passes.h.inc"
} // namespace kiln

using namespace mlir;

namespace {

struct OutlineParallelLoopsPass
    : kiln::impl::OutlineParallelLoopsBase<OutlineParallelLoopsPass> {
  void runOnOperation() override {
    ModuleOp module = getOperation();
    MLIRContext *ctx = &getContext();
    LLVMTypeConverter converter(ctx);
    auto ptrType = LLVM::LLVMPointerType::get(ctx);
    SmallVector<func::FuncOp> funcs(module.getOps<func::FuncOp>());
    bodies.clear();
    for (func::FuncOp func : funcs) {
      if (func.isExternal())
        continue;
      unsigned envIndex = func.getNumArguments();
      if (failed(func.insertArgument(envIndex, ptrType, {}, func.getLoc())))
        return signalPassFailure();
      Value env = func.getArgument(envIndex);
      SmallVector<scf::ParallelOp> loops;
      func.walk([&](scf::ParallelOp loop) {
        if (!loop->getParentOfType<scf::ParallelOp>())
          loops.push_back(loop);
      });
      unsigned counter = 0;
      Scratch scratch;
      scratch.entry = &func.getBody().front();
      for (scf::ParallelOp loop : loops)
        if (failed(outline(module, func, loop, env, converter, counter, scratch)))
          return signalPassFailure();
    }
  }

  /// The bodies outlined so far, by their text (name aside).
  std::map<std::string, func::FuncOp> bodies;

  /// Stack slots for packing captures, made once at the function's entry and
  /// reused by every call (each call returns before the next one packs): a
  /// large model would otherwise carry thousands of allocas in one block,
  /// which LLVM's InstCombine and code generation handle in quadratic time.
  struct Scratch {
    Block *entry;
    SmallVector<Value> arrays;                 // by capture count
    llvm::DenseMap<Type, SmallVector<Value>> slots; // by lowered type
    Value array(OpBuilder &b, Location loc, size_t n) {
      n = std::max<size_t>(n, 1);
      OpBuilder::InsertionGuard g(b);
      b.setInsertionPointToStart(entry);
      auto ptr = LLVM::LLVMPointerType::get(b.getContext());
      Value one = LLVM::ConstantOp::create(b, loc, b.getI64Type(),
                                           b.getI64IntegerAttr(1));
      if (arrays.size() <= n)
        arrays.resize(n + 1);
      if (!arrays[n])
        arrays[n] = LLVM::AllocaOp::create(
            b, loc, ptr, LLVM::LLVMArrayType::get(ptr, n), one);
      return arrays[n];
    }
    Value slot(OpBuilder &b, Location loc, Type t, unsigned index) {
      SmallVector<Value> &pool = slots[t];
      if (pool.size() <= index) {
        OpBuilder::InsertionGuard g(b);
        b.setInsertionPointToStart(entry);
        Value one = LLVM::ConstantOp::create(b, loc, b.getI64Type(),
                                             b.getI64IntegerAttr(1));
        pool.push_back(LLVM::AllocaOp::create(
            b, loc, LLVM::LLVMPointerType::get(b.getContext()), t, one));
      }
      return pool[index];
    }
  };

  LogicalResult outline(ModuleOp module, func::FuncOp func,
                        scf::ParallelOp loop, Value env,
                        LLVMTypeConverter &converter, unsigned &counter,
                        Scratch &scratch) {
    MLIRContext *ctx = &getContext();
    Location loc = loop.getLoc();
    auto ptrType = LLVM::LLVMPointerType::get(ctx);
    auto i64 = IntegerType::get(ctx, 64);
    if (!loop.getInitVals().empty())
      return success(); // reductions stay serial
    // Split the first dim that has more than one static iteration.
    unsigned numDims = loop.getNumLoops();
    int64_t dim = -1, trips = 0, lb = 0, step = 1;
    for (unsigned d = 0; d < numDims; ++d) {
      auto l = getConstantIntValue(loop.getLowerBound()[d]);
      auto u = getConstantIntValue(loop.getUpperBound()[d]);
      auto s = getConstantIntValue(loop.getStep()[d]);
      if (!l || !u || !s || *s <= 0)
        continue;
      int64_t n = (*u - *l + *s - 1) / *s;
      if (n > 1) {
        dim = d;
        trips = n;
        lb = *l;
        step = *s;
        break;
      }
    }
    if (dim < 0)
      return success();

    // Values the loop reads from outside; constants are cloned instead.
    llvm::SetVector<Value> above;
    getUsedValuesDefinedAbove(loop.getRegion(), above);
    above.insert(loop->operand_begin(), loop->operand_end()); // the bounds
    SmallVector<Value> captures;
    SmallVector<Operation *> constants;
    for (Value v : above) {
      Operation *def = v.getDefiningOp();
      if (def && def->hasTrait<OpTrait::ConstantLike>())
        constants.push_back(def);
      else
        captures.push_back(v);
    }
    SmallVector<Type> llvmTypes;
    for (Value v : captures) {
      Type t = converter.convertType(v.getType());
      if (!t)
        return loop.emitOpError("captures a value of type ")
               << v.getType() << " that has no LLVM form";
      llvmTypes.push_back(t);
    }

    // The body: void @<func>_par<N>(ptr ctx, index begin, index end).
    OpBuilder mb(module.getBodyRegion());
    mb.setInsertionPointAfter(func);
    std::string name = (func.getName() + "_par" + Twine(counter++)).str();
    auto indexType = IndexType::get(ctx);
    auto bodyType = FunctionType::get(ctx, {ptrType, indexType, indexType}, {});
    auto body = func::FuncOp::create(mb, loc, name, bodyType);
    body.setPrivate();
    Block *entry = body.addEntryBlock();
    OpBuilder b = OpBuilder::atBlockBegin(entry);
    IRMapping map;
    for (Operation *c : constants)
      b.clone(*c, map);
    for (auto [i, v] : llvm::enumerate(captures)) {
      Value slot = LLVM::GEPOp::create(b, loc, ptrType, ptrType,
                                       entry->getArgument(0),
                                       ArrayRef<LLVM::GEPArg>{int32_t(i)});
      Value storage = LLVM::LoadOp::create(b, loc, ptrType, slot);
      Value lowered = LLVM::LoadOp::create(b, loc, llvmTypes[i], storage);
      map.map(v, UnrealizedConversionCastOp::create(b, loc, v.getType(), lowered)
                     .getResult(0));
    }
    auto cloned = cast<scf::ParallelOp>(b.clone(*loop, map));
    Value lbV = arith::ConstantIndexOp::create(b, loc, lb);
    Value stepV = arith::ConstantIndexOp::create(b, loc, step);
    auto bound = [&](Value it) -> Value {
      return arith::AddIOp::create(b, loc, lbV,
                                   arith::MulIOp::create(b, loc, it, stepV));
    };
    cloned->setOperand(dim, bound(entry->getArgument(1)));
    cloned->setOperand(numDims + dim, bound(entry->getArgument(2)));
    // The bounds were created after the clone; keep them before it.
    cloned->moveBefore(entry, entry->end());
    func::ReturnOp::create(b, loc);
    // A body the same as one outlined before (the next layer's copy: its
    // buffers are captures) is not kept twice; later passes and LLVM then
    // see each distinct body once.
    {
      StringAttr name = body.getSymNameAttr();
      body.setSymName("__kiln_body");
      std::string text;
      llvm::raw_string_ostream os(text);
      body->print(os, OpPrintingFlags().printGenericOpForm().useLocalScope());
      body.setSymNameAttr(name);
      auto [it, fresh] = bodies.try_emplace(text, body);
      if (!fresh) {
        body.erase();
        body = it->second;
      }
    }

    // The call site: pack the captures, call env->parallel_for.
    b.setInsertionPoint(loop);
    Value array = scratch.array(b, loc, captures.size());
    llvm::DenseMap<Type, unsigned> used;
    for (auto [i, v] : llvm::enumerate(captures)) {
      Value lowered =
          UnrealizedConversionCastOp::create(b, loc, llvmTypes[i], v).getResult(0);
      Value storage = scratch.slot(b, loc, llvmTypes[i], used[llvmTypes[i]]++);
      LLVM::StoreOp::create(b, loc, lowered, storage);
      Value slot = LLVM::GEPOp::create(b, loc, ptrType, ptrType, array,
                                       ArrayRef<LLVM::GEPArg>{int32_t(i)});
      LLVM::StoreOp::create(b, loc, storage, slot);
    }
    Value fn = func::ConstantOp::create(b, loc, bodyType,
                                        SymbolRefAttr::get(body));
    Value fnPtr =
        UnrealizedConversionCastOp::create(b, loc, ptrType, fn).getResult(0);
    Value parallelFor = LLVM::LoadOp::create(b, loc, ptrType, env);
    Value n = LLVM::ConstantOp::create(b, loc, i64, b.getI64IntegerAttr(trips));
    auto calleeType = LLVM::LLVMFunctionType::get(
        LLVM::LLVMVoidType::get(ctx), {ptrType, ptrType, ptrType, i64});
    LLVM::CallOp::create(b, loc, calleeType,
                         ValueRange{parallelFor, env, fnPtr, array, n});
    loop.erase();
    return success();
  }
};

} // namespace
