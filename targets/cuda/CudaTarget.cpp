//===- CudaTarget.cpp - PTX and cubin for NVIDIA GPUs ---------------------===//
//
// The shared GPU lowering (targets/gpu) gives outlined kernels and dispatch
// lists; each kernel module goes through MLIR's GPU-to-NVVM conversion
// (bare-pointer kernel arguments: every argument is a whole buffer), is
// translated to LLVM IR, linked with libdevice when the toolkit has it,
// optimized and emitted as PTX by LLVM's NVPTX backend. ptxas, when found,
// turns the PTX into a cubin per requested SM; it also proves the PTX is
// valid, which the tests rely on.
//
//===----------------------------------------------------------------------===//
#include "targets/cuda/CudaTarget.h"
#include "targets/common/RunPipeline.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/GPU/IR/GPUDialect.h"
#include "mlir/Dialect/GPU/Transforms/Passes.h"
#include "mlir/Dialect/LLVMIR/LLVMDialect.h"
#include "mlir/Dialect/LLVMIR/NVVMDialect.h"
#include "mlir/Target/LLVMIR/Dialect/Builtin/BuiltinToLLVMIRTranslation.h"
#include "mlir/Target/LLVMIR/Dialect/GPU/GPUToLLVMIRTranslation.h"
#include "mlir/Target/LLVMIR/Dialect/LLVMIR/LLVMToLLVMIRTranslation.h"
#include "mlir/Target/LLVMIR/Dialect/NVVM/NVVMToLLVMIRTranslation.h"
#include "mlir/Target/LLVMIR/Export.h"
#include "mlir/Transforms/GreedyPatternRewriteDriver.h"

#include "llvm/Bitcode/BitcodeReader.h"
#include "llvm/IR/LegacyPassManager.h"
#include "llvm/IR/Module.h"
#include "llvm/Linker/Linker.h"
#include "llvm/MC/TargetRegistry.h"
#include "llvm/Passes/PassBuilder.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/MemoryBuffer.h"
#include "llvm/Support/Program.h"
#include "llvm/Support/TargetSelect.h"
#include "llvm/Target/TargetMachine.h"
#include "llvm/TargetParser/Triple.h"

using namespace mlir;

extern "C" {
void LLVMInitializeNVPTXTargetInfo();
void LLVMInitializeNVPTXTarget();
void LLVMInitializeNVPTXTargetMC();
void LLVMInitializeNVPTXAsmPrinter();
}

namespace kiln {
namespace {

std::string cudaRoot() {
  if (const char *env = std::getenv("CUDA_PATH"))
    return env;
  return "/usr/local/cuda";
}

std::string findPtxas() {
  if (auto p = llvm::sys::findProgramByName("ptxas", {cudaRoot() + "/bin"}))
    return *p;
  if (auto p = llvm::sys::findProgramByName("ptxas"))
    return *p;
  return "";
}

/// libdevice supplies the __nv_* math functions the NVVM lowering calls.
LogicalResult linkLibdevice(llvm::Module &m, Location loc) {
  bool needs = false;
  for (llvm::Function &f : m)
    needs |= f.isDeclaration() && f.getName().starts_with("__nv_");
  if (!needs)
    return success();
  std::string path = cudaRoot() + "/nvvm/libdevice/libdevice.10.bc";
  auto buf = llvm::MemoryBuffer::getFile(path);
  if (!buf)
    return emitError(loc) << "the kernels call libdevice math, and '" << path
                          << "' cannot be read (set CUDA_PATH)";
  auto lib = llvm::parseBitcodeFile(**buf, m.getContext());
  if (!lib)
    return emitError(loc) << "cannot parse '" << path << "'";
  (*lib)->setTargetTriple(m.getTargetTriple());
  (*lib)->setDataLayout(m.getDataLayout());
  if (llvm::Linker::linkModules(m, std::move(*lib),
                                llvm::Linker::Flags::LinkOnlyNeeded))
    return emitError(loc) << "linking libdevice failed";
  return success();
}

FailureOr<std::string> emitPtx(ModuleOp kernels, StringRef sm, Location loc) {
  llvm::LLVMContext llvmCtx;
  std::unique_ptr<llvm::Module> m =
      translateModuleToLLVMIR(kernels, llvmCtx, "kiln_cuda");
  if (!m)
    return emitError(loc) << "translation of the CUDA kernels to LLVM IR failed";
  llvm::Triple triple("nvptx64-nvidia-cuda");
  std::string error;
  const llvm::Target *target = llvm::TargetRegistry::lookupTarget(triple, error);
  if (!target)
    return emitError(loc) << "this LLVM has no NVPTX backend: " << error;
  std::unique_ptr<llvm::TargetMachine> tm(target->createTargetMachine(
      triple, sm, "+ptx78", llvm::TargetOptions(), std::nullopt, std::nullopt,
      llvm::CodeGenOptLevel::Aggressive));
  m->setTargetTriple(triple);
  m->setDataLayout(tm->createDataLayout());
  if (failed(linkLibdevice(*m, loc)))
    return failure();
  llvm::LoopAnalysisManager lam;
  llvm::FunctionAnalysisManager fam;
  llvm::CGSCCAnalysisManager cgam;
  llvm::ModuleAnalysisManager mam;
  llvm::PassBuilder pb(tm.get());
  pb.registerModuleAnalyses(mam);
  pb.registerCGSCCAnalyses(cgam);
  pb.registerFunctionAnalyses(fam);
  pb.registerLoopAnalyses(lam);
  pb.crossRegisterProxies(lam, fam, cgam, mam);
  pb.buildPerModuleDefaultPipeline(llvm::OptimizationLevel::O3).run(*m, mam);
  llvm::SmallString<0> ptx;
  llvm::raw_svector_ostream os(ptx);
  llvm::legacy::PassManager pm;
  if (tm->addPassesToEmitFile(pm, os, nullptr,
                              llvm::CodeGenFileType::AssemblyFile))
    return emitError(loc) << "NVPTX cannot emit PTX for " << sm;
  pm.run(*m);
  return std::string(ptx.str());
}

FailureOr<std::vector<char>> runPtxas(const std::string &ptxas,
                                      const std::string &ptx, StringRef sm,
                                      StringRef kernel, Location loc) {
  llvm::SmallString<128> in, out, err;
  int fd;
  if (llvm::sys::fs::createTemporaryFile("kiln", "ptx", fd, in) ||
      llvm::sys::fs::createTemporaryFile("kiln", "cubin", out) ||
      llvm::sys::fs::createTemporaryFile("kiln", "log", err))
    return emitError(loc) << "cannot create temporary files for ptxas";
  {
    llvm::raw_fd_ostream f(fd, /*shouldClose=*/true);
    f << ptx;
  }
  std::string arch = "-arch=" + sm.str();
  llvm::SmallVector<llvm::StringRef> args = {ptxas, arch, "-O3", in, "-o", out};
  std::optional<llvm::StringRef> redirects[] = {std::nullopt, err, err};
  int rc = llvm::sys::ExecuteAndWait(ptxas, args, std::nullopt, redirects);
  auto log = llvm::MemoryBuffer::getFile(err);
  auto cubin = llvm::MemoryBuffer::getFile(out);
  llvm::sys::fs::remove(in);
  llvm::sys::fs::remove(out);
  llvm::sys::fs::remove(err);
  if (rc != 0 || !cubin)
    return emitError(loc) << "ptxas rejected the PTX of kernel '" << kernel
                          << "' for " << sm << ": "
                          << (log ? (*log)->getBuffer().trim() : "no output");
  return std::vector<char>((*cubin)->getBufferStart(),
                           (*cubin)->getBufferEnd());
}

/// NVIDIA warps are 32 lanes.
constexpr unsigned kWarpSize = 32;

/// gpu.num_subgroups as the block's warps (the NVVM conversion has no
/// pattern for it).
struct NumSubgroupsToWarps : OpRewritePattern<gpu::NumSubgroupsOp> {
  using OpRewritePattern::OpRewritePattern;
  LogicalResult matchAndRewrite(gpu::NumSubgroupsOp op,
                                PatternRewriter &rw) const override {
    Location loc = op.getLoc();
    Value n = gpu::BlockDimOp::create(rw, loc, gpu::Dimension::x);
    for (gpu::Dimension d : {gpu::Dimension::y, gpu::Dimension::z})
      n = arith::MulIOp::create(rw, loc, n,
                                gpu::BlockDimOp::create(rw, loc, d));
    Value warp = arith::ConstantIndexOp::create(rw, loc, kWarpSize);
    rw.replaceOpWithNewOp<arith::CeilDivUIOp>(op, n, warp);
    return success();
  }
};

/// gpu.subgroup_size: 32 on every NVIDIA GPU.
struct SubgroupSizeToWarp : OpRewritePattern<gpu::SubgroupSizeOp> {
  using OpRewritePattern::OpRewritePattern;
  LogicalResult matchAndRewrite(gpu::SubgroupSizeOp op,
                                PatternRewriter &rw) const override {
    rw.replaceOpWithNewOp<arith::ConstantIndexOp>(op, kWarpSize);
    return success();
  }
};

/// The shared lowering's subgroup reductions (reduction=subgroup) as warp
/// shuffles: gpu.subgroup_reduce becomes a butterfly of 32-lane shuffles
/// (shfl.sync.bfly), the subgroup id and count come from the thread id and
/// block size. Its reductions run on whole warps only (at least 32 lanes,
/// a power of two, in uniform control flow), as full-mask shuffles need.
LogicalResult lowerSubgroupOpsToWarps(ModuleOp module) {
  for (auto gm : module.getOps<gpu::GPUModuleOp>()) {
    RewritePatternSet patterns(module.getContext());
    populateGpuLowerSubgroupReduceToShufflePatterns(patterns, kWarpSize,
                                                    /*shuffleBitwidth=*/32);
    populateGpuSubgroupIdPatterns(patterns);
    patterns.add<NumSubgroupsToWarps, SubgroupSizeToWarp>(module.getContext());
    if (failed(applyPatternsGreedily(gm, std::move(patterns))))
      return gm.emitError("lowering subgroup operations to warp shuffles");
    WalkResult left = gm.walk([](gpu::SubgroupReduceOp op) {
      op.emitError("subgroup reduction of ")
          << op.getValue().getType() << " has no warp-shuffle form";
      return WalkResult::interrupt();
    });
    if (left.wasInterrupted())
      return failure();
  }
  return success();
}

} // namespace

FailureOr<CudaExecutable> buildCudaExecutable(ModuleOp module,
                                              const CudaTargetOptions &options,
                                              llvm::raw_ostream &os) {
  MLIRContext *ctx = module.getContext();
  Location loc = module.getLoc();
  if (options.sms.empty())
    return emitError(loc) << "no CUDA architecture given";
  CudaExecutable exe;
  auto lowered = lowerForGpu(module, options.lowering, options.stopAfter,
                             os, exe.program);
  if (failed(lowered))
    return failure();
  if (!*lowered)
    return exe;
  OwningOpRef<ModuleOp> work = std::move(*lowered);
  if (failed(lowerSubgroupOpsToWarps(*work)))
    return failure();

  if (failed(runPipeline(
          *work,
          "gpu.module(expand-strided-metadata, lower-affine, convert-scf-to-cf, "
          "convert-gpu-to-nvvm{index-bitwidth=64 "
          "use-bare-ptr-memref-call-conv=1}), reconcile-unrealized-casts",
          "NVVM")))
    return failure();

  DialectRegistry registry;
  registerBuiltinDialectTranslation(registry);
  registerLLVMDialectTranslation(registry);
  registerNVVMDialectTranslation(registry);
  ctx->appendDialectRegistry(registry);
  LLVMInitializeNVPTXTargetInfo();
  LLVMInitializeNVPTXTarget();
  LLVMInitializeNVPTXTargetMC();
  LLVMInitializeNVPTXAsmPrinter();

  // The PTX is for the oldest listed SM: the driver JIT-compiles it for
  // that SM and every newer one.
  exe.ptxArch = options.sms.front();
  auto smNumber = [](StringRef sm) {
    unsigned n = 0;
    return sm.consume_front("sm_") && !sm.getAsInteger(10, n) ? int(n) : -1;
  };
  for (const std::string &sm : options.sms)
    if (smNumber(sm) >= 0 &&
        (smNumber(exe.ptxArch) < 0 || smNumber(sm) < smNumber(exe.ptxArch)))
      exe.ptxArch = sm;
  exe.ptx.resize(exe.program.kernels.size());
  for (auto gm : work->getOps<gpu::GPUModuleOp>()) {
    // The module's functions as a plain module for translation.
    OwningOpRef<ModuleOp> plain = ModuleOp::create(gm.getLoc());
    for (Operation &op : gm.getBody()->getOperations())
      plain->push_back(op.clone());
    auto ptx = emitPtx(*plain, exe.ptxArch, gm.getLoc());
    if (failed(ptx))
      return failure();
    for (size_t k = 0; k < exe.program.kernels.size(); ++k)
      if (exe.program.kernelModules[k] == gm.getName())
        exe.ptx[k] = *ptx;
  }
  if (options.stopAfter == "ptx") {
    for (size_t k = 0; k < exe.ptx.size(); ++k)
      os << "// kernel " << exe.program.kernels[k] << "\n" << exe.ptx[k];
    return exe;
  }
  for (auto [k, p] : llvm::enumerate(exe.ptx))
    if (p.empty())
      return emitError(loc) << "kernel '" << exe.program.kernels[k]
                            << "' has no PTX";

  std::string ptxas = findPtxas();
  if (ptxas.empty()) {
    emitWarning(loc) << "ptxas not found (CUDA toolkit at " << cudaRoot()
                     << "?): the artifact holds PTX only, which the driver "
                        "compiles at load";
    return exe;
  }
  for (const std::string &sm : options.sms) {
    std::vector<std::vector<char>> cubins;
    for (size_t k = 0; k < exe.ptx.size(); ++k) {
      auto cubin = runPtxas(ptxas, exe.ptx[k], sm, exe.program.kernels[k], loc);
      if (failed(cubin))
        return failure();
      cubins.push_back(std::move(*cubin));
    }
    exe.sms.push_back(sm);
    exe.cubins.push_back(std::move(cubins));
  }
  return exe;
}

} // namespace kiln
