//===- Passes.td - Kiln passes ------------------------------*- tablegen -*-===//
#ifndef KILN_PASSES_TD
#define KILN_PASSES_TD

include "mlir/Pass/PassBase.td"

//===----------------------------------------------------------------------===//
// LLM passes: find the structure exporters decompose
//===----------------------------------------------------------------------===//

def RaiseAttention : Pass<"kiln-raise-attention", "mlir::ModuleOp"> {
  let summary = "Raise decomposed attention, RMSNorm and RoPE to "
                "kiln.attention, kiln.rms_norm and kiln.rope";
  let description = [{
    Attention: `matmul(softmax(add?(scale?(matmul(q, kT)), mask), axis=-1), v)`
    on rank-4 tensors, where `scale` is a multiply or divide by a scalar
    constant, becomes `kiln.attention(q, transpose(kT), v, mask)`; every
    intermediate must have no other use. RMSNorm: `x * reciprocal(sqrt(
    reduce_mean(x*x or x^2, last dim) + eps))` (or `x / sqrt(...)`, or
    `x * (1 / sqrt(...))` as HF Llama exports torch.rsqrt) times a weight
    becomes `kiln.rms_norm`. RoPE in HF's rotate-half form, `x * cos +
    concat(-x[..., D/2:], x[..., :D/2]) * sin`, becomes `kiln.rope`. Later passes (KV cache, fused kernels)
    work on these ops; without them the ops decompose back into the same
    primitives.
  }];
}

def KvLayout : Pass<"kiln-kv-layout", "mlir::ModuleOp"> {
  let summary = "Past/present KV tensors of a decoder graph become the "
                "runtime's paged cache";
  let description = [{
    For every public function whose `kiln.attention` ops read
    `concat(past, new, axis 2)` of a graph input `past` (through the
    grouped-query `reshape/broadcast/reshape` repeat when present), with a
    causal mask (the attribute, or a constant equal to the causal mask of
    the new tokens over past + new positions): each layer writes `new` keys
    and values with `kiln.kv_store` and attends with
    `kiln.paged_attention` over one paged cache argument; the past inputs
    and present outputs leave the signature. The function becomes the LLM
    step `(tokens[1, S], positions[1, S], block_table[blocks], step[2],
    cache) -> logits[1, vocab]`: the logits of the last real token
    (`step[1] - 1`). Anything else using a past or present tensor is an
    error naming it.
  }];
  let options = [
    Option<"blockSize", "block-size", "int64_t", "16",
           "Tokens per cache block">,
    Option<"maxContext", "max-context", "int64_t", "2048",
           "Most tokens a sequence holds">,
    Option<"kvDtype", "kv-dtype", "std::string", "\"f32\"",
           "Element type of the cache: f32, f16 or int8 (Q8_0 blocks "
           "along head_dim)">,
  ];
}

def SimplifyAttention : Pass<"kiln-simplify-attention", "mlir::ModuleOp"> {
  let summary = "Per-layer attention policy (window, sinks) and the KV "
                "budget of the paged cache";
  let description = [{
    Runs on the LLM form (`kiln.paged_attention` over the runtime's
    cache). With `window` > 0, every layer that attends to its whole
    context instead sees its last `window` keys and the first `sinks`
    positions (StreamingLLM's attention sinks; keys keep the positions
    they were cached with). A layer with a window of its own (a trained
    sliding window) keeps it.

    The KV budget: when every layer has a window W (largest) and sinks S,
    no query ever reads a key older than W positions besides the sinks, so
    the block table and the pool shrink to `ceil(S / block) + 1 +
    ceil((W + C - 2) / block)` blocks (C the most tokens one call
    stores): a ring the runtime slides block by block as the sequence
    grows (docs/runtime.md), so the cache is bounded by the window, not by
    the context. `kiln.max_context` still bounds the sequence (positions).
    `ring=false` keeps a cache of the whole context.
  }];
  let options = [
    Option<"window", "window", "int64_t", "0",
           "Window for layers without one (0: leave them full)">,
    Option<"sinks", "sinks", "int64_t", "0",
           "Attention-sink positions kept besides the window">,
    Option<"ring", "ring", "bool", "true",
           "Bound the cache by the window when every layer has one">,
  ];
}

//===----------------------------------------------------------------------===//
// Lowering out of the kiln dialect (shared by every target)
//===----------------------------------------------------------------------===//

def LowerToLinalg : Pass<"kiln-lower-to-linalg", "mlir::ModuleOp"> {
  let summary = "Lower kiln ops to linalg/tensor/arith on tensors";
  let description = [{
    Composite ops (softmax, log_softmax, layer_norm) are first decomposed into
    kiln primitives; every primitive becomes a `linalg.generic` (elementwise
    with broadcasting maps, reductions, contractions) or a tensor op (reshape,
    concat). `kiln.weight` stays: targets bind weights to their own storage.
    Shapes must be static; a symbolic dim is reported at the op.
  }];
  let dependentDialects = [
    "mlir::linalg::LinalgDialect", "mlir::tensor::TensorDialect",
    "mlir::arith::ArithDialect", "mlir::math::MathDialect"
  ];
}

def WeightsToArguments : Pass<"kiln-weights-to-arguments", "mlir::ModuleOp"> {
  let summary = "Turn each kiln.weight into a trailing function argument";
  let description = [{
    After this pass a function reads weights only through its arguments;
    the attribute `kiln.weights` on the function lists, in argument order,
    the names of the weights that follow the graph inputs. Every argument
    is marked `bufferization.writable = false`: inputs belong to the caller
    and weights are mapped read-only.
  }];
}

//===----------------------------------------------------------------------===//
// Fusion
//===----------------------------------------------------------------------===//

def FuseElementwise : Pass<"kiln-fuse-elementwise", "mlir::ModuleOp"> {
  let summary = "Fuse elementwise producers into consumers that read each "
                "produced element once";
  let description = [{
    Upstream elementwise fusion also fuses a producer into a consumer that
    reads each produced element many times (a GELU into the matmul that
    reads it N times, a vector into its broadcast), recomputing it each
    time. Here a producer is fused only when the consumer reads it through a
    permutation of all its loops and has no reduction loop, so every
    element is computed exactly once. With `max-operands`, a fusion that
    would leave an op with more distinct operands (inputs and outputs) is
    not made: GPU targets bind each operand as a buffer, and devices limit
    buffers per kernel (Vulkan's maxPerStageDescriptorStorageBuffers).
  }];
  let options = [
    Option<"maxOperands", "max-operands", "int64_t", "0",
           "Most distinct operands a fused op may have (0: no bound)">,
  ];
  let dependentDialects = ["mlir::linalg::LinalgDialect"];
}

//===----------------------------------------------------------------------===//
// Buffer-level cleanups shared by the targets
//===----------------------------------------------------------------------===//

def PlanScratch : Pass<"kiln-plan-scratch", "mlir::ModuleOp"> {
  let summary = "Place a function's temporary buffers in one scratch buffer";
  let description = [{
    Every static `memref.alloc` at the top level of a public function whose
    lifetime ends in a `memref.dealloc` in the same block becomes a
    `memref.view` into a new trailing `memref<Nxi8>` argument, at a 64-byte
    aligned offset chosen so that buffers live at the same time never
    overlap (largest first, lowest free offset). The deallocs go away and the
    function gets `kiln.scratch_size = N`: the runtime allocates the scratch
    once per session instead of the code calling malloc on every run.
  }];
  let dependentDialects = ["mlir::memref::MemRefDialect", "mlir::arith::ArithDialect"];
}

def CopiesToLinalg : Pass<"kiln-copies-to-linalg", "mlir::ModuleOp"> {
  let summary = "Rewrite memref.copy as linalg.copy";
  let description = [{
    `memref.copy` between strided buffers lowers to a call into MLIR's
    runner-utils library, which artifacts cannot depend on. As `linalg.copy`
    it becomes plain loops like every other kernel.
  }];
  let dependentDialects = ["mlir::linalg::LinalgDialect"];
}

def ApproximateMath : Pass<"kiln-approximate-math", "mlir::ModuleOp"> {
  let summary = "Replace f32 transcendentals with polynomial approximations";
  let description = [{
    exp, expm1, log, log1p, tanh and erf on f32 become MLIR's polynomial
    approximations (a few ulp, see docs/architecture.md), plain arithmetic
    the vectorizer can widen, instead of scalar libm calls. f64 and f16
    keep libm.
  }];
  let dependentDialects = ["mlir::math::MathDialect", "mlir::arith::ArithDialect",
                           "mlir::vector::VectorDialect"];
}

def LowerInt8Dot : Pass<"kiln-lower-int8-dot", "mlir::ModuleOp"> {
  let summary = "Lower kiln.dot4_i8 and kiln.table16_i8 to the CPU's byte instructions";
  let description = [{
    With `kiln.int8_dot = "vnni"` on the module (the CPU target sets it
    when the target machine has AVX512-VNNI with VL, or AVX-VNNI), each
    kiln.dot4_i8 becomes vpdpbusd; with "avx2", vpmaddubsw then vpmaddwd;
    as LLVM intrinsic calls, after the bufferization (whose deallocation
    refuses ops of unknown effects). Signed left operands go through
    llama.cpp's sign trick (|lhs| times rhs with lhs's sign). Without the
    attribute: sign-extended multiplies and adds, any target.
    kiln.table16_i8 (IQ4's codebook) becomes pshufb with the attribute,
    else a tree of selects.
  }];
  let dependentDialects = ["mlir::LLVM::LLVMDialect", "mlir::math::MathDialect",
                           "mlir::arith::ArithDialect", "mlir::vector::VectorDialect"];
}

def VectorizeContractions
    : Pass<"kiln-vectorize-contractions", "mlir::ModuleOp"> {
  let summary = "Register-blocked, vectorized matmul loops";
  let description = [{
    Runs on buffers. Each `linalg.generic` that kiln-lower-to-linalg marked
    `kiln.matmul` (loops batch..., m, k, n) becomes an `scf.parallel` over
    batch and `tile-m` x `tile-n` output blocks; each block keeps its
    `tile-m` rows of `tile-n` lanes in vector registers across an `scf.for`
    over k, adding `broadcast(lhs[m, k]) * rhs[k, n:n+tile-n]` (a multiply
    then an add, as the scalar loops do, so results are bit-identical), and
    stores them once. Sizes the tiles do not divide fall back to smaller
    ones (m: 4, 2, 1; n: tile-n, 8); a matmul with no fitting n tile, or
    whose rhs or output rows are not contiguous, keeps the scalar loops.
  }];
  let options = [
    Option<"tileM", "tile-m", "int64_t", /*default=*/"4",
           "Rows of the output block">,
    Option<"tileN", "tile-n", "int64_t", /*default=*/"16",
           "Columns of the output block (a multiple of the vector width)">
  ];
  let dependentDialects = ["mlir::vector::VectorDialect", "mlir::scf::SCFDialect",
                           "mlir::memref::MemRefDialect", "mlir::arith::ArithDialect"];
}

//===----------------------------------------------------------------------===//
// Host (CPU) parallelism
//===----------------------------------------------------------------------===//

def OutlineParallelLoops
    : Pass<"kiln-outline-parallel-loops", "mlir::ModuleOp"> {
  let summary = "Run outermost scf.parallel loops through the runtime's "
                "thread pool";
  let description = [{
    Each function gets a trailing `!llvm.ptr` argument: the runtime's CPU
    environment, whose first field is
    `void parallel_for(env, void (*body)(void *ctx, i64 begin, i64 end),
    void *ctx, i64 n)`. Every outermost `scf.parallel` with a static trip
    count above one in some dim becomes a private function
    `@<func>_par<N>(ctx, begin, end)` running iterations [begin, end) of
    that dim, and a call to `parallel_for`. Values the loop captures are
    passed through `ctx`, an array of pointers to their LLVM-lowered forms
    (memref descriptors, i64, floats); casts to and from those forms are
    reconciled by the LLVM lowering.
  }];
  let dependentDialects = ["mlir::LLVM::LLVMDialect", "mlir::func::FuncDialect",
                           "mlir::arith::ArithDialect", "mlir::scf::SCFDialect"];
}


def MapParallelLoopsToGpu : Pass<"kiln-map-parallel-loops-to-gpu",
                                 "mlir::func::FuncOp"> {
  let summary = "Each top-level scf.parallel becomes one gpu.launch";
  let description = [{
    For GPU targets. A top-level `scf.parallel` with static bounds is
    linearized: its N iterations become `ceil(N / workgroup-size)`
    workgroups of `workgroup-size` invocations, each running the body once
    for its linear id (guarded by `id < N`), with the loop's inner loops
    (reductions) inside. Any other top-level loop that touches memory runs
    as a one-invocation launch, so the host part of a function is only
    allocations and launches.
  }];
  let options = [
    Option<"workgroupSize", "workgroup-size", "int64_t", "64",
           "Invocations per workgroup (a power of two)">,
    Option<"reduction", "reduction", "std::string", "\"tree\"",
           "How a workgroup combines its lanes' partial reductions: "
           "serial (no cooperative reductions: one invocation per output), "
           "tree (workgroup memory), subgroup (subgroup operations)">,
    Option<"minCooperativeTrips", "min-cooperative-trips", "int64_t", "32",
           "Shortest reduction a workgroup shares">,
    Option<"matmulTile", "matmul-tile", "int64_t", "8",
           "Matmul-shaped loops: T x T outputs per workgroup, operands "
           "staged in workgroup memory T k-steps at a time (0: off)">,
  ];
  let dependentDialects = ["mlir::gpu::GPUDialect", "mlir::arith::ArithDialect",
                           "mlir::scf::SCFDialect", "mlir::memref::MemRefDialect",
                           "mlir::math::MathDialect"];
}

def GuardZeroTripLoops : Pass<"kiln-guard-zero-trip-loops"> {
  let summary = "Wrap loops with results that may run zero times in an "
                "scf.if (SPIR-V targets)";
  let description = [{
    MLIR's scf.for -> SPIR-V conversion carries a loop's results in
    function variables with no initializer, stored by the loop body's
    yield: a loop that runs zero times returns undefined values instead of
    its iter_args (lavapipe reads zeros). Every scf.for with results whose
    bounds are not constants with lb < ub becomes `scf.if (lb < ub) {loop}
    else {inits}`, whose results both branches store.
  }];
  let dependentDialects = ["mlir::scf::SCFDialect", "mlir::arith::ArithDialect"];
}

def ParallelDimsFirst : Pass<"kiln-parallel-dims-first", "mlir::func::FuncOp"> {
  let summary = "Interchange each linalg.generic's loops: parallel first";
  let description = [{
    For GPU targets. Loop order decides what `convert-linalg-to-parallel-loops`
    can parallelize: a parallel loop inside a reduction loop becomes a
    sequential loop inside each invocation. Moving every parallel loop
    outside the reduction loops (keeping each group's order) makes all
    outputs parallel and leaves the reduction innermost, where
    `kiln-map-parallel-loops-to-gpu` can share it among a workgroup.
  }];
  let dependentDialects = ["mlir::linalg::LinalgDialect"];
}

def EmptyBufferArguments
    : Pass<"kiln-empty-buffer-arguments", "mlir::ModuleOp"> {
  let summary = "Give statically empty buffer arguments a one-element type";
  let description = [{
    A function argument whose memref type has a zero dimension (an empty
    input or output, e.g. a Slice whose start is past the end) becomes a
    `memref<1xT>` argument, viewed with its original shape through
    `memref.reinterpret_cast`. The bare-pointer calling convention does not
    convert zero-element memrefs (MLIR leaves such a function
    half-converted and translation fails); the buffer is never read or
    written, so its declared size does not matter.
  }];
  let dependentDialects = ["mlir::memref::MemRefDialect"];
}

#endif // KILN_PASSES_TD
