//===- ArtifactWriter.cpp - Write the .kiln artifact ----------------------===//
//
// Layout (docs/artifact.md): a size-prefixed flatbuffer, then segments at
// 64-byte aligned absolute offsets. Segment offsets live in the flatbuffer
// as fixed-size structs, so the buffer is built once to learn its size and
// again with the final offsets; both builds have the same size.
//
//===----------------------------------------------------------------------===//
#include "compiler/serialize/ArtifactWriter.h"
#include "dialects/kiln/KilnDialect.h"

#include "kiln_artifact_generated.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/raw_ostream.h"

#include <algorithm>

using namespace mlir;

namespace kiln {
namespace {

constexpr uint32_t kFormatVersion = 2;
constexpr uint64_t kAlign = 64;

uint64_t alignUp(uint64_t v) { return (v + kAlign - 1) / kAlign * kAlign; }

/// FNV-1a 64, the image checksum the runtime verifies.
uint64_t fnv1a(ArrayRef<char> bytes) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (char c : bytes) {
    h ^= static_cast<uint8_t>(c);
    h *= 0x100000001b3ull;
  }
  return h;
}

FailureOr<fb::DType> toDType(Type t, Location loc) {
  if (t.isF32()) return fb::DType::F32;
  if (t.isF16()) return fb::DType::F16;
  if (t.isF64()) return fb::DType::F64;
  if (t.isInteger(1)) return fb::DType::Bool;
  if (t.isInteger(8)) return fb::DType::I8;
  if (t.isInteger(16)) return fb::DType::I16;
  if (t.isInteger(32)) return fb::DType::I32;
  if (t.isInteger(64)) return fb::DType::I64;
  return emitError(loc) << "element type " << t << " has no artifact dtype";
}

struct TensorDesc {
  std::string name;
  fb::DType dtype;
  std::vector<int64_t> shape;
};

FailureOr<TensorDesc> describe(StringRef name, Type type, Location loc) {
  auto t = dyn_cast<RankedTensorType>(type);
  if (!t)
    return emitError(loc) << "'" << name << "' is not a ranked tensor";
  auto dt = toDType(t.getElementType(), loc);
  if (failed(dt))
    return failure();
  TensorDesc d{name.str(), *dt, {}};
  for (int64_t s : t.getShape())
    d.shape.push_back(ShapedType::isDynamic(s) ? -1 : s);
  return d;
}

struct Plan {
  struct Function {
    std::string name;
    std::vector<TensorDesc> inputs, outputs;
  };
  std::vector<Function> functions;
  std::vector<TensorDesc> constants;
  std::vector<ArrayRef<char>> segments; // constants first, then the image
  /// The paged KV cache's type ([blocks, layers, 2, kv_heads, block_size,
  /// row]) when a function has one, and its head dim (the row is longer
  /// for an i8 cache: codes, then the scales).
  MemRefType cache;
  int64_t headDim = 0;
  int64_t maxContext = 0;
  /// Per cache layer: (window, sinks) of its paged attention.
  std::map<int64_t, std::pair<int64_t, int64_t>> layerWindows;
};

std::vector<char> buildFlatbuffer(const Plan &plan, const CpuExecutable *cpu,
                                  ArrayRef<VulkanExecutable> vks,
                                  const CudaExecutable *cuda,
                                  const std::map<std::string, std::string> &meta,
                                  const TokenizerSpec *tok,
                                  const std::vector<uint64_t> &offsets) {
  flatbuffers::FlatBufferBuilder b(1 << 16);
  flatbuffers::Offset<fb::Tokenizer> tokenizer;
  std::vector<int32_t> eog;
  if (tok) {
    // llama.cpp's end-of-generation set: eos, the file's extra ids, and the
    // control / user-defined tokens with a turn-ending text.
    static const char *const kTurnEnds[] = {
        "<|eot_id|>", "<|eom_id|>", "<|im_end|>", "<|end|>",
        "<end_of_turn>", "<|endoftext|>", "<|end_of_text|>", "<EOT>"};
    auto add = [&](int32_t id) {
      if (id >= 0 && static_cast<size_t>(id) < tok->tokens.size() &&
          std::find(eog.begin(), eog.end(), id) == eog.end())
        eog.push_back(id);
    };
    add(tok->eos);
    for (int32_t id : tok->eog)
      add(id);
    for (size_t i = 0; i < tok->tokens.size(); ++i)
      if (i < tok->types.size() && (tok->types[i] == 3 || tok->types[i] == 4))
        for (const char *t : kTurnEnds)
          if (tok->tokens[i] == t)
            add(static_cast<int32_t>(i));
  }
  if (tok)
    tokenizer = fb::CreateTokenizer(
        b, b.CreateString(tok->model), b.CreateString(tok->pre),
        b.CreateVectorOfStrings(tok->tokens), b.CreateVector(tok->types),
        b.CreateVectorOfStrings(tok->merges), tok->bos, tok->eos, tok->addBos,
        b.CreateString(tok->chatTemplate), tok->ignoreMerges,
        tok->normalizer.empty() ? 0 : b.CreateString(tok->normalizer),
        b.CreateVector(eog),
        tok->scores.empty() ? 0 : b.CreateVector(tok->scores),
        tok->addSpacePrefix, tok->spacePrefixFirstOnly,
        tok->spacePrefixUnlessSpace);
  auto sig = [&](const TensorDesc &d) {
    return fb::CreateTensorSig(b, b.CreateString(d.name), d.dtype,
                               b.CreateVector(d.shape));
  };
  std::vector<flatbuffers::Offset<fb::Function>> fns;
  for (const auto &f : plan.functions) {
    std::vector<flatbuffers::Offset<fb::TensorSig>> ins, outs;
    for (const auto &d : f.inputs) ins.push_back(sig(d));
    for (const auto &d : f.outputs) outs.push_back(sig(d));
    fns.push_back(fb::CreateFunction(b, b.CreateString(f.name),
                                     b.CreateVector(ins), b.CreateVector(outs)));
  }
  std::vector<flatbuffers::Offset<fb::Constant>> consts;
  for (size_t i = 0; i < plan.constants.size(); ++i) {
    const auto &c = plan.constants[i];
    consts.push_back(fb::CreateConstant(b, b.CreateString(c.name), c.dtype,
                                        b.CreateVector(c.shape), i));
  }
  std::vector<flatbuffers::Offset<fb::Target>> targets;
  auto constantIndex = [&](const std::string &w) {
    auto it = llvm::find_if(plan.constants,
                            [&](const TensorDesc &c) { return c.name == w; });
    return uint32_t(it - plan.constants.begin());
  };
  auto functionIndex = [&](const std::string &name) {
    auto it = llvm::find_if(plan.functions, [&](const Plan::Function &f) {
      return f.name == name;
    });
    return uint32_t(it - plan.functions.begin());
  };
  // Dispatch lists of a GPU target; dispatch i names executable `kernel`.
  auto gpuImpls = [&](const GpuProgram &program) {
    std::vector<flatbuffers::Offset<fb::FunctionImpl>> impls;
    for (const GpuFunction &f : program.functions) {
      std::vector<flatbuffers::Offset<fb::Dispatch>> dispatches;
      for (const GpuDispatch &d : f.dispatches) {
        std::vector<fb::Binding> binds;
        for (const GpuBinding &g : d.bindings) {
          switch (g.kind) {
          case GpuBinding::Input:
            binds.emplace_back(fb::BindingKind::Input, g.index);
            break;
          case GpuBinding::Output:
            binds.emplace_back(fb::BindingKind::Output, g.index);
            break;
          case GpuBinding::Constant:
            binds.emplace_back(fb::BindingKind::Constant,
                               constantIndex(g.weight));
            break;
          case GpuBinding::Temporary:
            binds.emplace_back(fb::BindingKind::Temporary, g.index);
            break;
          case GpuBinding::KvCache:
            binds.emplace_back(fb::BindingKind::KvCache, 0);
            break;
          }
        }
        dispatches.push_back(fb::CreateDispatch(
            b, d.kernel, 0, b.CreateVectorOfStructs(binds),
            b.CreateVector(std::vector<uint32_t>(d.workgroups,
                                                 d.workgroups + 3)),
            b.CreateVector(std::vector<uint32_t>(d.workgroupSize,
                                                 d.workgroupSize + 3))));
      }
      std::vector<uint64_t> temps(f.temporaryBytes.begin(),
                                  f.temporaryBytes.end());
      impls.push_back(fb::CreateFunctionImpl(b, functionIndex(f.function),
                                             b.CreateVector(dispatches), 0,
                                             b.CreateVector(temps)));
    }
    return impls;
  };
  uint32_t segment = plan.constants.size();
  if (cpu) {
    uint32_t imageSegment = segment++;
    std::vector<flatbuffers::Offset<flatbuffers::String>> kernelNames;
    std::vector<flatbuffers::Offset<fb::FunctionImpl>> impls;
    for (size_t k = 0; k < cpu->kernels.size(); ++k) {
      const CpuKernel &kern = cpu->kernels[k];
      kernelNames.push_back(b.CreateString(kern.symbol));
      std::vector<fb::Binding> binds;
      for (unsigned i = 0; i < kern.numInputs; ++i)
        binds.emplace_back(fb::BindingKind::Input, i);
      if (kern.kvCache)
        binds.emplace_back(fb::BindingKind::KvCache, 0);
      for (const std::string &w : kern.weights)
        binds.emplace_back(fb::BindingKind::Constant, constantIndex(w));
      for (unsigned i = 0; i < kern.numOutputs; ++i)
        binds.emplace_back(fb::BindingKind::Output, i);
      if (kern.scratchBytes > 0)
        binds.emplace_back(fb::BindingKind::Scratch, 0);
      auto dispatch =
          fb::CreateDispatch(b, 0, k, b.CreateVectorOfStructs(binds));
      impls.push_back(fb::CreateFunctionImpl(
          b, functionIndex(kern.function),
          b.CreateVector(
              std::vector<flatbuffers::Offset<fb::Dispatch>>{dispatch}),
          static_cast<uint64_t>(kern.scratchBytes)));
    }
    auto exe = fb::CreateExecutable(
        b, fb::ExecutableFormat::ElfSharedObject, b.CreateString(cpu->arch),
        b.CreateString(cpu->features), imageSegment,
        b.CreateVector(kernelNames),
        fnv1a(ArrayRef<char>(cpu->image.data(), cpu->image.size())));
    targets.push_back(fb::CreateTarget(
        b, b.CreateString("cpu"),
        b.CreateVector(std::vector<flatbuffers::Offset<fb::Executable>>{exe}),
        b.CreateVector(impls)));
  }
  // One Vulkan target per variant, in the order the runtime tries them.
  for (const VulkanExecutable &v : vks) {
    const VulkanExecutable *vk = &v;
    // One executable per kernel: a SPIR-V module and its entry point.
    std::vector<flatbuffers::Offset<fb::Executable>> exes;
    for (size_t k = 0; k < vk->program.kernels.size(); ++k) {
      const std::vector<uint32_t> &words = vk->modules[k];
      exes.push_back(fb::CreateExecutable(
          b, fb::ExecutableFormat::Spirv, b.CreateString(vk->spirvVersion),
          b.CreateString(""), segment++,
          b.CreateVector(std::vector<flatbuffers::Offset<flatbuffers::String>>{
              b.CreateString(vk->program.kernels[k])}),
          fnv1a(ArrayRef<char>(reinterpret_cast<const char *>(words.data()),
                               words.size() * 4))));
    }
    auto impls = gpuImpls(vk->program);
    std::vector<flatbuffers::Offset<flatbuffers::String>> reqs;
    for (const std::string &c : vk->capabilities)
      reqs.push_back(b.CreateString(c));
    targets.push_back(fb::CreateTarget(b, b.CreateString("vulkan"),
                                       b.CreateVector(exes),
                                       b.CreateVector(impls),
                                       b.CreateVector(reqs),
                                       b.CreateString(vk->variant)));
  }
  if (cuda) {
    // Executable k is kernel k's PTX (the fallback, JIT-compiled by the
    // driver); after them, one cubin per kernel for each SM.
    std::vector<flatbuffers::Offset<fb::Executable>> exes;
    auto add = [&](fb::ExecutableFormat format, const std::string &arch,
                   ArrayRef<char> image, const std::string &kernel) {
      exes.push_back(fb::CreateExecutable(
          b, format, b.CreateString(arch), b.CreateString(""), segment++,
          b.CreateVector(std::vector<flatbuffers::Offset<flatbuffers::String>>{
              b.CreateString(kernel)}),
          fnv1a(image)));
    };
    const auto &kernels = cuda->program.kernels;
    for (size_t k = 0; k < kernels.size(); ++k)
      add(fb::ExecutableFormat::Ptx, cuda->ptxArch,
          ArrayRef<char>(cuda->ptx[k].data(), cuda->ptx[k].size()), kernels[k]);
    for (size_t s = 0; s < cuda->sms.size(); ++s)
      for (size_t k = 0; k < kernels.size(); ++k)
        add(fb::ExecutableFormat::Cubin, cuda->sms[s], cuda->cubins[s][k],
            kernels[k]);
    auto impls = gpuImpls(cuda->program);
    targets.push_back(fb::CreateTarget(b, b.CreateString("cuda"),
                                       b.CreateVector(exes),
                                       b.CreateVector(impls)));
  }
  std::vector<flatbuffers::Offset<fb::KeyValue>> kvs;
  for (const auto &[k, v] : meta)
    kvs.push_back(fb::CreateKeyValue(b, b.CreateString(k), b.CreateString(v)));
  std::vector<fb::Segment> segs;
  for (size_t i = 0; i < plan.segments.size(); ++i)
    segs.emplace_back(offsets[i], plan.segments[i].size());
  flatbuffers::Offset<fb::KvCacheSpec> kvSpec;
  if (plan.cache) {
    ArrayRef<int64_t> c = plan.cache.getShape();
    std::vector<flatbuffers::Offset<fb::KvLayerSpec>> layers;
    for (int64_t l = 0; l < c[1]; ++l) {
      auto it = plan.layerWindows.find(l);
      auto [window, sinks] =
          it == plan.layerWindows.end() ? std::pair<int64_t, int64_t>{0, 0}
                                        : it->second;
      layers.push_back(fb::CreateKvLayerSpec(b, window, sinks));
    }
    Type elt = plan.cache.getElementType();
    bool int8 = elt.isInteger(8);
    kvSpec = fb::CreateKvCacheSpec(
        b, c[1], c[3], plan.headDim,
        int8 ? fb::DType::I8 : elt.isF16() ? fb::DType::F16 : fb::DType::F32,
        c[4], fb::CacheLayout::BlockHeadToken,
        int8 ? fb::DType::F16 : fb::DType::F32, b.CreateVector(layers),
        plan.maxContext, c[0], int8 ? kvInt8Group(plan.headDim) : 0);
  }
  auto model = fb::CreateModel(
      b, kFormatVersion, b.CreateString("kiln-compile"), b.CreateVector(kvs),
      b.CreateVector(fns), b.CreateVector(consts),
      b.CreateVector(targets), b.CreateVectorOfStructs(segs), kvSpec,
      tokenizer);
  b.FinishSizePrefixed(model, fb::ModelIdentifier());
  return std::vector<char>(b.GetBufferPointer(),
                           b.GetBufferPointer() + b.GetSize());
}

} // namespace

LogicalResult writeArtifact(StringRef path, ModuleOp module,
                            const WeightStore &weights, const CpuExecutable *cpu,
                            ArrayRef<VulkanExecutable> vks,
                            const CudaExecutable *cuda,
                            const std::map<std::string, std::string> &metadata,
                            const TokenizerSpec *tokenizer) {
  Location loc = module.getLoc();
  Plan plan;
  for (auto fn : module.getOps<func::FuncOp>()) {
    Plan::Function f;
    f.name = fn.getName().str();
    auto inNames = fn->getAttrOfType<ArrayAttr>("kiln.input_names");
    auto outNames = fn->getAttrOfType<ArrayAttr>("kiln.output_names");
    for (auto [i, t] : llvm::enumerate(fn.getArgumentTypes())) {
      if (auto cache = dyn_cast<MemRefType>(t)) {
        if (plan.cache && plan.cache != cache)
          return emitError(loc) << "functions disagree on the KV cache type";
        plan.cache = cache;
        continue;
      }
      std::string name = inNames ? cast<StringAttr>(inNames[i]).str()
                                 : "input" + std::to_string(i);
      auto d = describe(name, t, loc);
      if (failed(d))
        return failure();
      f.inputs.push_back(*d);
    }
    for (auto [i, t] : llvm::enumerate(fn.getResultTypes())) {
      std::string name = outNames ? cast<StringAttr>(outNames[i]).str()
                                  : "output" + std::to_string(i);
      auto d = describe(name, t, loc);
      if (failed(d))
        return failure();
      f.outputs.push_back(*d);
    }
    plan.functions.push_back(std::move(f));
  }
  module.walk([&](PagedAttentionOp op) {
    plan.layerWindows[op.getLayer()] = {op.getWindow(), op.getSinks()};
    plan.headDim = cast<RankedTensorType>(op.getQ().getType()).getDimSize(3);
  });
  if (plan.cache) {
    auto context = module->getAttrOfType<IntegerAttr>("kiln.max_context");
    plan.maxContext = context ? context.getInt()
                              : plan.cache.getDimSize(0) * plan.cache.getDimSize(4);
  }
  // Types of the weights, from the ops that name them.
  llvm::StringMap<Type> weightTypes;
  module.walk([&](WeightOp op) { weightTypes[op.getName()] = op.getType(); });
  std::vector<std::string> used;
  if (cpu)
    for (const CpuKernel &k : cpu->kernels)
      used.insert(used.end(), k.weights.begin(), k.weights.end());
  std::map<std::string, GpuGlobal> globals;
  std::vector<const GpuProgram *> programs;
  for (const VulkanExecutable &v : vks)
    programs.push_back(&v.program);
  if (cuda)
    programs.push_back(&cuda->program);
  for (const GpuProgram *p : programs) {
    globals.insert(p->globals.begin(), p->globals.end());
    for (const GpuFunction &f : p->functions)
      for (const GpuDispatch &d : f.dispatches)
        for (const GpuBinding &g : d.bindings)
          if (g.kind == GpuBinding::Constant)
            used.push_back(g.weight);
  }
  for (const std::string &w : used) {
      if (llvm::any_of(plan.constants,
                       [&](const TensorDesc &c) { return c.name == w; }))
        continue;
      if (globals.count(w)) {
        const GpuGlobal &g = globals.at(w);
        auto t = RankedTensorType::get(g.type.getShape(), g.type.getElementType());
        auto d = describe(w, t, loc);
        if (failed(d))
          return failure();
        plan.constants.push_back(*d);
        plan.segments.push_back(ArrayRef<char>(g.bytes.data(), g.bytes.size()));
        continue;
      }
      if (!weights.contains(w) || !weightTypes.count(w))
        return emitError(loc) << "weight '" << w << "' has no data";
      auto d = describe(w, weightTypes[w], loc);
      if (failed(d))
        return failure();
      ArrayRef<char> bytes = weights.lookup(w);
      plan.constants.push_back(*d);
      plan.segments.push_back(bytes);
    }
  if (cpu)
    plan.segments.push_back(ArrayRef<char>(cpu->image.data(), cpu->image.size()));
  for (const VulkanExecutable &vk : vks)
    for (const std::vector<uint32_t> &m : vk.modules)
      plan.segments.push_back(ArrayRef<char>(
          reinterpret_cast<const char *>(m.data()), m.size() * 4));
  if (cuda) {
    for (const std::string &p : cuda->ptx)
      plan.segments.push_back(ArrayRef<char>(p.data(), p.size()));
    for (const auto &perSm : cuda->cubins)
      for (const std::vector<char> &c : perSm)
        plan.segments.push_back(ArrayRef<char>(c.data(), c.size()));
  }

  std::vector<uint64_t> offsets(plan.segments.size(), 0);
  std::vector<char> buf = buildFlatbuffer(plan, cpu, vks, cuda, metadata, tokenizer, offsets);
  // The header's checksum follows it (8 bytes, FNV-1a 64 of everything
  // before), so the runtime rejects a damaged header before trusting any
  // size or shape in it.
  uint64_t cursor = alignUp(buf.size() + 8);
  for (size_t i = 0; i < plan.segments.size(); ++i) {
    offsets[i] = cursor;
    cursor = alignUp(cursor + plan.segments[i].size());
  }
  std::vector<char> final = buildFlatbuffer(plan, cpu, vks, cuda, metadata, tokenizer, offsets);
  if (final.size() != buf.size())
    return emitError(loc) << "artifact header changed size between passes";

  std::error_code ec;
  llvm::raw_fd_ostream os(path, ec, llvm::sys::fs::OF_None);
  if (ec)
    return emitError(loc) << "cannot write '" << path << "': " << ec.message();
  static const char zeros[kAlign] = {};
  os.write(final.data(), final.size());
  uint64_t headerHash = fnv1a(ArrayRef<char>(final.data(), final.size()));
  os.write(reinterpret_cast<const char *>(&headerHash), 8);
  uint64_t pos = final.size() + 8;
  for (size_t i = 0; i < plan.segments.size(); ++i) {
    os.write(zeros, offsets[i] - pos);
    os.write(plan.segments[i].data(), plan.segments[i].size());
    pos = offsets[i] + plan.segments[i].size();
  }
  os.close();
  if (os.has_error())
    return emitError(loc) << "writing '" << path << "' failed";
  return success();
}

} // namespace kiln
