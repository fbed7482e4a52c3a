//===- VulkanTarget.cpp - SPIR-V kernels for Vulkan -----------------------===//
//
// The shared GPU lowering (targets/gpu) gives outlined kernels and dispatch
// lists; this turns the kernels into SPIR-V through MLIR's GPU-to-SPIR-V
// conversion, one serialized module per kernel.
//
//===----------------------------------------------------------------------===//
#include "targets/vulkan/VulkanTarget.h"
#include "targets/common/RunPipeline.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/GPU/IR/GPUDialect.h"
#include "mlir/Dialect/SPIRV/IR/SPIRVDialect.h"
#include "mlir/Dialect/SPIRV/IR/SPIRVOps.h"
#include "mlir/Dialect/SPIRV/IR/TargetAndABI.h"
#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/SPIRV/Transforms/SPIRVConversion.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/Vector/IR/VectorOps.h"
#include "mlir/IR/PatternMatch.h"
#include "mlir/Transforms/GreedyPatternRewriteDriver.h"
#include "mlir/Target/SPIRV/Serialization.h"

#include <set>

using namespace mlir;

namespace kiln {
namespace {

/// Lanes per SPIR-V vector.
constexpr int64_t kLanes = 4;

bool isWide(VectorType t) {
  return t.getRank() == 1 && t.getNumElements() > kLanes &&
         t.getNumElements() % kLanes == 0;
}

/// vector.load of N > 4 lanes: N / 4 loads of 4 lanes, inserted.
struct SplitWideLoad : OpRewritePattern<vector::LoadOp> {
  using OpRewritePattern::OpRewritePattern;
  LogicalResult matchAndRewrite(vector::LoadOp op,
                                PatternRewriter &rewriter) const override {
    VectorType t = op.getVectorType();
    if (!isWide(t))
      return failure();
    Location loc = op.getLoc();
    auto piece = VectorType::get({kLanes}, t.getElementType());
    Value acc = arith::ConstantOp::create(rewriter, loc, t,
                                          rewriter.getZeroAttr(t));
    SmallVector<Value> idx(op.getIndices());
    Value last = idx.back();
    for (int64_t k = 0; k < t.getNumElements(); k += kLanes) {
      idx.back() = arith::AddIOp::create(
          rewriter, loc, last, arith::ConstantIndexOp::create(rewriter, loc, k));
      Value v = vector::LoadOp::create(rewriter, loc, piece, op.getBase(), idx);
      acc = vector::InsertStridedSliceOp::create(rewriter, loc, v, acc,
                                                 ArrayRef<int64_t>{k},
                                                 ArrayRef<int64_t>{1});
    }
    rewriter.replaceOp(op, acc);
    return success();
  }
};

/// vector.store of N > 4 lanes: N / 4 extracted 4-lane stores.
struct SplitWideStore : OpRewritePattern<vector::StoreOp> {
  using OpRewritePattern::OpRewritePattern;
  LogicalResult matchAndRewrite(vector::StoreOp op,
                                PatternRewriter &rewriter) const override {
    VectorType t = op.getVectorType();
    if (!isWide(t))
      return failure();
    Location loc = op.getLoc();
    SmallVector<Value> idx(op.getIndices());
    Value last = idx.back();
    for (int64_t k = 0; k < t.getNumElements(); k += kLanes) {
      idx.back() = arith::AddIOp::create(
          rewriter, loc, last, arith::ConstantIndexOp::create(rewriter, loc, k));
      Value v = vector::ExtractStridedSliceOp::create(
          rewriter, loc, op.getValueToStore(), ArrayRef<int64_t>{k},
          ArrayRef<int64_t>{kLanes}, ArrayRef<int64_t>{1});
      vector::StoreOp::create(rewriter, loc, v, op.getBase(), idx);
    }
    rewriter.eraseOp(op);
    return success();
  }
};

/// Workgroup memory: MLIR's SPIR-V conversion makes a Workgroup variable
/// of a `memref.alloc` in memory space 3, not of a gpu.func attribution
/// (the form the shared lowering and NVVM use), so each attribution
/// becomes such an allocation at the kernel's entry.
void workgroupAttributionsToAllocs(gpu::GPUFuncOp f) {
  unsigned n = f.getNumWorkgroupAttributions();
  if (n == 0)
    return;
  Block &entry = f.getBody().front();
  OpBuilder b = OpBuilder::atBlockBegin(&entry);
  unsigned first = f.getFunctionType().getNumInputs();
  for (unsigned i = 0; i < n; ++i) {
    BlockArgument arg = entry.getArgument(first + i);
    auto t = cast<MemRefType>(arg.getType());
    auto local = MemRefType::get(t.getShape(), t.getElementType(),
                                 t.getLayout(), b.getI64IntegerAttr(3));
    Value alloc = memref::AllocOp::create(b, f.getLoc(), local);
    arg.replaceAllUsesWith(alloc);
  }
  entry.eraseArguments(first, n);
  f->setAttr(gpu::GPUFuncOp::getNumWorkgroupAttributionsAttrName(),
             b.getI64IntegerAttr(0));
}

/// Every capability an environment may grant besides Shader, with the
/// extension a SPIR-V 1.3 module declares for it.
struct EnvCapability {
  const char *name;
  spirv::Capability cap;
  std::optional<spirv::Extension> ext;
};
const EnvCapability kEnvCapabilities[] = {
    {"Int64", spirv::Capability::Int64, std::nullopt},
    {"Int16", spirv::Capability::Int16, std::nullopt},
    {"Int8", spirv::Capability::Int8, std::nullopt},
    {"Float64", spirv::Capability::Float64, std::nullopt},
    {"Float16", spirv::Capability::Float16, std::nullopt},
    {"StorageBuffer16BitAccess", spirv::Capability::StorageBuffer16BitAccess,
     spirv::Extension::SPV_KHR_16bit_storage},
    {"StorageBuffer8BitAccess", spirv::Capability::StorageBuffer8BitAccess,
     spirv::Extension::SPV_KHR_8bit_storage},
    {"GroupNonUniform", spirv::Capability::GroupNonUniform, std::nullopt},
    {"GroupNonUniformArithmetic",
     spirv::Capability::GroupNonUniformArithmetic, std::nullopt},
};

/// The capabilities a kernel's types need, each with the type that needs
/// it (checked before conversion: MLIR would narrow an i64 it may not use
/// to i32, which would misread the buffer).
std::map<std::string, std::string> neededCapabilities(gpu::GPUFuncOp f) {
  std::map<std::string, std::string> need;
  auto note = [&](Type t, bool stored) {
    std::string text;
    llvm::raw_string_ostream os(text);
    t.print(os);
    if (t.isF64())
      need.emplace("Float64", text);
    else if (t.isInteger(64))
      need.emplace("Int64", text);
    else if (t.isF16())
      need.emplace(stored ? "StorageBuffer16BitAccess" : "Float16", text);
    else if (t.isInteger(16))
      need.emplace(stored ? "StorageBuffer16BitAccess" : "Int16", text);
    else if (t.isInteger(8))
      need.emplace(stored ? "StorageBuffer8BitAccess" : "Int8", text);
  };
  auto visit = [&](Type t) {
    if (auto m = dyn_cast<MemRefType>(t)) {
      note(m.getElementType(), true);
      return;
    }
    if (auto v = dyn_cast<VectorType>(t))
      t = v.getElementType();
    note(t, false);
  };
  for (Type t : f.getArgumentTypes())
    visit(t);
  f.walk([&](Operation *op) {
    for (Type t : op->getResultTypes())
      visit(t);
  });
  return need;
}

} // namespace

std::optional<VulkanEnv> parseVulkanEnv(StringRef spec, std::string &error) {
  VulkanEnv env;
  env.name = spec.str();
  // `@1.N`: the SPIR-V version (1.3 = Vulkan 1.1, 1.5 = 1.2, 1.6 = 1.3).
  if (size_t at = spec.find('@'); at != StringRef::npos) {
    StringRef version = spec.drop_front(at + 1);
    spec = spec.take_front(at);
    unsigned minor = 0;
    if (!version.consume_front("1.") || version.getAsInteger(10, minor) ||
        minor < 3 || minor > 6) {
      error = "bad SPIR-V version in Vulkan target environment '" + env.name +
              "' (expected @1.3 to @1.6)";
      return std::nullopt;
    }
    env.spirvMinor = minor;
  }
  size_t end = spec.find_first_of("+-");
  StringRef profile = spec.take_front(end);
  if (profile != "portable" && profile != "subgroup") {
    error = "unknown Vulkan target environment '" + profile.str() +
            "' (profiles: portable, subgroup; then +CAP, -CAP, @1.N)";
    return std::nullopt;
  }
  for (const EnvCapability &c : kEnvCapabilities) {
    bool group = StringRef(c.name).starts_with("GroupNonUniform");
    if (!group || profile == "subgroup")
      env.capabilities.push_back(c.name);
  }
  StringRef rest = spec.drop_front(profile.size());
  while (!rest.empty()) {
    char sign = rest.front();
    rest = rest.drop_front();
    size_t next = rest.find_first_of("+-");
    StringRef cap = rest.take_front(next);
    rest = rest.drop_front(cap.size());
    bool known = llvm::any_of(kEnvCapabilities, [&](const EnvCapability &c) {
      return cap == c.name;
    });
    if (!known) {
      error = "unknown capability '" + cap.str() +
              "' in Vulkan target environment '" + spec.str() + "'";
      return std::nullopt;
    }
    llvm::erase(env.capabilities, cap.str());
    if (sign == '+')
      env.capabilities.push_back(cap.str());
  }
  env.subgroups = llvm::is_contained(env.capabilities, "GroupNonUniformArithmetic");
  if (env.subgroups && !llvm::is_contained(env.capabilities, "GroupNonUniform"))
    env.capabilities.push_back("GroupNonUniform");
  return env;
}

FailureOr<VulkanExecutable> buildVulkanExecutable(ModuleOp module,
                                                  const VulkanTargetOptions &options,
                                                  llvm::raw_ostream &os) {
  MLIRContext *ctx = module.getContext();
  Location loc = module.getLoc();
  VulkanExecutable exe;
  exe.variant = options.env.name;
  exe.spirvVersion = "spirv1." + std::to_string(options.env.spirvMinor);
  GpuLoweringOptions lowering = options.lowering;
  lowering.reduction = options.env.subgroups ? "subgroup" : "tree";
  auto lowered = lowerForGpu(module, lowering, options.stopAfter, os,
                             exe.program);
  if (failed(lowered))
    return failure();
  if (!*lowered)
    return exe;
  OwningOpRef<ModuleOp> work = std::move(*lowered);
  // The kernels alone, to SPIR-V.
  ctx->loadDialect<spirv::SPIRVDialect>();
  int64_t w = lowering.workgroupSize;
  SmallVector<spirv::Capability> envCaps = {spirv::Capability::Shader};
  SmallVector<spirv::Extension> exts = {
      spirv::Extension::SPV_KHR_storage_buffer_storage_class};
  for (const EnvCapability &c : kEnvCapabilities)
    if (llvm::is_contained(options.env.capabilities, c.name)) {
      envCaps.push_back(c.cap);
      if (c.ext)
        exts.push_back(*c.ext);
    }
  auto targetEnv = spirv::TargetEnvAttr::get(
      spirv::VerCapExtAttr::get(
          static_cast<spirv::Version>(options.env.spirvMinor), envCaps, exts,
          ctx),
      spirv::getDefaultResourceLimits(ctx));
  // A kernel needing what the environment lacks is an error naming both.
  for (auto gm : work->getOps<gpu::GPUModuleOp>())
    for (auto f : gm.getOps<gpu::GPUFuncOp>())
      for (auto &[cap, type] : neededCapabilities(f))
        if (!llvm::is_contained(options.env.capabilities, cap))
          return emitError(loc)
                 << "Vulkan kernel '" << gm.getName() << "' uses " << type
                 << " values, which need SPIR-V capability " << cap
                 << ", not in target environment '" << options.env.name << "'";
  for (auto gm : work->getOps<gpu::GPUModuleOp>()) {
    gm->setAttr(spirv::getTargetEnvAttrName(), targetEnv);
    // Helpers (math-to-funcs) carry an LLVM linkage SPIR-V has no use for.
    gm.walk([&](func::FuncOp f) { f->removeAttr("llvm.linkage"); });
    gm.walk([&](gpu::GPUFuncOp f) {
      auto block = f.getKnownBlockSize();
      int32_t x = block ? (*block)[0] : static_cast<int32_t>(w);
      f->setAttr(spirv::getEntryPointABIAttrName(),
                 spirv::getEntryPointABIAttr(ctx, {x, 1, 1}));
    });
  }
  // Kernels with wide vectors (the KV cache kernels: a head_dim vector per
  // row) become SPIR-V's native 4-lane vectors: loads and stores split
  // into 4-lane pieces, then MLIR's SPIR-V unrolling takes the rest.
  for (auto gm : work->getOps<gpu::GPUModuleOp>())
    for (auto f : gm.getOps<gpu::GPUFuncOp>()) {
      workgroupAttributionsToAllocs(f);
      // MLIR turns a `uniform` subgroup reduction into SPIR-V's Groups
      // (kernel-only) instructions; the non-uniform form is Vulkan's.
      f.walk([](gpu::SubgroupReduceOp r) { r.setUniform(false); });
      RewritePatternSet split(ctx);
      split.add<SplitWideLoad, SplitWideStore>(ctx);
      if (failed(applyPatternsGreedily(f, std::move(split))) ||
          failed(spirv::unrollVectorsInFuncBodies(f)))
        return f.emitError("cannot split the kernel's vectors into 4 lanes");
    }
  std::string spvPipeline =
      "fold-memref-alias-ops, expand-strided-metadata, lower-affine, "
      "arith-expand, "
      "map-memref-spirv-storage-class{client-api=vulkan}, "
      "convert-math-to-spirv, kiln-guard-zero-trip-loops, "
      "convert-gpu-to-spirv{use-64bit-index=false}, "
      "spirv.module(spirv-lower-abi-attrs, spirv-update-vce, canonicalize)";
  if (failed(runPipeline(*work, spvPipeline, "SPIR-V")))
    return failure();
  if (options.stopAfter == "spirv") {
    work->print(os);
    return exe;
  }
  exe.modules.resize(exe.program.kernels.size());
  std::set<std::string> caps;
  for (auto sm : work->getOps<spirv::ModuleOp>())
    if (auto vce = sm.getVceTriple())
      for (spirv::Capability c : vce->getCapabilities())
        // Shader (and Matrix, which it implies) every Vulkan device has.
        if (c != spirv::Capability::Shader && c != spirv::Capability::Matrix)
          caps.insert(spirv::stringifyCapability(c).str());
  exe.capabilities.assign(caps.begin(), caps.end());
  for (auto sm : work->getOps<spirv::ModuleOp>()) {
    SmallVector<uint32_t> words;
    if (failed(spirv::serialize(sm, words)))
      return sm.emitError("SPIR-V serialization failed");
    // convert-gpu-to-spirv names the module `__spv__<gpu module>`.
    StringRef gpuModule = sm.getName() ? *sm.getName() : "";
    gpuModule.consume_front("__spv__");
    sm.walk([&](spirv::EntryPointOp ep) {
      for (size_t k = 0; k < exe.program.kernels.size(); ++k)
        if (exe.program.kernelModules[k] == gpuModule &&
            exe.program.kernels[k] == ep.getFn())
          exe.modules[k].assign(words.begin(), words.end());
    });
  }
  for (auto [i, m] : llvm::enumerate(exe.modules))
    if (m.empty())
      return emitError(loc) << "kernel '" << exe.program.kernels[i]
                            << "' has no SPIR-V module";
  return exe;
}

} // namespace kiln
