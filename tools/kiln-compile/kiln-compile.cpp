//===- kiln-compile.cpp - ONNX model to Kiln artifact ---------------------===//
//
//   kiln-compile MODEL.onnx -o OUT.kiln [--target=cpu] [--compile-to=PHASE]
//                [--dim NAME=N ...] [--const-input NAME=FILE.npy ...]
//                [--max-context=N] [--prefill-chunk=N] [--kv-block-size=N]
//
// A GGUF model compiles to the LLM form (prefill and decode over a paged
// KV cache) unless --dim seq=N asks for one whole-sequence function.
// Phases: import, graph, llm, linalg, bufferize, llvm, llvm-ir, artifact.
// A file ending in .onnxtxt is read as ONNX's textual syntax, one ending in
// .mlir as a module in the kiln dialect.
//
//===----------------------------------------------------------------------===//
#include "compiler/Registration.h"
#include "compiler/import/GgufImporter.h"
#include "compiler/import/OnnxImporter.h"
#include "compiler/import/TokenizerJson.h"
#include "compiler/serialize/ArtifactWriter.h"
#include "passes/Passes.h"
#include "targets/common/RunPipeline.h"
#include "targets/cpu/CpuTarget.h"
#include "targets/cuda/CudaTarget.h"
#include "targets/vulkan/VulkanTarget.h"

#include "npy.h"

#include "mlir/IR/Diagnostics.h"
#include "mlir/IR/MLIRContext.h"
#include "mlir/IR/Verifier.h"
#include "mlir/Parser/Parser.h"
#include "dialects/kiln/KilnDialect.h"
#include "mlir/Pass/PassManager.h"
#include "mlir/Transforms/Passes.h"
#include "llvm/ADT/StringSwitch.h"
#include "llvm/Support/CommandLine.h"
#include "llvm/Support/Format.h"
#include "llvm/Support/InitLLVM.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/MemoryBuffer.h"
#include "llvm/Support/Path.h"
#include "llvm/Support/raw_ostream.h"

#include <chrono>
#include <functional>

using namespace mlir;
namespace cl = llvm::cl;

static cl::opt<std::string> inputPath(cl::Positional, cl::desc("<model.onnx>"),
                                      cl::Required);
static cl::opt<std::string> outputPath("o", cl::desc("Output artifact"),
                                       cl::value_desc("file"));
static cl::opt<std::string>
    targetOpt("target",
              cl::desc("Targets to compile for: cpu, vulkan, or a list "
                       "(cpu,vulkan)"),
              cl::init("cpu"));
static cl::opt<std::string> compileTo(
    "compile-to",
    cl::desc("Stop after a phase and print its IR: import, graph, llm, "
             "linalg, bufferize, llvm, llvm-ir, artifact"),
    cl::init("artifact"));
static cl::list<std::string> dimOpts(
    "dim", cl::desc("Bind a symbolic dim: NAME=VALUE"), cl::value_desc("NAME=N"));
static cl::list<std::string> constInputOpts(
    "const-input",
    cl::desc("Make a graph input a compile-time constant: NAME=FILE.npy"),
    cl::value_desc("NAME=FILE"));
static cl::opt<std::string> cpuOpt("cpu",
                                   cl::desc("LLVM CPU name for the cpu target "
                                            "(native: this machine's CPU)"),
                                   cl::init("native"));
static cl::opt<int64_t> maxContext(
    "max-context",
    cl::desc("LLM form: most tokens a sequence holds (default: the model's "
             "trained context, at most 4096)"),
    cl::init(0));
static cl::list<int64_t> prefillChunkList(
    "prefill-chunk",
    cl::desc("LLM form: tokens per prefill call; a list (default 32,8) also "
             "compiles the smaller sizes, which the runtime takes for a "
             "prompt's tail instead of padding the largest"),
    cl::CommaSeparated);
static cl::opt<int64_t> kvBlockSize(
    "kv-block-size", cl::desc("LLM form: tokens per paged KV cache block"),
    cl::init(16));
static cl::opt<bool> dequantizeWeights(
    "dequantize-weights",
    cl::desc("GGUF: dequantize Q8_0/Q4_0/Q4_1/Q5_0/Q5_1/Q4_K/Q5_K/Q6_K/F16 "
             "weights to f32 instead of keeping their blocks"),
    cl::init(false));
static cl::opt<std::string> quantizeWeights(
    "quantize-weights",
    cl::desc("Weight-only quantization of matmul weights, group-wise (32): "
             "int8 (= q8_0, symmetric), int4 (= q4_0, symmetric) or q4_1 "
             "(int4 with a per-group minimum); packed in the artifact"),
    cl::init(""));
static cl::opt<std::string> kvDtype(
    "kv-dtype",
    cl::desc("LLM form: element type of the paged KV cache, f32, f16 "
             "(half the memory) or int8 (Q8_0 blocks of 32 along head_dim, "
             "an f16 scale each: 0.27 of the memory)"),
    cl::init("f32"));
static cl::opt<int64_t> attentionWindow(
    "attention-window",
    cl::desc("LLM form: layers that attend to their whole context see only "
             "their last N keys (plus --attention-sinks); with every layer "
             "windowed the KV cache is a ring bounded by the window"),
    cl::init(0));
static cl::opt<int64_t> attentionSinks(
    "attention-sinks",
    cl::desc("With --attention-window: the first N positions stay visible "
             "(StreamingLLM's attention sinks)"),
    cl::init(0));
static cl::opt<bool> kvRing(
    "kv-ring",
    cl::desc("LLM form: when every layer has a window, size the KV cache by "
             "the window (a ring the runtime slides) instead of the context "
             "(default true)"),
    cl::init(true));
static cl::opt<std::string> activationsOpt(
    "activations",
    cl::desc("GGUF packed weights: f32 (x as it is) or q8 (x rounded to "
             "8-bit blocks first, llama.cpp's CPU numerics)"),
    cl::init("f32"));
static cl::opt<bool> llamaCppNumerics(
    "llamacpp-numerics",
    cl::desc("GGUF: compute as llama.cpp's CPU backend does (q8 "
             "activations, f16 KV cache, f16 attention probabilities), to "
             "compare against it"),
    cl::init(false));
static cl::opt<bool> llmForm(
    "llm",
    cl::desc("ONNX decoder with past_key_values inputs: compile prefill and "
             "decode over the runtime's paged KV cache"),
    cl::init(false));
static cl::opt<std::string> tokenizerPath(
    "tokenizer",
    cl::desc("ONNX: the model's tokenizer.json to embed (default: the one "
             "beside the model, if any)"),
    cl::value_desc("file"));
static cl::opt<std::string> vulkanEnvOpt(
    "vulkan-env",
    cl::desc("Vulkan target environments, one code variant each, best "
             "first (the runtime runs the first the device supports): "
             "PROFILE[+CAP|-CAP]... with profiles portable (SPIR-V 1.3, "
             "workgroup-memory reductions) and subgroup (plus subgroup "
             "arithmetic)"),
    cl::init("subgroup,portable"), cl::value_desc("env,..."));
static cl::opt<std::string> cudaReduction(
    "cuda-reduction",
    cl::desc("CUDA: how a block combines a shared reduction: subgroup (warp "
             "shuffles), tree (shared memory) or serial (one thread per "
             "output)"),
    cl::init("subgroup"), cl::value_desc("subgroup|tree|serial"));
static cl::opt<std::string> spirvDir(
    "spirv-dir",
    cl::desc("Vulkan: also write each kernel's SPIR-V module to DIR/NAME.spv "
             "(for spirv-val and disassembly)"),
    cl::value_desc("dir"));
static cl::opt<bool> quiet("quiet", cl::desc("Print no progress"),
                           cl::init(false));

namespace {

int32_t npyToOnnx(kiln::npy::DType d) {
  using D = kiln::npy::DType;
  switch (d) {
  case D::F32: return kiln::kFloat;
  case D::F16: return kiln::kFloat16;
  case D::F64: return kiln::kDouble;
  case D::I8: return kiln::kInt8;
  case D::I16: return kiln::kInt16;
  case D::I32: return kiln::kInt32;
  case D::I64: return kiln::kInt64;
  case D::Bool: return kiln::kBool;
  }
  return 0;
}

/// Errors said so far (fail() and error diagnostics): a failure with none
/// is a bug, and gets a message rather than a silent exit code.
int errorsSaid = 0;

int fail(const llvm::Twine &msg) {
  llvm::errs() << "kiln-compile: error: " << msg << "\n";
  ++errorsSaid;
  return 1;
}

bool splitKeyValue(llvm::StringRef s, llvm::StringRef &k, llvm::StringRef &v) {
  std::tie(k, v) = s.split('=');
  return !k.empty() && !v.empty();
}

/// "N kernels, M copies merged" for the progress lines of a GPU target.
std::string kernelCounts(const kiln::GpuProgram &program) {
  return std::to_string(program.kernels.size()) + " kernels, " +
         std::to_string(program.mergedKernels) + " copies merged";
}

} // namespace

int compileMain(int argc, char **argv);

int main(int argc, char **argv) {
  int rc = compileMain(argc, argv);
  if (rc != 0 && errorsSaid == 0)
    llvm::errs() << "kiln-compile: error: compilation failed without saying "
                    "why (an internal error: please report it with the "
                    "input)\n";
  return rc;
}

int compileMain(int argc, char **argv) {
  llvm::InitLLVM init(argc, argv);
  mlir::registerPassManagerCLOptions();
  mlir::registerDefaultTimingManagerCLOptions();
  cl::ParseCommandLineOptions(argc, argv, "Kiln ahead-of-time compiler\n");
  static const char *phases[] = {"import",    "graph", "llm",
                                 "linalg",    "bufferize", "llvm",
                                 "llvm-ir",   "spirv", "ptx", "artifact"};
  if (!llvm::is_contained(phases, llvm::StringRef(compileTo)))
    return fail("unknown phase '" + compileTo + "'");
  if (kvDtype != "f32" && kvDtype != "f16" && kvDtype != "int8")
    return fail("--kv-dtype must be f32, f16 or int8, not '" + kvDtype + "'");
  if (llamaCppNumerics && kvDtype.getNumOccurrences() && kvDtype != "f16")
    return fail("--llamacpp-numerics uses an f16 KV cache; drop --kv-dtype=" +
                kvDtype);
  if (activationsOpt != "f32" && activationsOpt != "q8")
    return fail("--activations must be f32 or q8, not '" + activationsOpt +
                "'");
  // --prefill-chunk: the largest size is `prefill`, the others prefill_N.
  std::vector<int64_t> chunks(prefillChunkList.begin(), prefillChunkList.end());
  if (chunks.empty())
    chunks = {32, 8};
  std::sort(chunks.rbegin(), chunks.rend());
  for (size_t i = 0; i < chunks.size(); ++i)
    if (chunks[i] <= 0 || (i > 0 && chunks[i] == chunks[i - 1]))
      return fail("--prefill-chunk sizes must be positive and distinct");
  int64_t prefillChunk = chunks.front();
  std::vector<int64_t> smallerChunks(chunks.begin() + 1, chunks.end());
  if (!smallerChunks.empty() && smallerChunks.back() < 2)
    return fail("--prefill-chunk: a size of 1 is decode's; list sizes of 2 "
                "or more");
  // "cpu", "vulkan", "cuda[:sm_80,sm_90]", comma-separated; SM names after
  // a cuda entry belong to it.
  bool wantCpu = false, wantVulkan = false, wantCuda = false;
  std::vector<std::string> cudaSms;
  {
    llvm::SmallVector<llvm::StringRef> targets;
    llvm::StringRef(targetOpt).split(targets, ',');
    for (llvm::StringRef t : targets) {
      if (t == "cpu") {
        wantCpu = true;
      } else if (t == "vulkan") {
        wantVulkan = true;
      } else if (t == "cuda" || t.starts_with("cuda:")) {
        wantCuda = true;
        if (t.consume_front("cuda:"))
          cudaSms.push_back(t.str());
      } else if (wantCuda && t.starts_with("sm_")) {
        cudaSms.push_back(t.str());
      } else {
        return fail("unknown or unsupported target '" + t.str() +
                    "' (this build supports: cpu, vulkan, cuda[:sm_XY,...])");
      }
    }
    for (const std::string &sm : cudaSms)
      if (!llvm::StringRef(sm).starts_with("sm_") || sm.size() < 5)
        return fail("bad CUDA architecture '" + sm + "' (expected sm_XY)");
  }
  if (compileTo == "artifact" && outputPath.empty())
    return fail("no output file (-o OUT.kiln)");

  kiln::OnnxImportOptions importOptions;
  for (const std::string &d : dimOpts) {
    llvm::StringRef k, v;
    long long n;
    if (!splitKeyValue(d, k, v) || v.getAsInteger(10, n) || n <= 0)
      return fail("--dim expects NAME=POSITIVE_INT, got '" + d + "'");
    importOptions.dims[k.str()] = n;
  }
  for (const std::string &c : constInputOpts) {
    llvm::StringRef k, v;
    if (!splitKeyValue(c, k, v))
      return fail("--const-input expects NAME=FILE.npy, got '" + c + "'");
    kiln::npy::Array a;
    std::string err;
    if (!kiln::npy::read(v.str(), a, err))
      return fail(err);
    importOptions.constInputs[k.str()] = kiln::HostTensor::fromBytes(
        npyToOnnx(a.dtype), a.shape, std::move(a.data));
  }

  DialectRegistry registry;
  kiln::registerAllKilnDialects(registry);
  kiln::registerAllKilnPasses();
  MLIRContext context(registry);
  context.disableMultithreading(); // 2-core machines; the pipeline is serial
  context.getDiagEngine().registerHandler([](Diagnostic &diag) {
    auto &os = llvm::errs();
    DiagnosticSeverity severity = diag.getSeverity();
    if (severity == DiagnosticSeverity::Error)
      ++errorsSaid;
    os << "kiln-compile: "
       << (severity == DiagnosticSeverity::Error     ? "error: "
           : severity == DiagnosticSeverity::Warning ? "warning: "
                                                     : "note: ");
    // Importer errors name the node in their message; errors from later
    // phases get it from the op's location, which the importer set.
    std::string msg = diag.str();
    if (auto name = dyn_cast<NameLoc>(diag.getLocation());
        name && !llvm::StringRef(msg).starts_with("node '"))
      os << "node '" << name.getName().strref() << "': ";
    os << msg << "\n";
    for (const Diagnostic &note : diag.getNotes())
      os << "  note: " << note.str() << "\n";
    return success();
  });

  auto t0 = std::chrono::steady_clock::now();
  auto progress = [&](const char *what) {
    if (quiet || compileTo != "artifact")
      return;
    double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0)
                   .count();
    llvm::errs() << llvm::format("[%6.2fs] ", s) << what << "\n";
  };

  std::string quantFormat = llvm::StringSwitch<std::string>(quantizeWeights)
                                .Cases({"int8", "q8_0"}, "q8_0")
                                .Cases({"int4", "q4_0"}, "q4_0")
                                .Case("q4_1", "q4_1")
                                .Case("", "")
                                .Default("?");
  if (quantFormat == "?")
    return fail("--quantize-weights=" + quantizeWeights +
                ": expected int8 (q8_0), int4 (q4_0) or q4_1");

  kiln::WeightStore weights;
  std::optional<kiln::TokenizerSpec> tokenizer;
  OwningOpRef<ModuleOp> module;
  if (llvm::StringRef(inputPath).ends_with(".gguf")) {
    kiln::GgufImportOptions ggufOptions;
    auto seq = importOptions.dims.find("seq");
    if (seq != importOptions.dims.end())
      ggufOptions.seqLen = seq->second;
    ggufOptions.maxContext = maxContext;
    ggufOptions.prefillChunk = prefillChunk;
    ggufOptions.smallerPrefillChunks = smallerChunks;
    ggufOptions.blockSize = kvBlockSize;
    ggufOptions.keepQuantized = !dequantizeWeights;
    ggufOptions.activations = llamaCppNumerics ? std::string("q8")
                                                : activationsOpt.getValue();
    ggufOptions.kvDtype = llamaCppNumerics ? std::string("f16")
                                           : kvDtype.getValue();
    ggufOptions.roundedProbs = llamaCppNumerics;
    module = kiln::importGgufFile(inputPath, context, weights, ggufOptions,
                                    &tokenizer);
  } else if (llvm::StringRef(inputPath).ends_with(".mlir")) {
    // A module in the kiln dialect (tests, experiments); it cannot name
    // weights, as no weight data comes with it.
    module = parseSourceFile<ModuleOp>(inputPath, &context);
    if (module) {
      bool hasWeights = false;
      module->walk([&](kiln::WeightOp op) {
        op.emitError("a .mlir input cannot use kiln.weight (no data)");
        hasWeights = true;
      });
      if (hasWeights)
        return 1;
    }
  } else if (llvm::StringRef(inputPath).ends_with(".onnxtxt")) {
    auto text = llvm::MemoryBuffer::getFile(inputPath);
    if (!text)
      return fail("cannot read '" + inputPath + "': " + text.getError().message());
    module = kiln::importOnnxText((*text)->getBuffer(), context, weights,
                                  importOptions);
  } else if (llmForm) {
    module = kiln::importOnnxDecoderFile(inputPath, context, weights,
                                         importOptions, prefillChunk,
                                         maxContext > 0 ? maxContext : 2048,
                                         smallerChunks);
  } else {
    module = kiln::importOnnxFile(inputPath, context, weights, importOptions);
  }
  if (!module)
    return 1;
  if (!llvm::StringRef(inputPath).ends_with(".gguf")) {
    // A tokenizer.json beside an ONNX model (or the one named) goes in.
    std::string tokPath = tokenizerPath;
    llvm::SmallString<256> beside = llvm::sys::path::parent_path(inputPath);
    llvm::sys::path::append(beside, "tokenizer.json");
    if (tokPath.empty() && llvm::sys::fs::exists(beside))
      tokPath = beside.str().str();
    if (!tokPath.empty()) {
      auto t = kiln::readTokenizerJson(tokPath, module->getLoc());
      if (failed(t))
        return 1;
      tokenizer = std::move(*t);
    }
  }
  if (failed(verify(*module)))
    return fail("the imported module does not verify");
  progress("imported");
  if (compileTo == "import") {
    module->print(llvm::outs());
    return 0;
  }

  // The target-independent phases; each may be where the user stops.
  struct Phase {
    const char *name;
    std::function<void(PassManager &)> add;
  };
  Phase phasesBeforeTarget[] = {
      {"graph",
       [](PassManager &pm) {
         pm.addPass(createCanonicalizerPass());
         pm.addPass(createCSEPass());
         pm.addPass(createSymbolDCEPass());
       }},
      {"llm",
       [&](PassManager &pm) {
         pm.addPass(kiln::createRaiseAttention());
         pm.addPass(createCanonicalizerPass());
         pm.addPass(createCSEPass());
         if (llmForm) {
           kiln::KvLayoutOptions kv;
           kv.blockSize = kvBlockSize;
           kv.maxContext = maxContext > 0 ? maxContext : 2048;
           kv.kvDtype = kvDtype;
           pm.addPass(kiln::createKvLayout(kv));
           pm.addPass(createCanonicalizerPass());
           pm.addPass(createCSEPass());
         }
         kiln::SimplifyAttentionOptions policy;
         policy.window = attentionWindow;
         policy.sinks = attentionSinks;
         policy.ring = kvRing;
         pm.addPass(kiln::createSimplifyAttention(policy));
         if (!quantFormat.empty())
           pm.addPass(kiln::createQuantizeWeights(weights, quantFormat));
       }},
  };
  for (const Phase &phase : phasesBeforeTarget) {
    PassManager pm(&context);
    phase.add(pm);
    if (failed(kiln::applyPassManagerOptions(pm)) || failed(pm.run(*module)))
      return 1;
    progress((std::string(phase.name) + " passes done").c_str());
    if (compileTo == phase.name) {
      module->print(llvm::outs());
      return 0;
    }
  }

  std::vector<kiln::VulkanExecutable> vulkanVariants;
  if (wantVulkan) {
    llvm::SmallVector<llvm::StringRef> specs;
    llvm::StringRef(vulkanEnvOpt).split(specs, ',');
    std::vector<kiln::VulkanEnv> envs;
    for (llvm::StringRef spec : specs) {
      std::string error;
      auto env = kiln::parseVulkanEnv(spec, error);
      if (!env)
        return fail(error);
      envs.push_back(*env);
    }
    bool printVk = compileTo == "spirv" || (!wantCpu && compileTo != "artifact");
    for (const kiln::VulkanEnv &env : envs) {
      kiln::VulkanTargetOptions vkOptions;
      vkOptions.env = env;
      if (printVk)
        vkOptions.stopAfter = compileTo == "llvm" ? std::string("spirv")
                                                  : std::string(compileTo);
      auto built = kiln::buildVulkanExecutable(*module, vkOptions, llvm::outs());
      if (failed(built))
        return 1;
      // Printing shows the first (preferred) environment's code.
      if (printVk)
        return 0;
      vulkanVariants.push_back(std::move(*built));
      progress(("vulkan kernels generated (" + env.name + ", " +
                kernelCounts(vulkanVariants.back().program) + ")")
                   .c_str());
    }
    if (!spirvDir.empty()) {
      if (std::error_code ec = llvm::sys::fs::create_directories(spirvDir))
        return fail("cannot create '" + spirvDir + "': " + ec.message());
      for (const kiln::VulkanExecutable &vk : vulkanVariants)
        for (size_t k = 0; k < vk.program.kernels.size(); ++k) {
          llvm::SmallString<256> path(spirvDir);
          llvm::sys::path::append(path, vk.variant + "_" + std::to_string(k) +
                                            "_" + vk.program.kernels[k] +
                                            ".spv");
          std::error_code ec;
          llvm::raw_fd_ostream out(path, ec, llvm::sys::fs::OF_None);
          if (ec)
            return fail("cannot write '" + path.str().str() + "'");
          out.write(reinterpret_cast<const char *>(vk.modules[k].data()),
                    vk.modules[k].size() * 4);
        }
    }
  }

  std::optional<kiln::CudaExecutable> cuda;
  if (wantCuda) {
    kiln::CudaTargetOptions cudaOptions;
    if (!cudaSms.empty())
      cudaOptions.sms = cudaSms;
    if (cudaReduction != "subgroup" && cudaReduction != "tree" &&
        cudaReduction != "serial")
      return fail("bad --cuda-reduction '" + cudaReduction +
                  "' (expected subgroup, tree or serial)");
    cudaOptions.lowering.reduction = cudaReduction;
    bool printCuda = compileTo == "ptx" || (!wantCpu && !wantVulkan &&
                                            compileTo != "artifact");
    if (printCuda)
      cudaOptions.stopAfter = compileTo == "llvm" ? std::string("ptx")
                                                  : std::string(compileTo);
    auto built = kiln::buildCudaExecutable(*module, cudaOptions, llvm::outs());
    if (failed(built))
      return 1;
    if (printCuda)
      return 0;
    cuda = std::move(*built);
    progress(("cuda kernels generated (" + kernelCounts(cuda->program) + ")")
                 .c_str());
  }

  std::optional<kiln::CpuExecutable> exe;
  if (wantCpu) {
    kiln::CpuTargetOptions cpuOptions;
    cpuOptions.cpu = cpuOpt;
    if (compileTo != "artifact")
      cpuOptions.stopAfter = compileTo;
    auto built = kiln::buildCpuExecutable(*module, cpuOptions, llvm::outs());
    if (failed(built))
      return 1;
    if (compileTo != "artifact")
      return 0;
    exe = std::move(*built);
    progress("cpu code generated");
  }

  std::map<std::string, std::string> metadata = {
      {"source", inputPath},
      {"targets", targetOpt},
  };
  if (exe)
    metadata["cpu"] = exe->cpu;
  if (failed(kiln::writeArtifact(outputPath, *module, weights,
                                 exe ? &*exe : nullptr, vulkanVariants,
                                 cuda ? &*cuda : nullptr,
                                 metadata, tokenizer ? &*tokenizer : nullptr)))
    return 1;
  progress(("wrote " + outputPath).c_str());
  return 0;
}
