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

} // namespace

FailureOr<VulkanExecutable> buildVulkanExecutable(ModuleOp module,
                                                  const VulkanTargetOptions &options,
                                                  llvm::raw_ostream &os) {
  MLIRContext *ctx = module.getContext();
  Location loc = module.getLoc();
  VulkanExecutable exe;
  auto lowered = lowerForGpu(module, options.workgroupSize, options.stopAfter,
                             os, exe.program);
  if (failed(lowered))
    return failure();
  if (!*lowered)
    return exe;
  OwningOpRef<ModuleOp> work = std::move(*lowered);
  // The kernels alone, to SPIR-V.
  ctx->loadDialect<spirv::SPIRVDialect>();
  int64_t w = options.workgroupSize;
  auto targetEnv = spirv::TargetEnvAttr::get(
      spirv::VerCapExtAttr::get(
          spirv::Version::V_1_3,
          {spirv::Capability::Shader, spirv::Capability::Int64,
           spirv::Capability::Int16, spirv::Capability::Int8,
           spirv::Capability::Float64, spirv::Capability::Float16,
           spirv::Capability::StorageBuffer16BitAccess,
           spirv::Capability::StorageBuffer8BitAccess},
          {spirv::Extension::SPV_KHR_storage_buffer_storage_class,
           spirv::Extension::SPV_KHR_8bit_storage,
           spirv::Extension::SPV_KHR_16bit_storage},
          ctx),
      spirv::getDefaultResourceLimits(ctx));
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
      "convert-math-to-spirv, convert-gpu-to-spirv{use-64bit-index=false}, "
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
