//===- KilnOps.td - Operations of the kiln dialect ---------*- tablegen -*-===//
#ifndef KILN_OPS_TD
#define KILN_OPS_TD

include "dialects/kiln/KilnDialect.td"
include "mlir/Interfaces/SideEffectInterfaces.td"
include "mlir/IR/BuiltinAttributes.td"

//===----------------------------------------------------------------------===//
// Elementwise operations (numpy broadcasting)
//===----------------------------------------------------------------------===//

class Kiln_UnaryOp<string mnemonic, string doc>
    : Kiln_Op<mnemonic, [Pure]> {
  let summary = doc;
  let arguments = (ins AnyRankedTensor:$input);
  let results = (outs AnyRankedTensor:$result);
  let assemblyFormat =
      "$input attr-dict `:` type($input) `->` type($result)";
}

def Kiln_NegOp : Kiln_UnaryOp<"neg", "-x">;
def Kiln_AbsOp : Kiln_UnaryOp<"abs", "|x|">;
def Kiln_ExpOp : Kiln_UnaryOp<"exp", "e^x">;
def Kiln_LogOp : Kiln_UnaryOp<"log", "natural logarithm">;
def Kiln_TanhOp : Kiln_UnaryOp<"tanh", "hyperbolic tangent">;
def Kiln_ErfOp : Kiln_UnaryOp<"erf", "error function">;
def Kiln_SigmoidOp : Kiln_UnaryOp<"sigmoid", "1 / (1 + e^-x)">;
def Kiln_ReluOp : Kiln_UnaryOp<"relu", "max(x, 0)">;
def Kiln_SqrtOp : Kiln_UnaryOp<"sqrt", "square root">;
def Kiln_ReciprocalOp : Kiln_UnaryOp<"reciprocal", "1 / x">;
def Kiln_NotOp : Kiln_UnaryOp<"not", "logical not">;
def Kiln_FloorOp : Kiln_UnaryOp<"floor", "round toward -inf">;
def Kiln_CeilOp : Kiln_UnaryOp<"ceil", "round toward +inf">;
def Kiln_SinOp : Kiln_UnaryOp<"sin", "sine">;
def Kiln_CosOp : Kiln_UnaryOp<"cos", "cosine">;
def Kiln_SignOp : Kiln_UnaryOp<"sign", "-1, 0 or 1">;
def Kiln_SoftplusOp : Kiln_UnaryOp<"softplus", "log(1 + e^x)">;
def Kiln_RoundOp : Kiln_UnaryOp<"round", "round half to even">;
def Kiln_CastOp : Kiln_UnaryOp<"cast",
    "conversion to the result's element type (ONNX Cast semantics)"> {
  let hasFolder = 1;
}

class Kiln_UnaryAlphaOp<string mnemonic, string doc>
    : Kiln_Op<mnemonic, [Pure]> {
  let summary = doc;
  let arguments = (ins AnyRankedTensor:$input, F32Attr:$alpha);
  let results = (outs AnyRankedTensor:$result);
  let assemblyFormat =
      "$input attr-dict `:` type($input) `->` type($result)";
}
def Kiln_LeakyReluOp : Kiln_UnaryAlphaOp<"leaky_relu", "x < 0 ? alpha * x : x">;
def Kiln_EluOp : Kiln_UnaryAlphaOp<"elu", "x < 0 ? alpha * (e^x - 1) : x">;

def Kiln_GeluOp : Kiln_Op<"gelu", [Pure]> {
  let summary = "Gaussian error linear unit, exact or tanh-approximated";
  let arguments = (ins AnyRankedTensor:$input,
                   DefaultValuedAttr<BoolAttr, "false">:$tanh_approximation);
  let results = (outs AnyRankedTensor:$result);
  let assemblyFormat =
      "$input attr-dict `:` type($input) `->` type($result)";
}

def Kiln_ClipOp : Kiln_Op<"clip", [Pure]> {
  let summary = "min(max(x, lo), hi) with compile-time bounds";
  let arguments = (ins AnyRankedTensor:$input, OptionalAttr<F64Attr>:$min,
                   OptionalAttr<F64Attr>:$max);
  let results = (outs AnyRankedTensor:$result);
  let assemblyFormat =
      "$input attr-dict `:` type($input) `->` type($result)";
}

class Kiln_BinaryOp<string mnemonic, string doc>
    : Kiln_Op<mnemonic, [Pure]> {
  let summary = doc;
  let arguments = (ins AnyRankedTensor:$lhs, AnyRankedTensor:$rhs);
  let results = (outs AnyRankedTensor:$result);
  let assemblyFormat = "$lhs `,` $rhs attr-dict `:` "
                       "functional-type(operands, results)";
}

def Kiln_AddOp : Kiln_BinaryOp<"add", "lhs + rhs">;
// The gated MLP's activation (Llama, Qwen2, Mistral, Phi-3):
// silu(gate) * up = (gate * sigmoid(gate)) * up, raised by kiln-raise-attention.
def Kiln_SwiGluOp : Kiln_BinaryOp<"swiglu", "(lhs * sigmoid(lhs)) * rhs">;
def Kiln_SubOp : Kiln_BinaryOp<"sub", "lhs - rhs">;
def Kiln_MulOp : Kiln_BinaryOp<"mul", "lhs * rhs">;
def Kiln_DivOp : Kiln_BinaryOp<"div", "lhs / rhs (integer division truncates)">;
def Kiln_PowOp : Kiln_BinaryOp<"pow", "lhs ^ rhs">;
def Kiln_MaxOp : Kiln_BinaryOp<"max", "max(lhs, rhs)">;
def Kiln_MinOp : Kiln_BinaryOp<"min", "min(lhs, rhs)">;
def Kiln_ModOp : Kiln_BinaryOp<"mod",
    "remainder: for floats C fmod (sign of lhs), for integers the sign of "
    "rhs (Python %)">;
def Kiln_FModOp : Kiln_BinaryOp<"fmod", "C fmod remainder (sign of lhs)">;
def Kiln_AndOp : Kiln_BinaryOp<"and", "logical and">;
def Kiln_OrOp : Kiln_BinaryOp<"or", "logical or">;
def Kiln_XorOp : Kiln_BinaryOp<"xor", "logical xor">;
def Kiln_EqualOp : Kiln_BinaryOp<"equal", "lhs == rhs">;
def Kiln_LessOp : Kiln_BinaryOp<"less", "lhs < rhs">;
def Kiln_LessEqualOp : Kiln_BinaryOp<"less_equal", "lhs <= rhs">;
def Kiln_GreaterOp : Kiln_BinaryOp<"greater", "lhs > rhs">;
def Kiln_GreaterEqualOp : Kiln_BinaryOp<"greater_equal", "lhs >= rhs">;

def Kiln_WhereOp : Kiln_Op<"where", [Pure]> {
  let summary = "cond ? lhs : rhs, broadcast";
  let arguments = (ins AnyRankedTensor:$condition, AnyRankedTensor:$lhs,
                   AnyRankedTensor:$rhs);
  let results = (outs AnyRankedTensor:$result);
  let assemblyFormat = "$condition `,` $lhs `,` $rhs attr-dict `:` "
                       "functional-type(operands, results)";
}

//===----------------------------------------------------------------------===//
// Contractions, reductions and normalizations
//===----------------------------------------------------------------------===//

def Kiln_MatMulOp : Kiln_Op<"matmul", [Pure]> {
  let summary = "numpy matmul: batched, batch dims broadcast";
  let description = [{
    Both operands have rank >= 2 (the importer turns ONNX's rank-1 cases
    into rank 2 with reshapes). `[..., M, K] x [..., K, N] -> [..., M, N]`.
  }];
  let arguments = (ins AnyRankedTensor:$lhs, AnyRankedTensor:$rhs);
  let results = (outs AnyRankedTensor:$result);
  let assemblyFormat = "$lhs `,` $rhs attr-dict `:` "
                       "functional-type(operands, results)";
  let hasVerifier = 1;
}

class Kiln_ReduceOp<string mnemonic, string doc>
    : Kiln_Op<mnemonic, [Pure]> {
  let summary = doc;
  let arguments = (ins AnyRankedTensor:$input, DenseI64ArrayAttr:$axes,
                   BoolAttr:$keepdims);
  let results = (outs AnyRankedTensor:$result);
  let assemblyFormat =
      "$input attr-dict `:` type($input) `->` type($result)";
}
def Kiln_ReduceSumOp : Kiln_ReduceOp<"reduce_sum", "sum over axes">;
def Kiln_ReduceMeanOp : Kiln_ReduceOp<"reduce_mean", "mean over axes">;
def Kiln_ReduceMaxOp : Kiln_ReduceOp<"reduce_max", "maximum over axes">;
def Kiln_ReduceMinOp : Kiln_ReduceOp<"reduce_min", "minimum over axes">;
def Kiln_ReduceProdOp : Kiln_ReduceOp<"reduce_prod", "product over axes">;

class Kiln_ArgReduceOp<string mnemonic, string doc>
    : Kiln_Op<mnemonic, [Pure]> {
  let summary = doc;
  let description = [{
    i64 index of the extreme element along `axis` (kept as a size-1 dim
    when `keepdims`); ties go to the first index, or the last with
    `select_last_index`.
  }];
  let arguments = (ins AnyRankedTensor:$input, I64Attr:$axis,
                   BoolAttr:$keepdims, BoolAttr:$select_last_index);
  let results = (outs AnyRankedTensor:$result);
  let assemblyFormat =
      "$input attr-dict `:` type($input) `->` type($result)";
}
def Kiln_ArgMaxOp : Kiln_ArgReduceOp<"arg_max", "index of the maximum">;
def Kiln_ArgMinOp : Kiln_ArgReduceOp<"arg_min", "index of the minimum">;

class Kiln_AxisOp<string mnemonic, string doc> : Kiln_Op<mnemonic, [Pure]> {
  let summary = doc;
  let arguments = (ins AnyRankedTensor:$input, I64Attr:$axis);
  let results = (outs AnyRankedTensor:$result);
  let assemblyFormat =
      "$input attr-dict `:` type($input) `->` type($result)";
}
def Kiln_SoftmaxOp : Kiln_AxisOp<"softmax", "softmax along one axis">;
def Kiln_LogSoftmaxOp : Kiln_AxisOp<"log_softmax", "log of softmax along one axis">;

def Kiln_LayerNormOp : Kiln_Op<"layer_norm", [Pure]> {
  let summary = "layer normalization over the dims from `axis` on";
  let arguments = (ins AnyRankedTensor:$input, AnyRankedTensor:$scale,
                   Optional<AnyRankedTensor>:$bias, I64Attr:$axis,
                   F32Attr:$epsilon);
  let results = (outs AnyRankedTensor:$result);
  let assemblyFormat = "$input `,` $scale (`,` $bias^)? attr-dict `:` "
                       "functional-type(operands, results)";
}

def Kiln_RmsNormOp : Kiln_Op<"rms_norm", [Pure]> {
  let summary = "x / sqrt(mean(x^2 over the last dim) + epsilon) * scale";
  let arguments = (ins AnyRankedTensor:$input, AnyRankedTensor:$scale,
                   F32Attr:$epsilon);
  let results = (outs AnyRankedTensor:$result);
  let assemblyFormat = "$input `,` $scale attr-dict `:` "
                       "functional-type(operands, results)";
}

def Kiln_RopeOp : Kiln_Op<"rope", [Pure]> {
  let summary = "rotary position embedding, rotate-half form";
  let description = [{
    `x * cos + rotate_half(x) * sin` with `rotate_half(x) = concat(-x[...,
    D/2:], x[..., :D/2])` over the last dim D; `cos` and `sin` (full width
    D, the tokens' rows) broadcast to x. HF Llama, Qwen2, Mistral and Phi-3
    apply RoPE this way; kiln-raise-attention finds it.
  }];
  let arguments = (ins AnyRankedTensor:$input, AnyRankedTensor:$cos,
                   AnyRankedTensor:$sin);
  let results = (outs AnyRankedTensor:$result);
  let assemblyFormat = "$input `,` $cos `,` $sin attr-dict `:` "
                       "functional-type(operands, results)";
  let hasVerifier = 1;
}

def Kiln_AttentionOp : Kiln_Op<"attention", [Pure]> {
  let summary = "scaled dot-product attention";
  let description = [{
    `q: [B, Hq, S, D]`, `k: [B, Hkv, L, D]`, `v: [B, Hkv, L, Dv]` with
    `Hq` a multiple of `Hkv` (grouped-query attention: query head h reads
    key/value head h / (Hq / Hkv)). Result `[B, Hq, S, Dv]`:

        softmax(q k^T * scale + mask [+ causal/window masking]) v

    `mask`, when present, broadcasts to `[B, Hq, S, L]` and is added to the
    scores. `causal`: query i sees keys j <= i + (L - S) (the queries are
    the last S positions). `window` > 0 also hides keys more than `window`
    positions back, except the first `sinks` keys (StreamingLLM).
    `softcap` > 0 caps each scaled score s (before the mask) to
    softcap * tanh(s / softcap), as Gemma 2 and ONNX's Attention do.
  }];
  let arguments = (ins AnyRankedTensor:$q, AnyRankedTensor:$k,
                   AnyRankedTensor:$v, Optional<AnyRankedTensor>:$mask,
                   F32Attr:$scale,
                   DefaultValuedAttr<BoolAttr, "false">:$causal,
                   DefaultValuedAttr<I64Attr, "0">:$window,
                   DefaultValuedAttr<I64Attr, "0">:$sinks,
                   DefaultValuedAttr<F32Attr, "0.0f">:$softcap);
  let results = (outs AnyRankedTensor:$result);
  let assemblyFormat = "$q `,` $k `,` $v (`mask` $mask^)? attr-dict `:` "
                       "functional-type(operands, results)";
  let hasVerifier = 1;
}

//===----------------------------------------------------------------------===//
// GGUF-quantized weights, consumed packed
//===----------------------------------------------------------------------===//

// A quantized weight is an i8 tensor `[rows, (K / 32) * block_bytes]`: each
// row is K values in GGUF blocks of 32 (`format` q8_0: f16 d, i8 q[32],
// value d*q; q4_0: f16 d, u8 q[16] holding nibbles, d*(q - 8); q4_1: f16 d,
// f16 m, u8 q[16], d*q + m; the low nibbles are values 0-15, the high ones
// 16-31; f16: 32 f16 values, no scale). The K-quants q2_k, q3_k, q4_k,
// q5_k and q6_k take blocks of 256 values in GGUF's layouts (84, 110, 144,
// 176 and 210 bytes; decoded by kQuantGroup / kQuantCodes). The kernels
// dequantize in registers; the bytes are the file's.

def Kiln_QuantMatMulOp : Kiln_Op<"quant_matmul", [Pure]> {
  let summary = "x[M, K] times the transpose of a quantized W[N, K]";
  let description = [{
    `activations` "f32" (default): each weight block is dequantized and
    multiplied with x as it is. "q8": x is first rounded to 8-bit blocks of
    32 the way llama.cpp's CPU backend does (per block: d = max|x| / 127,
    q = round-to-even(x * 127 / max|x|), d kept as f16, and for q4_1
    weights the block sum s = f16(d * sum q)), and a block contributes
    d_w * d_x * sum(q_w * q_x) (+ m_w * s for q4_1): llama.cpp's numerics,
    for users who compare against it.
  }];
  let arguments = (ins AnyRankedTensor:$input, AnyRankedTensor:$weight,
                   StrAttr:$format,
                   DefaultValuedStrAttr<StrAttr, "f32">:$activations);
  let results = (outs AnyRankedTensor:$result);
  let assemblyFormat = "$input `,` $weight attr-dict `:` "
                       "functional-type(operands, results)";
  let hasVerifier = 1;
}

def Kiln_QuantGatherOp : Kiln_Op<"quant_gather", [Pure]> {
  let summary = "rows of a quantized table [V, K] at `indices`, as f32";
  let description = [{
    Result `indices.shape + [K]`; indices outside [0, V) are clamped (the
    runtime checks token ids before a call).
  }];
  let arguments = (ins AnyRankedTensor:$table, AnyRankedTensor:$indices,
                   StrAttr:$format);
  let results = (outs AnyRankedTensor:$result);
  let assemblyFormat = "$table `[` $indices `]` attr-dict `:` "
                       "functional-type(operands, results)";
  let hasVerifier = 1;
}

//===----------------------------------------------------------------------===//
// Runtime-owned paged KV cache
//===----------------------------------------------------------------------===//

// The cache is a memref argument the runtime binds (BindingKind KvCache):
// `[blocks, layers, 2 (k, v), kv_heads, block_size, head_dim]`, a pool of
// blocks that every layer shares, so one block id covers a token range in
// all layers. `block_table[i]` is the pool block holding the sequence's
// tokens [i * block_size, (i + 1) * block_size). `step` is `[pos, n]`: the
// call's S tokens sit at positions pos, pos + 1, ...; only the first n are
// real (the rest pad a fixed-size prefill chunk).

def Kiln_KvStoreOp : Kiln_Op<"kv_store"> {
  let summary = "write one layer's new keys and values into the paged cache";
  let description = [{
    `k`, `v`: `[1, kv_heads, S, head_dim]`. Token i < n goes to cache
    position pos + i of layer `layer`; padding tokens are not written.
  }];
  let arguments = (ins Arg<AnyMemRef, "paged cache", [MemWrite]>:$cache,
                   AnyRankedTensor:$k, AnyRankedTensor:$v,
                   AnyRankedTensor:$block_table, AnyRankedTensor:$step,
                   I64Attr:$layer);
  let assemblyFormat = "$k `,` $v `into` $cache `[` $block_table `,` $step `]`"
                       " attr-dict `:` type($k) `,` type($v) `,` type($cache)"
                       " `,` type($block_table) `,` type($step)";
  let hasVerifier = 1;
}

def Kiln_PagedAttentionOp : Kiln_Op<"paged_attention"> {
  let summary = "causal attention of new queries over the paged cache";
  let description = [{
    `q: [1, heads, S, head_dim]`, heads a multiple of the cache's kv_heads
    (grouped-query attention). Query i, at position p = pos + i, attends to
    cached positions j <= p (and j < pos + n, so padding queries read only
    real tokens); `window` > 0 keeps only p - j < window, plus the first
    `sinks` positions. `softcap` > 0: each scaled score s becomes
    softcap * tanh(s / softcap). Result `[1, heads, S, head_dim]`.

    With an f16 cache, q is rounded to f16 too (q . k is a product of f16
    values summed in f32). `rounded_probs` (f16 cache only) computes the
    softmax in two passes over the keys and rounds each normalized
    probability to f16 before it weights its value row, as llama.cpp's
    non-flash CPU attention does; otherwise one online-softmax pass.
  }];
  let arguments = (ins AnyRankedTensor:$q,
                   Arg<AnyMemRef, "paged cache", [MemRead]>:$cache,
                   AnyRankedTensor:$block_table, AnyRankedTensor:$step,
                   I64Attr:$layer, F32Attr:$scale,
                   DefaultValuedAttr<I64Attr, "0">:$window,
                   DefaultValuedAttr<I64Attr, "0">:$sinks,
                   UnitAttr:$rounded_probs,
                   DefaultValuedAttr<F32Attr, "0.0f">:$softcap);
  let results = (outs AnyRankedTensor:$result);
  let assemblyFormat = "$q `over` $cache `[` $block_table `,` $step `]` "
                       "attr-dict `:` type($q) `,` type($cache) `,` "
                       "type($block_table) `,` type($step) `->` type($result)";
  let hasVerifier = 1;
}

//===----------------------------------------------------------------------===//
// Data movement
//===----------------------------------------------------------------------===//

def Kiln_ReshapeOp : Kiln_Op<"reshape", [Pure]> {
  let summary = "same elements, row-major order, new shape (the result type)";
  let arguments = (ins AnyRankedTensor:$input);
  let results = (outs AnyRankedTensor:$result);
  let assemblyFormat =
      "$input attr-dict `:` type($input) `->` type($result)";
  let hasVerifier = 1;
  let hasFolder = 1;
}

def Kiln_BroadcastOp : Kiln_Op<"broadcast", [Pure]> {
  let summary = "numpy broadcast to the result type's shape (ONNX Expand)";
  let arguments = (ins AnyRankedTensor:$input);
  let results = (outs AnyRankedTensor:$result);
  let assemblyFormat =
      "$input attr-dict `:` type($input) `->` type($result)";
}

def Kiln_TransposeOp : Kiln_Op<"transpose", [Pure]> {
  let summary = "permutation of dimensions: result dim i = input dim perm[i]";
  let arguments = (ins AnyRankedTensor:$input, DenseI64ArrayAttr:$perm);
  let results = (outs AnyRankedTensor:$result);
  let assemblyFormat =
      "$input attr-dict `:` type($input) `->` type($result)";
  let hasVerifier = 1;
  let hasFolder = 1;
  let hasCanonicalizer = 1;
}

def Kiln_ConcatOp : Kiln_Op<"concat", [Pure]> {
  let summary = "concatenation along an axis";
  let arguments = (ins Variadic<AnyRankedTensor>:$inputs, I64Attr:$axis);
  let results = (outs AnyRankedTensor:$result);
  let assemblyFormat =
      "$inputs attr-dict `:` functional-type(operands, results)";
}

def Kiln_SliceOp : Kiln_Op<"slice", [Pure]> {
  let summary = "strided slice; every dim has a start and a (maybe negative) step";
  let description = [{
    `result[i0, i1, ...] = input[starts[0] + i0 * steps[0], ...]`, the result
    shape is the result type's. The importer normalizes ONNX Slice/Split
    (negative, clamped and omitted bounds) into this form.
  }];
  let arguments = (ins AnyRankedTensor:$input, DenseI64ArrayAttr:$starts,
                   DenseI64ArrayAttr:$steps);
  let results = (outs AnyRankedTensor:$result);
  let assemblyFormat =
      "$input attr-dict `:` type($input) `->` type($result)";
}

def Kiln_GatherOp : Kiln_Op<"gather", [Pure]> {
  let summary = "ONNX Gather: take slices along `axis` at `indices` (negative "
                "indices count from the end)";
  let arguments = (ins AnyRankedTensor:$input, AnyRankedTensor:$indices,
                   I64Attr:$axis);
  let results = (outs AnyRankedTensor:$result);
  let assemblyFormat = "$input `,` $indices attr-dict `:` "
                       "functional-type(operands, results)";
}

def Kiln_GatherElementsOp : Kiln_Op<"gather_elements", [Pure]> {
  let summary = "ONNX GatherElements: result[i] = input[i with dim axis "
                "replaced by indices[i]]";
  let arguments = (ins AnyRankedTensor:$input, AnyRankedTensor:$indices,
                   I64Attr:$axis);
  let results = (outs AnyRankedTensor:$result);
  let assemblyFormat = "$input `,` $indices attr-dict `:` "
                       "functional-type(operands, results)";
}

def Kiln_TriluOp : Kiln_Op<"trilu", [Pure]> {
  let summary = "keep the upper or lower triangle (diagonal offset k) of the "
                "last two dims, zero the rest";
  let arguments = (ins AnyRankedTensor:$input, BoolAttr:$upper, I64Attr:$k);
  let results = (outs AnyRankedTensor:$result);
  let assemblyFormat =
      "$input attr-dict `:` type($input) `->` type($result)";
}

//===----------------------------------------------------------------------===//
// Values
//===----------------------------------------------------------------------===//

def Kiln_ConstantOp : Kiln_Op<"constant", [Pure, ConstantLike]> {
  let summary = "small constant held in the IR (shapes, scalars, masks)";
  let arguments = (ins ElementsAttr:$value);
  let results = (outs AnyRankedTensor:$result);
  // `kiln.constant dense<...> : tensor<...>`: the type is the value's.
  let hasCustomAssemblyFormat = 1;
  let hasVerifier = 1;
  let hasFolder = 1;
}

def Kiln_WeightOp : Kiln_Op<"weight", [Pure]> {
  let summary = "a named weight whose bytes live outside the IR";
  let description = [{
    The importer registers the bytes (a view into the mmap-ed model or its
    external-data file) under `name`; serialization copies them into an
    aligned segment of the artifact. The IR never holds them.
  }];
  let arguments = (ins StrAttr:$name);
  let results = (outs AnyRankedTensor:$result);
  let assemblyFormat = "$name attr-dict `:` type($result)";
}

//===----------------------------------------------------------------------===//
// Kernel building blocks (made by the bufferization of the ops above)
//===----------------------------------------------------------------------===//

def Kiln_Dot4I8Op : Kiln_Op<"dot4_i8", [Pure]> {
  let summary = "8-bit dot products over groups of four lanes";
  let description = [{
    `result[i] = sum(lhs[l] * rhs[l] for l in [4 i, 4 i + 4))`, signed
    bytes in, exact i32 sums out. `lhs_nonnegative` says every lhs lane is
    >= 0, which lets a lowering skip the sign trick its unsigned-by-signed
    instructions need. The CPU's q8 quant_matmul kernels make it;
    kiln-lower-int8-dot lowers it to the target's instructions (the
    module's `kiln.int8_dot`: "vnni" or "avx2"), else to plain vector
    arithmetic.
  }];
  let arguments = (ins VectorOfLengthAndType<[32], [I8]>:$lhs,
                       VectorOfLengthAndType<[32], [I8]>:$rhs,
                       UnitAttr:$lhs_nonnegative);
  let results = (outs VectorOfLengthAndType<[8], [I32]>:$result);
  let assemblyFormat =
      "$lhs `,` $rhs attr-dict `:` type($lhs) `,` type($rhs) `->` type($result)";
}

def Kiln_Table16I8Op : Kiln_Op<"table16_i8", [Pure]> {
  let summary = "16-entry byte table lookup";
  let description = [{
    `result[l] = table[indices[l]]` for indices in [0, 16) (IQ4_NL's and
    IQ4_XS's codebook). kiln-lower-int8-dot lowers it to pshufb where the
    module has `kiln.int8_dot` (any AVX2 CPU), else to a tree of selects
    on the index bits.
  }];
  let arguments = (ins VectorOfLengthAndType<[16], [I8]>:$indices,
                       DenseI8ArrayAttr:$table);
  let results = (outs VectorOfLengthAndType<[16], [I8]>:$result);
  let assemblyFormat = "$indices attr-dict `:` type($indices) `->` type($result)";
  let hasVerifier = 1;
}

#endif // KILN_OPS_TD
