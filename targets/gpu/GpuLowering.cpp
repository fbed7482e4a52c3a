//===- GpuLowering.cpp - Shared GPU lowering: kernels + dispatches --------===//
//
// kiln -> linalg on tensors -> buffers -> parallel loops -> one gpu.launch
// per top-level loop (kiln-map-parallel-loops-to-gpu) -> outlined kernels.
// The host side of each function is then read off as a dispatch list
// (kernel, workgroup count, buffers bound), so no host code is compiled for
// any device; each GPU target only turns the outlined kernels into its
// binary form (SPIR-V, PTX/cubin).
//
//===----------------------------------------------------------------------===//
#include "targets/gpu/GpuLowering.h"
#include "passes/Passes.h"
#include "targets/common/RunPipeline.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/GPU/IR/GPUDialect.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/Utils/StaticValueUtils.h"

using namespace mlir;

namespace kiln {

std::string gpuLoweringPipeline(const GpuLoweringOptions &options,
                                llvm::StringRef stopAfter) {
  std::string p =
      "builtin.module(" + linalgPhasePipeline(options.maxKernelOperands);
  if (stopAfter == "linalg")
    return p + ")";
  p += ", " + bufferizePhasePipeline() + ", " +
       "func.func(kiln-parallel-dims-first, convert-linalg-to-parallel-loops), "
       "kiln-approximate-math, "
       "func.func(kiln-map-parallel-loops-to-gpu{workgroup-size=" +
       std::to_string(options.workgroupSize) +
       " reduction=" + options.reduction +
       "}), convert-math-to-funcs, gpu-kernel-outlining, canonicalize)";
  return p;
}

namespace {

/// Reads one lowered host function as a dispatch list.
/// The bytes of a global's initial value, one byte per bool.
FailureOr<std::vector<char>> globalBytes(memref::GlobalOp g) {
  auto init = dyn_cast_or_null<DenseElementsAttr>(g.getInitialValueAttr());
  if (!init || !g.getType().hasStaticShape())
    return failure();
  Type et = init.getElementType();
  int64_t n = init.getNumElements();
  std::vector<char> bytes;
  if (et.isInteger(1)) {
    for (bool v : init.getValues<bool>())
      bytes.push_back(v ? 1 : 0);
    return bytes;
  }
  size_t es = et.getIntOrFloatBitWidth() / 8;
  ArrayRef<char> raw = init.getRawData();
  if (init.isSplat()) {
    for (int64_t i = 0; i < n; ++i)
      bytes.insert(bytes.end(), raw.begin(), raw.begin() + es);
    return bytes;
  }
  bytes.assign(raw.begin(), raw.end());
  return bytes;
}

FailureOr<GpuFunction>
dispatchList(func::FuncOp fn, unsigned numInputs, unsigned numOutputs,
             const llvm::SmallDenseSet<unsigned> &cacheArgs,
             llvm::StringMap<unsigned> &kernelIndex,
             std::vector<std::string> &kernels,
             std::vector<std::string> &kernelModules,
             std::map<std::string, GpuGlobal> &globals) {
  GpuFunction g;
  g.function = fn.getName().str();
  SmallVector<std::string> weights;
  if (auto names = fn->getAttrOfType<ArrayAttr>("kiln.weights"))
    for (Attribute a : names)
      weights.push_back(cast<StringAttr>(a).str());
  unsigned numArgs = fn.getNumArguments();
  if (numArgs != numInputs + weights.size() + numOutputs)
    return fn.emitError("unexpected argument layout after lowering");
  llvm::DenseMap<Value, GpuBinding> buffers;
  for (unsigned i = 0; i < numArgs; ++i) {
    // Inputs count tensors only; the paged KV cache (a memref argument)
    // is the runtime's buffer.
    unsigned tensorsBefore = 0;
    for (unsigned j = 0; j < i && j < numInputs; ++j)
      tensorsBefore += !cacheArgs.contains(j);
    GpuBinding b{GpuBinding::Input, tensorsBefore, ""};
    if (cacheArgs.contains(i))
      b = {GpuBinding::KvCache, 0, ""};
    else if (i >= numInputs && i < numInputs + weights.size())
      b = {GpuBinding::Constant, 0, weights[i - numInputs]};
    else if (i >= numInputs + weights.size())
      b = {GpuBinding::Output, unsigned(i - numInputs - weights.size()), ""};
    buffers[fn.getArgument(i)] = b;
  }
  for (Operation &op : fn.getBody().front()) {
    if (auto alloc = dyn_cast<memref::AllocOp>(op)) {
      MemRefType t = alloc.getType();
      if (!t.hasStaticShape() || !t.getLayout().isIdentity())
        return alloc.emitOpError("GPU targets: temporaries must be static");
      int64_t bytes = t.getNumElements() *
                      std::max<int64_t>(1, t.getElementTypeBitWidth() / 8);
      buffers[alloc] = {GpuBinding::Temporary,
                        unsigned(g.temporaryBytes.size()), ""};
      g.temporaryBytes.push_back(bytes);
      continue;
    }
    if (auto get = dyn_cast<memref::GetGlobalOp>(op)) {
      auto global = SymbolTable::lookupNearestSymbolFrom<memref::GlobalOp>(
          get, get.getNameAttr());
      auto bytes = global ? globalBytes(global) : FailureOr<std::vector<char>>();
      if (failed(bytes))
        return get.emitOpError("GPU targets: a global without a constant value");
      std::string name = "__gpu." + fn.getName().str() + "." +
                         get.getName().str();
      globals[name] = {global.getType(), std::move(*bytes)};
      buffers[get] = {GpuBinding::Constant, 0, name};
      continue;
    }
    if (auto launch = dyn_cast<gpu::LaunchFuncOp>(op)) {
      std::string name = (launch.getKernelModuleName().getValue() + "::" +
                          launch.getKernelName().getValue())
                             .str();
      auto [it, fresh] = kernelIndex.try_emplace(name, kernels.size());
      if (fresh) {
        kernels.push_back(launch.getKernelName().getValue().str());
        kernelModules.push_back(launch.getKernelModuleName().getValue().str());
      }
      GpuDispatch d;
      d.kernel = it->second;
      gpu::KernelDim3 grid = launch.getGridSizeOperandValues();
      gpu::KernelDim3 block = launch.getBlockSizeOperandValues();
      Value dims[6] = {grid.x, grid.y, grid.z, block.x, block.y, block.z};
      for (int i = 0; i < 6; ++i) {
        auto n = getConstantIntValue(dims[i]);
        if (!n || *n <= 0 || *n > (1 << 30))
          return launch.emitOpError("GPU targets: the grid must be static");
        (i < 3 ? d.workgroups[i] : d.workgroupSize[i - 3]) =
            static_cast<uint32_t>(*n);
      }
      for (Value arg : launch.getKernelOperands()) {
        auto b = buffers.find(bufferBehindViews(arg));
        if (!isa<MemRefType>(arg.getType()) || b == buffers.end())
          return launch.emitOpError("GPU targets: kernel argument ")
                 << arg << " is not a whole buffer";
        d.bindings.push_back(b->second);
      }
      g.dispatches.push_back(std::move(d));
      continue;
    }
    if (isa<memref::DeallocOp, func::ReturnOp, memref::ExpandShapeOp,
            memref::CollapseShapeOp, memref::CastOp, arith::ConstantOp>(op))
      continue;
    return op.emitOpError("GPU targets: stays on the host, which runs only "
                          "allocations and dispatches");
  }
  return g;
}

/// Each layer of a model outlines the same kernels again (its buffers are
/// bindings, not part of the code): keeps one gpu.module per distinct
/// kernel, so each is translated and compiled once and the artifact holds
/// it once (SmolLM2's 30 layers). Two kernels are the same when their
/// modules print the same with the module and function names replaced.
void mergeIdenticalKernels(ModuleOp work, GpuProgram &program) {
  std::map<std::string, std::string> firstByText; // text -> module name
  llvm::StringMap<std::string> replacement;       // module -> kept module
  for (auto gm : llvm::to_vector(work.getOps<gpu::GPUModuleOp>())) {
    auto funcs = llvm::to_vector(gm.getOps<gpu::GPUFuncOp>());
    if (funcs.size() != 1)
      continue;
    OwningOpRef<gpu::GPUModuleOp> copy = cast<gpu::GPUModuleOp>(gm->clone());
    copy->setSymName("m");
    SymbolTable::setSymbolName(*copy.get().getOps<gpu::GPUFuncOp>().begin(), "f");
    std::string text;
    llvm::raw_string_ostream os(text);
    copy->print(os);
    auto [it, fresh] = firstByText.try_emplace(text, gm.getName().str());
    if (!fresh) {
      replacement[gm.getName()] = it->second;
      gm.erase();
    }
  }
  if (replacement.empty())
    return;
  // The kept kernels, in first-use order; dispatches renumbered.
  std::vector<std::string> kernels, modules;
  std::vector<unsigned> newIndex(program.kernels.size());
  llvm::StringMap<unsigned> indexOf;
  for (size_t k = 0; k < program.kernels.size(); ++k) {
    std::string module = program.kernelModules[k], kernel = program.kernels[k];
    if (auto r = replacement.find(module); r != replacement.end()) {
      module = r->second;
      auto kept = work.lookupSymbol<gpu::GPUModuleOp>(module);
      kernel = (*kept.getOps<gpu::GPUFuncOp>().begin()).getName().str();
    }
    auto [it, fresh] = indexOf.try_emplace(module + "::" + kernel, kernels.size());
    if (fresh) {
      kernels.push_back(kernel);
      modules.push_back(module);
    }
    newIndex[k] = it->second;
  }
  for (GpuFunction &f : program.functions)
    for (GpuDispatch &d : f.dispatches)
      d.kernel = newIndex[d.kernel];
  program.mergedKernels = program.kernels.size() - kernels.size();
  program.kernels = std::move(kernels);
  program.kernelModules = std::move(modules);
}

} // namespace

FailureOr<OwningOpRef<ModuleOp>> lowerForGpu(ModuleOp module,
                                             const GpuLoweringOptions &options,
                                             StringRef stopAfter,
                                             llvm::raw_ostream &os,
                                             GpuProgram &program) {
  Location loc = module.getLoc();
  OwningOpRef<ModuleOp> work = cast<ModuleOp>(module->clone());
  // The hand-built kernels (KV cache, packed weights) take their scalar GPU
  // form in this module.
  (*work)->setAttr("kiln.gpu_kernels", UnitAttr::get(module.getContext()));
  if (failed(runPipeline(*work, gpuLoweringPipeline(options, stopAfter),
                         "GPU")))
    return failure();
  if (stopAfter == "linalg" || stopAfter == "bufferize") {
    work->print(os);
    return OwningOpRef<ModuleOp>();
  }
  program.workgroupSize = options.workgroupSize;
  llvm::StringMap<unsigned> kernelIndex;
  for (auto fn : module.getOps<func::FuncOp>()) {
    unsigned numInputs = fn.getNumArguments();
    llvm::SmallDenseSet<unsigned> cacheArgs;
    for (auto [i, t] : llvm::enumerate(fn.getArgumentTypes()))
      if (isa<MemRefType>(t))
        cacheArgs.insert(i);
    auto lowered = work->lookupSymbol<func::FuncOp>(fn.getName());
    if (!lowered)
      return emitError(loc) << "function '" << fn.getName() << "' vanished";
    auto g = dispatchList(lowered, numInputs, fn.getNumResults(), cacheArgs,
                          kernelIndex,
                          program.kernels, program.kernelModules,
                          program.globals);
    if (failed(g))
      return failure();
    program.functions.push_back(std::move(*g));
  }
  for (auto fn : llvm::to_vector(work->getOps<func::FuncOp>()))
    fn.erase();
  for (auto g : llvm::to_vector(work->getOps<memref::GlobalOp>()))
    g.erase();
  mergeIdenticalKernels(*work, program);
  return work;
}

} // namespace kiln
