//===- CpuTarget.cpp - Native code for the host CPU -----------------------===//
//
// kiln -> linalg on tensors -> buffers -> loops -> LLVM dialect -> LLVM IR
// (optimized at O3, which vectorizes the loops for the chosen CPU) -> object
// file -> shared object (linked by ld.lld). Each function gets an exported
// entry `void kiln_<name>(void **bindings, void *env)` that the runtime calls with
// inputs, weights and outputs in that order.
//
//===----------------------------------------------------------------------===//
#include "targets/cpu/CpuTarget.h"
#include "targets/common/RunPipeline.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/IR/BuiltinAttributes.h"
#include "mlir/Pass/PassManager.h"
#include "mlir/Pass/PassRegistry.h"
#include "mlir/Target/LLVMIR/Dialect/Builtin/BuiltinToLLVMIRTranslation.h"
#include "mlir/Target/LLVMIR/Dialect/LLVMIR/LLVMToLLVMIRTranslation.h"
#include "mlir/Target/LLVMIR/Export.h"

#include "llvm/IR/IRBuilder.h"
#include "llvm/Transforms/IPO/MergeFunctions.h"
#include "llvm/IR/LegacyPassManager.h"
#include "llvm/IR/Module.h"
#include "llvm/MC/MCSubtargetInfo.h"
#include "llvm/MC/TargetRegistry.h"
#include "llvm/Passes/PassBuilder.h"
#include "llvm/Passes/StandardInstrumentations.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/MemoryBuffer.h"
#include "llvm/Support/Path.h"
#include "llvm/Support/Program.h"
#include "llvm/Support/TargetSelect.h"
#include "llvm/Target/TargetMachine.h"
#include "llvm/Target/TargetOptions.h"
#include "llvm/TargetParser/Host.h"

using namespace mlir;

namespace kiln {

std::string cpuLoweringPipeline(llvm::StringRef stopAfter) {
  std::string p = "builtin.module(" + linalgPhasePipeline();
  if (stopAfter == "linalg")
    return p + ")";
  p += ", " + bufferizePhasePipeline() + ", kiln-plan-scratch";
  if (stopAfter == "bufferize")
    return p + ")";
  p += ", kiln-vectorize-contractions, canonicalize, "
       "func.func(convert-linalg-to-parallel-loops), "
       "kiln-outline-parallel-loops, lower-affine, "
       "convert-scf-to-cf, expand-strided-metadata, lower-affine, "
       "kiln-approximate-math, kiln-empty-buffer-arguments, kiln-lower-int8-dot, "
       "convert-vector-to-llvm, finalize-memref-to-llvm, convert-math-to-funcs, "
       "convert-math-to-llvm, convert-math-to-libm, "
       "convert-arith-to-llvm, convert-index-to-llvm, "
       "convert-func-to-llvm{use-bare-ptr-memref-call-conv=1}, "
       "convert-cf-to-llvm, reconcile-unrealized-casts)";
  return p;
}

namespace {

/// The x86 features the runtime can query (cpu_device.cc's hostHasFeature).
constexpr llvm::StringRef kRuntimeCheckedFeatures[] = {
    "sse4.1",   "sse4.2",   "avx",      "avx2",       "fma",
    "bmi",      "bmi2",     "avx512f",  "avx512bw",   "avx512dq",
    "avx512vl", "avx512vnni", "avxvnni"};

std::string hostFeatures() {
  std::string features;
  for (const auto &f : llvm::sys::getHostCPUFeatures()) {
    if (!features.empty())
      features += ",";
    features += (f.second ? "+" : "-") + f.first().str();
  }
  return features;
}

/// Adds `void kiln_<fn>(void **bindings, void *env)` calling the lowered
/// function, whose last parameter is the runtime environment.
void addEntryPoint(llvm::Module &m, llvm::Function *impl,
                   const std::string &symbol) {
  llvm::LLVMContext &ctx = m.getContext();
  auto *ptrTy = llvm::PointerType::getUnqual(ctx);
  auto *fnTy = llvm::FunctionType::get(llvm::Type::getVoidTy(ctx),
                                       {ptrTy, ptrTy}, false);
  auto *entry = llvm::Function::Create(fnTy, llvm::GlobalValue::ExternalLinkage,
                                       symbol, m);
  llvm::IRBuilder<> b(llvm::BasicBlock::Create(ctx, "entry", entry));
  std::vector<llvm::Value *> args;
  for (unsigned i = 0; i + 1 < impl->arg_size(); ++i) {
    llvm::Value *slot = b.CreateConstGEP1_64(ptrTy, entry->getArg(0), i);
    args.push_back(b.CreateLoad(ptrTy, slot));
  }
  args.push_back(entry->getArg(1));
  b.CreateCall(impl, args);
  b.CreateRetVoid();
  impl->setLinkage(llvm::GlobalValue::InternalLinkage);
}

LogicalResult optimizeAndEmit(llvm::Module &m, llvm::TargetMachine &tm,
                              llvm::SmallVectorImpl<char> &object) {
  m.setDataLayout(tm.createDataLayout());
  m.setTargetTriple(tm.getTargetTriple());
  llvm::LoopAnalysisManager lam;
  llvm::FunctionAnalysisManager fam;
  llvm::CGSCCAnalysisManager cgam;
  llvm::ModuleAnalysisManager mam;
  llvm::PipelineTuningOptions tuning;
  tuning.LoopVectorization = true;
  tuning.SLPVectorization = true;
  // -time-passes and the other standard instrumentations, when asked for.
  llvm::PassInstrumentationCallbacks pic;
  llvm::StandardInstrumentations si(m.getContext(), /*DebugLogging=*/false);
  si.registerCallbacks(pic, &mam);
  llvm::PassBuilder pb(&tm, tuning, std::nullopt, &pic);
  pb.registerModuleAnalyses(mam);
  pb.registerCGSCCAnalyses(cgam);
  pb.registerFunctionAnalyses(fam);
  pb.registerLoopAnalyses(lam);
  pb.crossRegisterProxies(lam, fam, cgam, mam);
  // kiln-outline-parallel-loops already keeps one function per distinct
  // body (SmolLM2: 344 of 1,691); merge what lowering made equal after
  // that before optimizing, so each distinct body is optimized and
  // emitted once.
  {
    llvm::ModulePassManager merge;
    merge.addPass(llvm::MergeFunctionsPass());
    merge.run(m, mam);
  }
  pb.buildPerModuleDefaultPipeline(llvm::OptimizationLevel::O3).run(m, mam);

  llvm::raw_svector_ostream os(object);
  llvm::legacy::PassManager pm;
  if (tm.addPassesToEmitFile(pm, os, nullptr, llvm::CodeGenFileType::ObjectFile))
    return failure();
  pm.run(m);
  return success();
}

std::string findLinker() {
  for (const char *name : {"ld.lld-22", "ld.lld"}) {
    if (auto p = llvm::sys::findProgramByName(name, {"/usr/lib/llvm-22/bin"}))
      return *p;
    if (auto p = llvm::sys::findProgramByName(name))
      return *p;
  }
  return "";
}

/// Links a relocatable object into a shared object. Undefined symbols (libm,
/// malloc) resolve against the process that loads it.
FailureOr<std::vector<char>> linkShared(ArrayRef<char> object, Location loc) {
  std::string linker = findLinker();
  if (linker.empty())
    return emitError(loc) << "cannot find ld.lld (install lld-22)";
  llvm::SmallString<128> objPath, soPath;
  int fd;
  if (llvm::sys::fs::createTemporaryFile("kiln", "o", fd, objPath))
    return emitError(loc) << "cannot create a temporary file";
  {
    llvm::raw_fd_ostream out(fd, /*shouldClose=*/true);
    out.write(object.data(), object.size());
  }
  if (llvm::sys::fs::createTemporaryFile("kiln", "so", soPath))
    return emitError(loc) << "cannot create a temporary file";
  std::string errMsg;
  llvm::SmallVector<llvm::StringRef> args = {
      linker, "-shared", "--hash-style=gnu", "-O1", "--no-undefined-version",
      "-o", soPath, objPath};
  int rc = llvm::sys::ExecuteAndWait(linker, args, std::nullopt, {}, 0, 0,
                                     &errMsg);
  llvm::sys::fs::remove(objPath);
  if (rc != 0) {
    llvm::sys::fs::remove(soPath);
    return emitError(loc) << "linking the CPU kernels failed (" << linker
                          << " exit " << rc << ") " << errMsg;
  }
  auto buf = llvm::MemoryBuffer::getFile(soPath);
  llvm::sys::fs::remove(soPath);
  if (!buf)
    return emitError(loc) << "cannot read the linked kernels";
  return std::vector<char>((*buf)->getBufferStart(), (*buf)->getBufferEnd());
}

} // namespace

FailureOr<CpuExecutable> buildCpuExecutable(ModuleOp module,
                                            const CpuTargetOptions &options,
                                            llvm::raw_ostream &os) {
  MLIRContext *ctx = module.getContext();
  Location loc = module.getLoc();
  CpuExecutable exe;
  OwningOpRef<ModuleOp> work = cast<ModuleOp>(module->clone());

  llvm::InitializeNativeTarget();
  llvm::InitializeNativeTargetAsmPrinter();
  llvm::Triple triple(llvm::sys::getProcessTriple());
  std::string error;
  const llvm::Target *target = llvm::TargetRegistry::lookupTarget(triple, error);
  if (!target)
    return emitError(loc) << "no LLVM target for " << triple.str() << ": "
                          << error;
  bool native = options.cpu == "native";
  exe.cpu = native ? llvm::sys::getHostCPUName().str() : options.cpu;
  exe.features = native ? hostFeatures() : "";
  exe.arch = triple.getArchName().str();
  llvm::TargetOptions to;
  std::unique_ptr<llvm::TargetMachine> tm(target->createTargetMachine(
      triple, exe.cpu, exe.features, to, llvm::Reloc::PIC_, std::nullopt,
      llvm::CodeGenOptLevel::Aggressive));
  if (!tm)
    return emitError(loc) << "cannot create a target machine for CPU '"
                          << exe.cpu << "'";
  const llvm::MCSubtargetInfo *sti = tm->getMCSubtargetInfo();
  auto has = [&](llvm::StringRef f) {
    return sti->checkFeatures(("+" + f).str());
  };
  if (!native) {
    // A named CPU's features, those the runtime checks before it loads
    // the code (native builds record all of the host's).
    for (llvm::StringRef f : kRuntimeCheckedFeatures)
      if (has(f))
        exe.features += (exe.features.empty() ? "+" : ",+") + f.str();
  }
  // The 8-bit dot products the q8 kernels may use (kiln.int8_dot).
  if (triple.isX86()) {
    if ((has("avx512vnni") && has("avx512vl")) || has("avxvnni"))
      (*work)->setAttr("kiln.int8_dot", StringAttr::get(ctx, "vnni"));
    else if (has("avx2"))
      (*work)->setAttr("kiln.int8_dot", StringAttr::get(ctx, "avx2"));
  }

  bool stopInMlir = options.stopAfter == "linalg" ||
                    options.stopAfter == "bufferize" ||
                    options.stopAfter == "llvm";
  if (failed(runPipeline(*work,
                         cpuLoweringPipeline(options.stopAfter == "llvm-ir"
                                                 ? ""
                                                 : options.stopAfter),
                         "CPU")))
    return failure();

  if (stopInMlir) {
    work->print(os);
    return exe;
  }

  for (auto fn : module.getOps<func::FuncOp>()) {
    CpuKernel k;
    k.function = fn.getName().str();
    k.symbol = "kiln_" + k.function;
    // Tensor arguments are the caller's inputs; a trailing memref argument
    // is the runtime-owned KV cache.
    for (Type t : fn.getArgumentTypes()) {
      if (isa<MemRefType>(t)) {
        if (k.kvCache)
          return emitError(loc) << "function '" << k.function
                                << "' has more than one cache argument";
        k.kvCache = true;
      } else if (k.kvCache) {
        return emitError(loc) << "function '" << k.function
                              << "': the cache must be the last argument";
      } else {
        ++k.numInputs;
      }
    }
    k.numOutputs = fn.getNumResults();
    exe.kernels.push_back(k);
  }
  // The weight order was fixed by kiln-weights-to-arguments; it survives as
  // an attribute on the lowered function.
  for (CpuKernel &k : exe.kernels) {
    Operation *fn = SymbolTable::lookupSymbolIn(*work, k.function);
    if (!fn)
      return emitError(loc) << "function '" << k.function << "' vanished";
    if (auto names = fn->getAttrOfType<ArrayAttr>("kiln.weights"))
      for (Attribute a : names)
        k.weights.push_back(cast<StringAttr>(a).str());
    if (auto bytes = fn->getAttrOfType<IntegerAttr>("kiln.scratch_size"))
      k.scratchBytes = bytes.getInt();
  }

  registerBuiltinDialectTranslation(*ctx);
  registerLLVMDialectTranslation(*ctx);
  llvm::LLVMContext llvmCtx;
  std::unique_ptr<llvm::Module> llvmModule =
      translateModuleToLLVMIR(*work, llvmCtx, "kiln");
  if (!llvmModule)
    return emitError(loc) << "translation to LLVM IR failed";
  for (CpuKernel &k : exe.kernels) {
    llvm::Function *impl = llvmModule->getFunction(k.function);
    if (!impl)
      return emitError(loc) << "lowered function '" << k.function
                            << "' is missing";
    impl->setName("kiln_impl_" + k.function);
    // The function itself only packs descriptors and calls the outlined
    // bodies, thousands of pointer stores that the SLP vectorizer would
    // search in quadratic time (SmolLM2: 13 s of its 17 s at O3) for
    // nothing; its few float operations are scalar.
    impl->addFnAttr(llvm::Attribute::NoImplicitFloat);
    addEntryPoint(*llvmModule, impl, k.symbol);
  }
  // Only the entry points are the executable's interface.
  for (llvm::Function &f : *llvmModule)
    if (!f.isDeclaration() &&
        !llvm::any_of(exe.kernels,
                      [&](const CpuKernel &k) { return k.symbol == f.getName(); })) {
      // unnamed_addr: merged bodies may share one address.
      f.setLinkage(llvm::GlobalValue::InternalLinkage);
      f.setUnnamedAddr(llvm::GlobalValue::UnnamedAddr::Global);
    }

  llvm::SmallVector<char, 0> object;
  if (options.stopAfter == "llvm-ir") {
    llvmModule->setDataLayout(tm->createDataLayout());
    llvmModule->print(os, nullptr);
    return exe;
  }
  if (failed(optimizeAndEmit(*llvmModule, *tm, object)))
    return emitError(loc) << "LLVM cannot emit an object for " << exe.cpu;
  auto image = linkShared(object, loc);
  if (failed(image))
    return failure();
  exe.image = std::move(*image);
  return exe;
}

} // namespace kiln
