//===- GgufImporter.cpp - GGUF model to the kiln dialect ------------------===//
//
// Builds the kiln graph of a GGUF model from its architecture metadata, the
// same dialect the ONNX importer produces. Q8_0, Q4_0, Q4_1, Q5_0, Q5_1,
// Q4_K, Q5_K, Q6_K and F16 matrices stay as the file's bytes
// (kiln.quant_matmul, kiln.quant_gather) unless asked to dequantize; F32
// ones (and 1-D F16 ones) are f32. It builds `llama`:
// token embedding, per layer RMSNorm -> q/k/v -> RoPE -> causal grouped-query
// attention -> output projection -> residual -> RMSNorm -> SwiGLU MLP ->
// residual, then the final norm and the (possibly tied) output projection.
//
// Two forms: `main(input_ids[1, seq])` returns the logits of every position
// (a whole-sequence forward, for numerics checks), and the LLM form returns
// `prefill` (a chunk of tokens) and `decode` (one token) functions whose
// keys and values live in the runtime's paged cache (kiln.kv_store,
// kiln.paged_attention) and which return the logits of the last real
// token only.
//
// RoPE follows GGUF's layout: for llama, llama.cpp's converter
// permutes the q and k rows of each head so that rotated pairs are
// adjacent, (2i, 2i+1), with frequency base^(-2i/d); the same pairs are
// (i, i + d/2) in the original checkpoint, so the math matches the source
// model exactly. qwen2 keeps the checkpoint's rotate-half layout (NEOX),
// and adds biases to q, k and v.
//
//===----------------------------------------------------------------------===//
#include "compiler/import/GgufImporter.h"
#include "compiler/import/GgufReader.h"
#include "compiler/import/HostTensor.h"
#include "dialects/kiln/KilnDialect.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/IR/Builders.h"
#include "mlir/IR/Diagnostics.h"
#include "llvm/ADT/StringSet.h"
#include "llvm/Support/Format.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <optional>

using namespace mlir;

namespace kiln {
namespace {

using Shape = SmallVector<int64_t>;

/// `m` [rows, cols] row-major as [cols, rows]: GGUF stores projections as
/// [out, in], the matmul reads [in, out] along its contiguous n.
std::vector<float> transposed(const std::vector<float> &m, int64_t rows,
                              int64_t cols) {
  std::vector<float> t(m.size());
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c)
      t[c * rows + r] = m[r * cols + c];
  return t;
}

/// Q4_K sub-block j's 6-bit (scale, min) from the 12 packed bytes.
std::pair<int, int> q4kScaleMin(const uint8_t *s, int j) {
  if (j < 4)
    return {s[j] & 63, s[j + 4] & 63};
  return {(s[j + 4] & 0xF) | ((s[j - 4] >> 6) << 4),
          (s[j + 4] >> 4) | ((s[j] >> 6) << 4)};
}

/// Q6_K value l (0-31) of sub-block j (0-7) of a block at `p`, in -32..31.
int q6kValue(const uint8_t *p, int j, int l) {
  int h = j / 4, t = j % 4;
  const uint8_t *ql = p + 64 * h, *qh = p + 128 + 32 * h;
  int low = (ql[l + 32 * (t % 2)] >> (t >= 2 ? 4 : 0)) & 0xF;
  int high = (qh[l] >> (2 * t)) & 3;
  return (low | (high << 4)) - 32;
}

/// The index in Q6_K's 16 scales of value l of sub-block j.
int q6kScaleIndex(int j, int l) { return 8 * (j / 4) + 2 * (j % 4) + l / 16; }

/// Q3_K's 6-bit scale k (0-15, one per 16 values) from its 12 packed bytes
/// `s`, in -32..31: the low 4 bits in the low (k < 8) or high nibble of
/// s[k % 8], the high 2 bits at bit 2 (k / 4) of s[8 + k % 4].
int q3kScale(const uint8_t *s, int k) {
  int low = (s[k % 8] >> (4 * (k / 8))) & 0xF;
  int high = (s[8 + k % 4] >> (2 * (k / 4))) & 3;
  return (low | (high << 4)) - 32;
}

/// Value l (0-31) of 32-value group g (0-7) of a Q3_K block at `p`, in
/// -4..3: 2 bits of qs (from byte 32) at shift 2 (g % 4) of byte
/// 32 (g / 4) + l, minus 4 unless bit 4 (g / 4) + g % 4 of hmask[l] is set.
int q3kValue(const uint8_t *p, int g, int l) {
  int h = g / 4, t = g % 4;
  int q = (p[32 + 32 * h + l] >> (2 * t)) & 3;
  return q - ((p[l] >> (4 * h + t)) & 1 ? 0 : 4);
}

/// Value l (0-31) of group g of a Q2_K block at `p`, in 0..3 (qs from
/// byte 16, laid out as Q3_K's).
int q2kValue(const uint8_t *p, int g, int l) {
  return (p[16 + 32 * (g / 4) + l] >> (2 * (g % 4))) & 3;
}

class LlamaBuilder {
public:
  LlamaBuilder(const gguf::File &file, MLIRContext &ctx, WeightStore &store,
               Location loc, const GgufImportOptions &options)
      : file(file), ctx(ctx), store(store), b(&ctx), loc(loc),
        options(options) {}

  OwningOpRef<ModuleOp> build();
  void setArchitecture(StringRef name) {
    arch = name.str();
    gemma2 = name == "gemma2";
    gemma = name == "gemma3" || gemma2;
    phi3 = name == "phi3";
    starcoder2 = name == "starcoder2";
    nemotron = name == "nemotron";
    gpt2 = name == "gpt2";
    layerNorm = name == "stablelm" || starcoder2 || nemotron || gpt2;
    ropeNeox = name == "qwen2" || name == "qwen3" || gemma || phi3 || layerNorm;
    qkNorm = name == "qwen3" || (gemma && !gemma2);
  }

private:
  InFlightDiagnostic err() { return emitError(loc); }
  RankedTensorType f32(ArrayRef<int64_t> shape) {
    return RankedTensorType::get(shape, b.getF32Type());
  }
  FailureOr<int64_t> intKey(StringRef key);
  FailureOr<double> floatKey(StringRef key);
  const gguf::TensorInfo *tensor(StringRef name);
  /// The tensor as f32 in numpy order (reversed ggml dims).
  FailureOr<std::vector<float>> dequantize(const gguf::TensorInfo &t);
  /// Registers `data` under `name` and returns a kiln.weight of `shape`.
  Value weight(StringRef name, std::vector<float> data, ArrayRef<int64_t> shape);
  /// `t` dequantized to f32 as weight `name` of `shape`, registered once
  /// (both functions of the LLM form use it); `transpose`: `t` is the
  /// [shape[1], shape[0]] matrix GGUF stores for a projection.
  FailureOr<Value> f32Weight(const gguf::TensorInfo &t, StringRef name,
                             ArrayRef<int64_t> shape, bool transpose);
  /// A kiln.weight of an already registered name.
  Value weight(StringRef name, ArrayRef<int64_t> shape) {
    return WeightOp::create(b, loc, f32(shape), b.getStringAttr(name))
        .getResult();
  }
  LogicalResult readHyperparameters();
  /// rope.dimension_count, rope.scaling.* and rope_freqs.weight.
  LogicalResult readRopeScaling();
  /// phi3's LongRoPE: rope_factors_long / rope_factors_short and their
  /// keys.
  LogicalResult readLongRope();
  /// A [ropeDim / 2] tensor of positive per-frequency divisors.
  LogicalResult readFrequencyFactors(const gguf::TensorInfo &t,
                                     std::vector<float> &out);
  /// gpt2: `context` positions fit its learned position table.
  LogicalResult checkPositions(int64_t context);
  /// rope.scaling.* of YaRN, the factor already read.
  LogicalResult readYarn(std::optional<double> factor);
  /// Fails naming the first tensor of the file the model did not read.
  LogicalResult checkAllTensorsUsed();
  /// The forward pass over `seq` tokens as function `name`; `cached`: the
  /// LLM form over the paged cache.
  LogicalResult buildFunction(ModuleOp module, StringRef name, int64_t seq,
                              bool cached);
  /// Columns [start, start + n) of the [rows, cols] matrix x.
  Value columns(Value x, int64_t start, int64_t n) {
    int64_t rows = cast<RankedTensorType>(x.getType()).getDimSize(0);
    return SliceOp::create(b, loc, f32({rows, n}), x,
                           ArrayRef<int64_t>{0, start}, ArrayRef<int64_t>{1, 1})
        .getResult();
  }
  Value scalar(float v) {
    auto t = f32({});
    return ConstantOp::create(b, loc, t,
                              DenseElementsAttr::get(t, b.getF32FloatAttr(v)))
        .getResult();
  }
  /// x[rows, in] @ W^T for W a [out, in] GGUF matrix.
  /// x times tensor `name` ([in, out] in ggml order), plus tensor `bias`
  /// ([out]) when the file has one.
  FailureOr<Value> linear(Value x, StringRef name, int64_t in, int64_t out,
                          StringRef bias);
  FailureOr<Value> linear(Value x, StringRef name, int64_t in, int64_t out);
  /// The quantization format kept packed for `t` ("q8_0", ...), or "".
  StringRef packedFormat(const gguf::TensorInfo &t) const;
  /// The file's blocks of `t` ([rows, cols] in values) as an i8 weight.
  Value packedWeight(const gguf::TensorInfo &t, StringRef format, int64_t rows,
                     int64_t cols);
  /// RMSNorm of x's last dim (the model width, or head_dim for qwen3's
  /// q/k norms) by the [width] tensor `name`.
  FailureOr<Value> norm(Value x, StringRef name, int64_t width);
  FailureOr<Value> norm(Value x, StringRef name) {
    return norm(x, name, dModel);
  }
  /// RoPE on x[1, heads, seq, headDim] in GGUF's adjacent-pair layout (or
  /// rotate-half for ropeNeox), at the positions `positions` ([1, seq]
  /// i64); `local`: gemma3's sliding-window layers' table (base
  /// localRopeBase, no scaling).
  Value rope(Value x, int64_t heads, Value positions, bool local = false);
  /// RoPE on all of x's last dim (ropeDim lanes).
  Value rotate(Value x, int64_t heads, Value positions, bool local);

  const gguf::File &file;
  MLIRContext &ctx;
  WeightStore &store;
  OpBuilder b;
  Location loc;
  const GgufImportOptions &options;
  int64_t layers = 0, dModel = 0, heads = 0, kvHeads = 0, headDim = 0,
          ffn = 0, vocab = 0;
  /// The lanes of each head RoPE rotates (rope.dimension_count; headDim
  /// unless the rotary embedding is partial).
  int64_t ropeDim = 0;
  double eps = 1e-5, ropeBase = 10000;
  /// RoPE scaling: positions are multiplied by ropeScale (linear scaling,
  /// 1 / rope.scaling.factor), and frequency i is divided by
  /// ropeFactors[i] when the file has rope_freqs.weight (Llama 3.1's
  /// "llama3" scaling, baked per frequency by the converter).
  double ropeScale = 1;
  std::vector<float> ropeFactors;
  /// YaRN (rope.scaling.type "yarn"): frequency i blends its interpolated
  /// (divided by the factor) and original values by a ramp between two
  /// correction dimensions, and cos/sin are multiplied by a magnitude.
  struct Yarn {
    double factor = 1, extFactor = 1, betaFast = 32, betaSlow = 1;
    int64_t originalContext = 0;
    /// The cos/sin multiplier (transformers' attention_factor).
    double magnitude = 1;
  };
  std::optional<Yarn> yarn;
  /// LongRoPE (Phi-3 128k, Phi-3.5): frequency i divided by the
  /// long factor when the artifact's context passes the original one (as
  /// llama.cpp chooses by its context), else by the short factor; cos/sin
  /// times `magnitude`.
  struct LongRope {
    bool enabled = false;
    std::vector<float> longFactors, shortFactors;
    int64_t originalContext = 0;
    double magnitude = 1;
  } longRope;
  /// The share of frequency i YaRN keeps at its original value (the rest
  /// is interpolated).
  double yarnMix(int64_t i) const;
  /// Tensors the model reads; build() refuses a file with others, since
  /// an ignored tensor means a feature silently left out.
  llvm::StringSet<> usedTensors;
  /// `general.architecture` and what it implies: llama stores q/k rows
  /// permuted for adjacent-pair RoPE; qwen2 keeps the checkpoint's
  /// rotate-half (NEOX) layout and has q/k/v biases.
  std::string arch = "llama";
  bool ropeNeox = false;
  /// qwen3: RMSNorm of each head's q and k (attn_q_norm / attn_k_norm,
  /// [head_dim] weights) before RoPE.
  bool qkNorm = false;
  /// gemma3: the embedding times sqrt(width), RMSNorms after attention and
  /// after the FFN too (post_attention_norm, post_ffw_norm), a GELU (tanh)
  /// gated FFN, and sliding-window attention on five layers of every six
  /// (attention.sliding_window) with their own RoPE base, 10000, unscaled.
  /// gemma2 (Gemma 2): the same without the q/k norms, one RoPE table for
  /// all layers, every other layer windowed (the even ones), and
  /// tanh soft-capping of the attention scores and the final logits
  /// (attn_logit_softcapping, final_logit_softcapping).
  bool gemma = false, gemma2 = false;
  /// stablelm (StableLM 2): LayerNorms with biases instead of RMSNorms,
  /// optional q/k/v biases, rotate-half RoPE on a quarter of each head
  /// (rope.dimension_count).
  bool layerNorm = false;
  /// starcoder2 (StarCoder 2): LayerNorms, biases on every projection, and
  /// a GELU (tanh) FFN that is not gated (ffn_up, ffn_down).
  bool starcoder2 = false;
  /// nemotron (Nemotron, Minitron): LayerNorms (stored as 1 + w by the
  /// converter, so plain ones here), an FFN without a gate whose
  /// activation is relu(x)^2, no biases, RoPE on half of each head.
  bool nemotron = false;
  /// gpt2 (GPT-2 and its fine-tunes): learned absolute positions
  /// (position_embd) instead of RoPE, LayerNorms, q/k/v in one biased
  /// projection (attn_qkv), biases everywhere, a GELU (tanh) FFN without a
  /// gate.
  bool gpt2 = false;
  /// phi3 (Phi-3, Phi-3.5): q, k and v in one projection
  /// (attn_qkv: q rows, then k, then v) and the FFN's gate and up in one
  /// (ffn_up: gate rows, then up), rotate-half RoPE.
  bool phi3 = false;
  int64_t slidingWindow = 0;
  double localRopeBase = 10000;
  float attnSoftcap = 0, finalSoftcap = 0;
  /// Whether layer l attends through the sliding window: gemma3's pattern,
  /// every sixth layer global, gemma2's every other (llama.cpp's and
  /// transformers' defaults; GGUF does not store the pattern).
  bool slidingLayer(int64_t l) const {
    return slidingWindow > 0 && (gemma2 ? l % 2 == 0 : (l + 1) % 6 != 0);
  }
  /// Whether layer l takes the local RoPE table (gemma3's windowed layers).
  bool localRope(int64_t l) const { return !gemma2 && slidingLayer(l); }
  std::string key(StringRef name) const { return arch + "." + name.str(); }
  /// Rows of the RoPE tables: the largest position a function can see.
  int64_t ropeRows = 0;
  /// The paged cache argument's type in the LLM form.
  MemRefType cacheType;
  int64_t tableLen = 0;
};

FailureOr<int64_t> LlamaBuilder::intKey(StringRef key) {
  const gguf::Value *v = file.find(key);
  if (!v)
    return err() << "GGUF metadata lacks '" << key << "'";
  switch (v->type) {
  case gguf::ValueType::U8: case gguf::ValueType::U16:
  case gguf::ValueType::U32: case gguf::ValueType::U64:
    if (v->u > (uint64_t(1) << 40))
      return err() << "'" << key << "' is " << v->u << ", too large";
    return static_cast<int64_t>(v->u);
  case gguf::ValueType::I8: case gguf::ValueType::I16:
  case gguf::ValueType::I32: case gguf::ValueType::I64:
    return v->i;
  default:
    return err() << "'" << key << "' is a " << gguf::valueTypeName(v->type)
                 << ", not an integer";
  }
}

FailureOr<double> LlamaBuilder::floatKey(StringRef key) {
  const gguf::Value *v = file.find(key);
  if (!v)
    return err() << "GGUF metadata lacks '" << key << "'";
  if (v->type != gguf::ValueType::F32 && v->type != gguf::ValueType::F64)
    return err() << "'" << key << "' is not a float";
  return v->f;
}

const gguf::TensorInfo *LlamaBuilder::tensor(StringRef name) {
  for (const gguf::TensorInfo &t : file.tensors)
    if (t.name == name) {
      usedTensors.insert(name);
      return &t;
    }
  return nullptr;
}

FailureOr<std::vector<float>>
LlamaBuilder::dequantize(const gguf::TensorInfo &t) {
  uint64_t n = 1;
  for (uint64_t d : t.dims)
    n *= d;
  std::vector<float> out(n);
  const uint8_t *p = file.data(t);
  auto half = [](const uint8_t *q) {
    uint16_t h;
    std::memcpy(&h, q, 2);
    return halfToFloat(h);
  };
  switch (static_cast<gguf::TensorType>(t.type)) {
  case gguf::TensorType::F32:
    std::memcpy(out.data(), p, n * 4);
    return out;
  case gguf::TensorType::F16:
    for (uint64_t i = 0; i < n; ++i)
      out[i] = half(p + 2 * i);
    return out;
  case gguf::TensorType::Q8_0: // {f16 d; i8 q[32]}: d * q
    for (uint64_t blk = 0; blk < n / 32; ++blk, p += 34) {
      float d = half(p);
      for (int j = 0; j < 32; ++j)
        out[blk * 32 + j] = d * static_cast<float>(static_cast<int8_t>(p[2 + j]));
    }
    return out;
  case gguf::TensorType::Q4_0: // {f16 d; u8 q[16]}: d * (nibble - 8)
    for (uint64_t blk = 0; blk < n / 32; ++blk, p += 18) {
      float d = half(p);
      for (int j = 0; j < 16; ++j) {
        out[blk * 32 + j] = d * static_cast<float>((p[2 + j] & 0xF) - 8);
        out[blk * 32 + j + 16] = d * static_cast<float>((p[2 + j] >> 4) - 8);
      }
    }
    return out;
  case gguf::TensorType::Q4_1: // {f16 d; f16 m; u8 q[16]}: d * nibble + m
    for (uint64_t blk = 0; blk < n / 32; ++blk, p += 20) {
      float d = half(p), m = half(p + 2);
      for (int j = 0; j < 16; ++j) {
        out[blk * 32 + j] = d * static_cast<float>(p[4 + j] & 0xF) + m;
        out[blk * 32 + j + 16] = d * static_cast<float>(p[4 + j] >> 4) + m;
      }
    }
    return out;
  case gguf::TensorType::Q5_0: // {f16 d; u32 qh; u8 q[16]}: d * (n5 - 16)
  case gguf::TensorType::Q5_1: { // {f16 d; f16 m; u32 qh; u8 q[16]}: d n5 + m
    bool q51 = t.type == static_cast<uint32_t>(gguf::TensorType::Q5_1);
    int64_t bytes = q51 ? 24 : 22;
    int bias = q51 ? 0 : 16;
    for (uint64_t blk = 0; blk < n / 32; ++blk, p += bytes) {
      float d = half(p), m = q51 ? half(p + 2) : 0.0f;
      // Value j's fifth bit is bit j of qh, value j + 16's bit j + 16.
      uint32_t qh;
      std::memcpy(&qh, p + (q51 ? 4 : 2), 4);
      const uint8_t *q = p + (q51 ? 8 : 6);
      for (int j = 0; j < 16; ++j) {
        int lo = (q[j] & 0xF) | ((qh >> j) & 1) << 4;
        int hi = (q[j] >> 4) | ((qh >> (j + 16)) & 1) << 4;
        out[blk * 32 + j] = d * static_cast<float>(lo - bias) + m;
        out[blk * 32 + j + 16] = d * static_cast<float>(hi - bias) + m;
      }
    }
    return out;
  }
  case gguf::TensorType::Q4_K:
  case gguf::TensorType::Q5_K: {
    // {f16 d; f16 dmin; u8 scales[12]; u8 qs[128]} per 256 values: eight
    // sub-blocks of 32 with 6-bit scale and min; sub-block j reads the low
    // (even j) or high (odd j) nibbles of qs[32 * (j / 2) ...]. Q5_K has
    // u8 qh[32] before qs: bit j of qh[l] is value l's fifth bit.
    bool q5 = t.type == static_cast<uint32_t>(gguf::TensorType::Q5_K);
    for (uint64_t sb = 0; sb < n / 256; ++sb, p += q5 ? 176 : 144) {
      float d = half(p), dmin = half(p + 2);
      for (int j = 0; j < 8; ++j) {
        auto [sc, m] = q4kScaleMin(p + 4, j);
        const uint8_t *q = p + (q5 ? 48 : 16) + 32 * (j / 2);
        for (int l = 0; l < 32; ++l) {
          int nib = j % 2 ? q[l] >> 4 : q[l] & 0xF;
          if (q5)
            nib |= ((p[16 + l] >> j) & 1) << 4;
          out[sb * 256 + j * 32 + l] =
              d * static_cast<float>(sc) * static_cast<float>(nib) -
              dmin * static_cast<float>(m);
        }
      }
    }
    return out;
  }
  case gguf::TensorType::Q3_K:
    // {u8 hmask[32]; u8 qs[64]; u8 scales[12]; f16 d} per 256 values:
    // d * scale * q, a 6-bit scale per 16 values.
    for (uint64_t sb = 0; sb < n / 256; ++sb, p += 110) {
      float d = half(p + 108);
      for (int g = 0; g < 8; ++g)
        for (int l = 0; l < 32; ++l)
          out[sb * 256 + g * 32 + l] =
              d * static_cast<float>(q3kScale(p + 96, 2 * g + l / 16)) *
              static_cast<float>(q3kValue(p, g, l));
    }
    return out;
  case gguf::TensorType::Q2_K:
    // {u8 scales[16]; u8 qs[64]; f16 d; f16 dmin} per 256 values: per 16
    // values a 4-bit scale (low nibble) and minimum (high):
    // d * scale * q - dmin * min.
    for (uint64_t sb = 0; sb < n / 256; ++sb, p += 84) {
      float d = half(p + 80), dmin = half(p + 82);
      for (int g = 0; g < 8; ++g)
        for (int l = 0; l < 32; ++l) {
          uint8_t sc = p[2 * g + l / 16];
          out[sb * 256 + g * 32 + l] =
              d * static_cast<float>(sc & 0xF) *
                  static_cast<float>(q2kValue(p, g, l)) -
              dmin * static_cast<float>(sc >> 4);
        }
    }
    return out;
  case gguf::TensorType::Q6_K:
    // {u8 ql[128]; u8 qh[64]; i8 scales[16]; f16 d} per 256 values: 6-bit
    // q - 32, a scale per 16 values.
    for (uint64_t sb = 0; sb < n / 256; ++sb, p += 210) {
      float d = half(p + 208);
      const auto *sc = reinterpret_cast<const int8_t *>(p + 192);
      for (int j = 0; j < 8; ++j)
        for (int l = 0; l < 32; ++l) {
          int q = q6kValue(p, j, l);
          out[sb * 256 + j * 32 + l] =
              d * static_cast<float>(sc[q6kScaleIndex(j, l)]) *
              static_cast<float>(q);
        }
    }
    return out;
  case gguf::TensorType::IQ4_NL: // {f16 d; u8 q[16]}: d * kIq4Values[nibble]
    for (uint64_t blk = 0; blk < n / 32; ++blk, p += 18) {
      float d = half(p);
      for (int j = 0; j < 16; ++j) {
        out[blk * 32 + j] = d * static_cast<float>(kIq4Values[p[2 + j] & 0xF]);
        out[blk * 32 + j + 16] = d * static_cast<float>(kIq4Values[p[2 + j] >> 4]);
      }
    }
    return out;
  case gguf::TensorType::IQ4_XS:
    // {f16 d; u16 scales_h; u8 scales_l[4]; u8 qs[128]} per 256 values:
    // group j's 6-bit scale (nibble j of scales_l, bits 2j of scales_h
    // above it) minus 32; its 16 bytes at qs[16 j], value l < 16 the low
    // nibble of byte l, l + 16 the high: d * scale * kIq4Values[nibble].
    for (uint64_t sb = 0; sb < n / 256; ++sb, p += 136) {
      float d = half(p);
      uint16_t high;
      std::memcpy(&high, p + 2, 2);
      for (int j = 0; j < 8; ++j) {
        int ls = ((p[4 + j / 2] >> (4 * (j % 2))) & 0xF) |
                 (((high >> (2 * j)) & 3) << 4);
        float dl = d * static_cast<float>(ls - 32);
        const uint8_t *q = p + 8 + 16 * j;
        for (int l = 0; l < 16; ++l) {
          out[sb * 256 + j * 32 + l] = dl * static_cast<float>(kIq4Values[q[l] & 0xF]);
          out[sb * 256 + j * 32 + l + 16] =
              dl * static_cast<float>(kIq4Values[q[l] >> 4]);
        }
      }
    }
    return out;
  default:
    return err() << "tensor '" << t.name << "' has type "
                 << gguf::tensorTypeName(t.type)
                 << ", which Kiln cannot dequantize yet";
  }
}

Value LlamaBuilder::weight(StringRef name, std::vector<float> data,
                           ArrayRef<int64_t> shape) {
  std::vector<char> bytes(data.size() * 4);
  std::memcpy(bytes.data(), data.data(), bytes.size());
  store.addOwned(name, std::move(bytes));
  return weight(name, shape);
}

StringRef LlamaBuilder::packedFormat(const gguf::TensorInfo &t) const {
  if (!options.keepQuantized)
    return "";
  switch (static_cast<gguf::TensorType>(t.type)) {
  case gguf::TensorType::Q8_0: return "q8_0";
  case gguf::TensorType::Q4_0: return "q4_0";
  case gguf::TensorType::Q4_1: return "q4_1";
  case gguf::TensorType::F16: return "f16";
  case gguf::TensorType::Q5_0: return "q5_0";
  case gguf::TensorType::Q5_1: return "q5_1";
  case gguf::TensorType::Q2_K: return "q2_k";
  case gguf::TensorType::Q3_K: return "q3_k";
  case gguf::TensorType::Q4_K: return "q4_k";
  case gguf::TensorType::Q5_K: return "q5_k";
  case gguf::TensorType::Q6_K: return "q6_k";
  case gguf::TensorType::IQ4_NL: return "iq4_nl";
  case gguf::TensorType::IQ4_XS: return "iq4_xs";
  default: return "";
  }
}

Value LlamaBuilder::packedWeight(const gguf::TensorInfo &t, StringRef format,
                                 int64_t rows, int64_t cols) {
  // A view of the mapped file: the artifact gets the same bytes.
  if (!store.contains(t.name))
    store.addView(t.name, ArrayRef<char>(reinterpret_cast<const char *>(
                                             file.data(t)),
                                         t.bytes));
  auto type = RankedTensorType::get(
      {rows, quantRowBytes(format, cols)}, b.getI8Type());
  return WeightOp::create(b, loc, type, b.getStringAttr(t.name)).getResult();
}

FailureOr<Value> LlamaBuilder::f32Weight(const gguf::TensorInfo &t,
                                         StringRef name,
                                         ArrayRef<int64_t> shape,
                                         bool transpose) {
  if (store.contains(name))
    return weight(name, shape);
  auto w = dequantize(t);
  if (failed(w))
    return failure();
  return weight(name, transpose ? transposed(*w, shape[1], shape[0])
                                : std::move(*w),
                shape);
}

FailureOr<Value> LlamaBuilder::linear(Value x, StringRef name, int64_t in,
                                      int64_t out, StringRef bias) {
  FailureOr<Value> y = linear(x, name, in, out);
  const gguf::TensorInfo *bt = bias.empty() ? nullptr : tensor(bias);
  if (failed(y) || !bt)
    return y;
  if (bt->dims.size() != 1 || bt->dims[0] != static_cast<uint64_t>(out))
    return err() << "tensor '" << bias << "' is not [" << out << "]";
  auto bv = f32Weight(*bt, bias, {out}, /*transpose=*/false);
  if (failed(bv))
    return failure();
  return AddOp::create(b, loc, y->getType(), *y, *bv).getResult();
}

FailureOr<Value> LlamaBuilder::linear(Value x, StringRef name, int64_t in,
                                      int64_t out) {
  const gguf::TensorInfo *t = tensor(name);
  if (!t)
    return err() << "GGUF file lacks tensor '" << name << "'";
  if (t->dims.size() != 2 || t->dims[0] != static_cast<uint64_t>(in) ||
      t->dims[1] != static_cast<uint64_t>(out))
    return err() << "tensor '" << name << "' is not [" << in << ", " << out
                 << "] (ggml order)";
  int64_t rows = cast<RankedTensorType>(x.getType()).getDimSize(0);
  if (StringRef format = packedFormat(*t); !format.empty())
    return QuantMatMulOp::create(b, loc, f32({rows, out}), x,
                                 packedWeight(*t, format, out, in),
                                 b.getStringAttr(format),
                                 b.getStringAttr(options.activations))
        .getResult();
  auto wv = f32Weight(*t, name, {in, out}, /*transpose=*/true);
  if (failed(wv))
    return failure();
  return MatMulOp::create(b, loc, f32({rows, out}), x, *wv).getResult();
}

FailureOr<Value> LlamaBuilder::norm(Value x, StringRef name, int64_t width) {
  const gguf::TensorInfo *t = tensor(name);
  if (!t || t->dims.size() != 1 || t->dims[0] != static_cast<uint64_t>(width))
    return err() << "GGUF file lacks a [" << width << "] tensor '" << name
                 << "'";
  auto wv = f32Weight(*t, name, {width}, /*transpose=*/false);
  if (failed(wv))
    return failure();
  if (layerNorm) {
    // LayerNorm over the last dim, with the ".bias" tensor when there is one.
    Value bias;
    std::string biasName = name.drop_back(strlen("weight")).str() + "bias";
    if (const gguf::TensorInfo *bt = tensor(biasName)) {
      if (bt->dims.size() != 1 || bt->dims[0] != static_cast<uint64_t>(width))
        return err() << "tensor '" << biasName << "' is not [" << width << "]";
      auto bv = f32Weight(*bt, biasName, {width}, /*transpose=*/false);
      if (failed(bv))
        return failure();
      bias = *bv;
    }
    int64_t rank = cast<RankedTensorType>(x.getType()).getRank();
    return LayerNormOp::create(b, loc, x.getType(), x, *wv, bias,
                               b.getI64IntegerAttr(rank - 1),
                               b.getF32FloatAttr(static_cast<float>(eps)))
        .getResult();
  }
  return RmsNormOp::create(b, loc, x.getType(), x, *wv,
                           b.getF32FloatAttr(static_cast<float>(eps)))
      .getResult();
}

Value LlamaBuilder::rope(Value x, int64_t h, Value positions, bool local) {
  int64_t seq = cast<RankedTensorType>(x.getType()).getDimSize(2);
  if (ropeDim < headDim) {
    // Partial rotary: the first ropeDim lanes rotate, the rest pass.
    auto rotType = f32({1, h, seq, ropeDim});
    Value xr = SliceOp::create(b, loc, rotType, x, ArrayRef<int64_t>{0, 0, 0, 0},
                               ArrayRef<int64_t>{1, 1, 1, 1});
    Value xp = SliceOp::create(b, loc, f32({1, h, seq, headDim - ropeDim}), x,
                               ArrayRef<int64_t>{0, 0, 0, ropeDim},
                               ArrayRef<int64_t>{1, 1, 1, 1});
    return ConcatOp::create(b, loc, x.getType(),
                            ValueRange{rotate(xr, h, positions, local), xp},
                            b.getI64IntegerAttr(3));
  }
  return rotate(x, h, positions, local);
}

Value LlamaBuilder::rotate(Value x, int64_t h, Value positions, bool local) {
  int64_t half = ropeDim / 2;
  int64_t seq = cast<RankedTensorType>(x.getType()).getDimSize(2);
  std::string cosName = local ? "rope_local.cos" : "rope.cos";
  std::string sinName = local ? "rope_local.sin" : "rope.sin";
  if (!store.contains(cosName)) {
    // As the source model computes them, in f32.
    std::vector<float> c(ropeRows * half), s(ropeRows * half);
    double base = local ? localRopeBase : ropeBase;
    for (int64_t i = 0; i < half; ++i) {
      float invFreq = 1.0f / std::pow(static_cast<float>(base),
                                      static_cast<float>(2 * i) /
                                          static_cast<float>(ropeDim));
      if (!ropeFactors.empty() && !local)
        invFreq /= ropeFactors[i];
      if (!local)
        invFreq *= static_cast<float>(ropeScale);
      float magnitude =
          longRope.enabled && !local ? static_cast<float>(longRope.magnitude) : 1;
      if (yarn && !local) {
        // transformers' blend: interpolated * (1 - mix) + original * mix.
        float mix = static_cast<float>(yarnMix(i));
        float interp = invFreq / static_cast<float>(yarn->factor);
        invFreq = interp * (1 - mix) + invFreq * mix;
        magnitude = static_cast<float>(yarn->magnitude);
      }
      for (int64_t pos = 0; pos < ropeRows; ++pos) {
        float angle = static_cast<float>(pos) * invFreq;
        c[pos * half + i] = std::cos(angle) * magnitude;
        s[pos * half + i] = std::sin(angle) * magnitude;
      }
    }
    weight(cosName, std::move(c), {ropeRows, half, 1});
    weight(sinName, std::move(s), {ropeRows, half, 1});
  }
  // Rows at the tokens' positions: [1, seq, half, 1] -> [seq, half, 1].
  auto table = [&](StringRef name) {
    Value t = weight(name, {ropeRows, half, 1});
    Value g = GatherOp::create(b, loc, f32({1, seq, half, 1}), t, positions,
                               b.getI64IntegerAttr(0));
    return ReshapeOp::create(b, loc, f32({seq, half, 1}), g).getResult();
  };
  Value ropeCos = table(cosName), ropeSin = table(sinName);
  if (ropeNeox) {
    // Rotate-half: lanes i and i + d/2 rotate together.
    auto part = f32({1, h, seq, half});
    Value c = ReshapeOp::create(b, loc, f32({seq, half}), ropeCos);
    Value sn = ReshapeOp::create(b, loc, f32({seq, half}), ropeSin);
    Value x0 = SliceOp::create(b, loc, part, x, ArrayRef<int64_t>{0, 0, 0, 0},
                               ArrayRef<int64_t>{1, 1, 1, 1});
    Value x1 = SliceOp::create(b, loc, part, x,
                               ArrayRef<int64_t>{0, 0, 0, half},
                               ArrayRef<int64_t>{1, 1, 1, 1});
    auto mul = [&](Value a, Value t) {
      return MulOp::create(b, loc, part, a, t).getResult();
    };
    Value r0 = SubOp::create(b, loc, part, mul(x0, c), mul(x1, sn));
    Value r1 = AddOp::create(b, loc, part, mul(x1, c), mul(x0, sn));
    return ConcatOp::create(b, loc, x.getType(), ValueRange{r0, r1},
                            b.getI64IntegerAttr(3));
  }
  auto pairs = f32({1, h, seq, half, 2});
  auto lane = f32({1, h, seq, half, 1});
  Value p = ReshapeOp::create(b, loc, pairs, x);
  Value x0 = SliceOp::create(b, loc, lane, p, ArrayRef<int64_t>{0, 0, 0, 0, 0},
                             ArrayRef<int64_t>{1, 1, 1, 1, 1});
  Value x1 = SliceOp::create(b, loc, lane, p, ArrayRef<int64_t>{0, 0, 0, 0, 1},
                             ArrayRef<int64_t>{1, 1, 1, 1, 1});
  auto mul = [&](Value a, Value c) {
    return MulOp::create(b, loc, lane, a, c).getResult();
  };
  Value r0 = SubOp::create(b, loc, lane, mul(x0, ropeCos), mul(x1, ropeSin));
  Value r1 = AddOp::create(b, loc, lane, mul(x0, ropeSin), mul(x1, ropeCos));
  Value r = ConcatOp::create(b, loc, pairs, ValueRange{r0, r1},
                             b.getI64IntegerAttr(4));
  return ReshapeOp::create(b, loc, x.getType(), r);
}

LogicalResult LlamaBuilder::readRopeScaling() {
  ropeDim = headDim;
  if (file.find(key("rope.dimension_count"))) {
    auto n = intKey(key("rope.dimension_count"));
    if (failed(n))
      return failure();
    // Partial rotary embeddings (Phi-4 mini: 96 of 128) rotate the first
    // n lanes of each head, rotate-half within them, as llama.cpp's NEOX
    // mode and transformers' partial_rotary_factor do.
    if (*n <= 0 || *n > headDim || *n % 2)
      return err() << "GGUF key '" << key("rope.dimension_count") << "' is "
                   << *n << "; it must be even and in (0, " << headDim
                   << "], the head width";
    if (*n < headDim && !ropeNeox)
      return err() << "GGUF key '" << key("rope.dimension_count") << "' is "
                   << *n << ", less than the head width " << headDim
                   << ": partial rotary embeddings are supported for "
                      "rotate-half RoPE (qwen2, qwen3, gemma, phi3) only";
    ropeDim = *n;
  }
  std::string type = "none";
  if (const gguf::Value *t = file.find(key("rope.scaling.type"))) {
    if (t->type != gguf::ValueType::String)
      return err() << "'" << key("rope.scaling.type") << "' is not a string";
    type = t->s;
  }
  std::optional<double> factor;
  if (file.find(key("rope.scaling.factor"))) {
    auto f = floatKey(key("rope.scaling.factor"));
    if (failed(f))
      return failure();
    factor = *f;
  } else if (file.find(key("rope.scale_linear"))) {
    // The older key: linear scaling by this factor.
    auto f = floatKey(key("rope.scale_linear"));
    if (failed(f))
      return failure();
    factor = *f;
    if (type == "none")
      type = "linear";
  }
  if (type == "linear") {
    if (!factor)
      return err() << "linear RoPE scaling ('" << key("rope.scaling.type")
                   << "') needs '" << key("rope.scaling.factor") << "'";
    if (!(*factor > 0) || !std::isfinite(*factor))
      return err() << "'" << key("rope.scaling.factor") << "' is " << *factor
                   << "; linear RoPE scaling needs a positive factor";
    ropeScale = 1 / *factor;
  } else if (type == "yarn") {
    if (failed(readYarn(factor)))
      return failure();
  } else if (type != "none") {
    return err() << "GGUF key '" << key("rope.scaling.type") << "' is '"
                 << type << "': only none, linear and yarn RoPE scaling "
                            "(and rope_freqs.weight) are supported";
  }
  if (const gguf::TensorInfo *t = tensor("rope_freqs.weight"))
    return readFrequencyFactors(*t, ropeFactors);
  return success();
}

LogicalResult LlamaBuilder::readFrequencyFactors(const gguf::TensorInfo &t,
                                                 std::vector<float> &out) {
  int64_t half = ropeDim / 2;
  if (t.dims.size() != 1 || t.dims[0] != static_cast<uint64_t>(half))
    return err() << "tensor '" << t.name << "' must be [" << half
                 << "] (one factor per frequency of the rotary width "
                 << ropeDim << ")";
  auto f = dequantize(t);
  if (failed(f))
    return failure();
  for (float v : *f)
    if (!(v > 0) || !std::isfinite(v))
      return err() << "tensor '" << t.name << "' holds " << v
                   << "; RoPE frequency factors must be positive";
  out = std::move(*f);
  return success();
}

LogicalResult LlamaBuilder::readLongRope() {
  const gguf::TensorInfo *longT = tensor("rope_factors_long.weight");
  const gguf::TensorInfo *shortT = tensor("rope_factors_short.weight");
  if (!longT && !shortT)
    return success();
  if (!phi3)
    return err() << "rope_factors_long / rope_factors_short (LongRoPE) are "
                    "supported for phi3 only, not for " << arch;
  if (!longT || !shortT)
    return err() << "LongRoPE needs both rope_factors_long.weight and "
                    "rope_factors_short.weight";
  if (!ropeFactors.empty() || yarn || ropeScale != 1)
    return err() << "LongRoPE cannot be combined with other RoPE scaling";
  if (failed(readFrequencyFactors(*longT, longRope.longFactors)) ||
      failed(readFrequencyFactors(*shortT, longRope.shortFactors)))
    return failure();
  auto orig = intKey(key("rope.scaling.original_context_length"));
  if (failed(orig))
    return failure();
  if (*orig <= 0)
    return err() << "'" << key("rope.scaling.original_context_length")
                 << "' is " << *orig << "; LongRoPE needs a positive "
                                        "original context";
  longRope.originalContext = *orig;
  // The magnitude of cos/sin: the file's attn_factor (the converter's
  // sqrt(1 + ln(s) / ln(original)) for s = trained / original context).
  if (file.find(key("rope.scaling.attn_factor"))) {
    auto m = floatKey(key("rope.scaling.attn_factor"));
    if (failed(m))
      return failure();
    if (!(*m > 0) || !std::isfinite(*m))
      return err() << "'" << key("rope.scaling.attn_factor") << "' is " << *m
                   << "; a RoPE magnitude must be positive";
    longRope.magnitude = *m;
  } else {
    auto trained = intKey(key("context_length"));
    if (failed(trained))
      return failure();
    double s = static_cast<double>(*trained) / static_cast<double>(*orig);
    longRope.magnitude =
        s <= 1 ? 1 : std::sqrt(1 + std::log(s) / std::log(double(*orig)));
  }
  longRope.enabled = true;
  return success();
}

LogicalResult LlamaBuilder::readYarn(std::optional<double> factor) {
  auto positive = [&](StringRef name, double &out) -> LogicalResult {
    if (!file.find(key(name)))
      return success();
    auto v = floatKey(key(name));
    if (failed(v))
      return failure();
    if (!(*v > 0) || !std::isfinite(*v))
      return err() << "'" << key(name) << "' is " << *v
                   << "; YaRN needs a positive value";
    out = *v;
    return success();
  };
  Yarn y;
  if (!factor)
    return err() << "YaRN RoPE scaling ('" << key("rope.scaling.type")
                 << "') needs '" << key("rope.scaling.factor") << "'";
  if (!(*factor > 0) || !std::isfinite(*factor))
    return err() << "'" << key("rope.scaling.factor") << "' is " << *factor
                 << "; YaRN needs a positive factor";
  y.factor = *factor;
  // The context the model was trained at; llama.cpp falls back to
  // context_length when the converter did not store it.
  StringRef origKey = "rope.scaling.original_context_length";
  if (!file.find(key(origKey)))
    origKey = "context_length";
  auto orig = intKey(key(origKey));
  if (failed(orig))
    return failure();
  if (*orig <= 0)
    return err() << "'" << key(origKey) << "' is " << *orig
                 << "; YaRN needs a positive original context";
  y.originalContext = *orig;
  if (failed(positive("rope.scaling.yarn_beta_fast", y.betaFast)) ||
      failed(positive("rope.scaling.yarn_beta_slow", y.betaSlow)))
    return failure();
  if (file.find(key("rope.scaling.yarn_ext_factor"))) {
    auto v = floatKey(key("rope.scaling.yarn_ext_factor"));
    if (failed(v))
      return failure();
    if (!(*v >= 0 && *v <= 1))
      return err() << "'" << key("rope.scaling.yarn_ext_factor") << "' is "
                   << *v << "; YaRN's extrapolation share must be in [0, 1]";
    y.extFactor = *v;
  }
  // The magnitude, as transformers computes attention_factor: the stored
  // one (the converter writes config's attention_factor to
  // yarn_attn_factor), else 0.1 ln(factor) + 1, divided by
  // yarn_log_multiplier ln(factor) + 1 when that is set (the converter
  // stores 0.1 x DeepSeek's mscale_all_dim there; llama.cpp's context
  // setup divides the same way).
  auto mscale = [&](double logMul) {
    return y.factor <= 1 ? 1.0 : logMul * std::log(y.factor) + 1.0;
  };
  double logMul = 0;
  if (file.find(key("rope.scaling.yarn_log_multiplier"))) {
    auto v = floatKey(key("rope.scaling.yarn_log_multiplier"));
    if (failed(v))
      return failure();
    if (!(*v >= 0) || !std::isfinite(*v))
      return err() << "'" << key("rope.scaling.yarn_log_multiplier")
                   << "' is " << *v << "; YaRN needs a multiplier >= 0";
    logMul = *v;
  }
  y.magnitude = mscale(0.1) / (logMul != 0 ? mscale(logMul) : 1.0);
  if (failed(positive("rope.scaling.yarn_attn_factor", y.magnitude)))
    return failure();
  // Without extrapolation (ext_factor 0) every frequency is interpolated
  // and llama.cpp applies no magnitude of its own.
  if (y.extFactor == 0 && !file.find(key("rope.scaling.yarn_attn_factor")))
    y.magnitude = 1;
  double extra = 1;
  if (failed(positive("rope.scaling.attn_factor", extra)))
    return failure();
  y.magnitude *= extra;
  yarn = y;
  return success();
}

double LlamaBuilder::yarnMix(int64_t i) const {
  // The dimension (of the rotary width) whose wavelength turns
  // `rotations` times over the original context, floored / ceiled and
  // clamped as llama.cpp and transformers (truncate) do.
  double d = static_cast<double>(ropeDim);
  auto dim = [&](double rotations) {
    return d *
           std::log(static_cast<double>(yarn->originalContext) /
                    (rotations * 2 * M_PI)) /
           (2 * std::log(ropeBase));
  };
  double low = std::max(0.0, std::floor(dim(yarn->betaFast)));
  double high = std::min(d - 1, std::ceil(dim(yarn->betaSlow)));
  double ramp = (static_cast<double>(i) - low) / std::max(0.001, high - low);
  return (1 - std::clamp(ramp, 0.0, 1.0)) * yarn->extFactor;
}

LogicalResult LlamaBuilder::checkAllTensorsUsed() {
  for (const gguf::TensorInfo &t : file.tensors)
    if (!usedTensors.contains(t.name))
      return err() << "GGUF tensor '" << t.name << "' is not used by the "
                   << arch << " model Kiln builds; a tensor left out would "
                      "change the model, so the file is refused";
  return success();
}

LogicalResult LlamaBuilder::readHyperparameters() {
  auto need = [&](StringRef key, int64_t &out) {
    auto v = intKey(key);
    if (failed(v))
      return false;
    out = *v;
    return true;
  };
  if (!need(key("block_count"), layers) ||
      !need(key("embedding_length"), dModel) ||
      !need(key("attention.head_count"), heads) ||
      !need(key("feed_forward_length"), ffn))
    return failure();
  kvHeads = heads;
  if (file.find(key("attention.head_count_kv")) &&
      !need(key("attention.head_count_kv"), kvHeads))
    return failure();
  auto e = floatKey(key(layerNorm ? "attention.layer_norm_epsilon"
                                   : "attention.layer_norm_rms_epsilon"));
  if (failed(e))
    return failure();
  eps = *e;
  if (phi3 && file.find(key("attention.sliding_window"))) {
    // Phi-3's converted files carry the checkpoint's window (2047 for the
    // 4k models, 262144 for the 128k ones), which llama.cpp disables and
    // transformers' GGUF loader does not read: attention is full here too.
    auto w = intKey(key("attention.sliding_window"));
    if (failed(w))
      return failure();
    if (*w > 0)
      emitWarning(loc) << "GGUF key '" << key("attention.sliding_window")
                       << "' (" << *w << ") is not applied to phi3, as in "
                          "llama.cpp: attention is over the whole context";
  } else if (file.find(key("attention.sliding_window"))) {
    if (!gemma)
      return err() << "GGUF key '" << key("attention.sliding_window")
                   << "': sliding-window attention is supported for gemma2 "
                      "and gemma3 only, not for " << arch;
    if (!need(key("attention.sliding_window"), slidingWindow))
      return failure();
    if (slidingWindow <= 0)
      return err() << "GGUF key '" << key("attention.sliding_window")
                   << "' is " << slidingWindow << "; a window must be positive";
  }
  // Soft-capping: x -> cap * tanh(x / cap) on the attention scores and on
  // the logits (Gemma 2: 50 and 30); a cap must be positive.
  for (auto [name, dst] : {std::pair{"attn_logit_softcapping", &attnSoftcap},
                           std::pair{"final_logit_softcapping", &finalSoftcap}}) {
    if (!file.find(key(name)))
      continue;
    auto cap = floatKey(key(name));
    if (failed(cap))
      return failure();
    if (!(*cap > 0) || !std::isfinite(*cap)) {
      std::string shown;
      llvm::raw_string_ostream(shown) << llvm::format("%g", *cap);
      return err() << "GGUF key '" << key(name) << "' is " << shown
                   << "; a soft-capping value must be positive";
    }
    *dst = static_cast<float>(*cap);
  }
  if (file.find(key("rope.freq_base"))) {
    auto r = floatKey(key("rope.freq_base"));
    if (failed(r))
      return failure();
    ropeBase = *r;
  }
  // The head width: attention.key_length when the file has it (qwen3's
  // heads are wider than width / heads), else width / heads.
  headDim = 0;
  if (file.find(key("attention.key_length"))) {
    if (!need(key("attention.key_length"), headDim))
      return failure();
    int64_t valueLength = headDim;
    if (file.find(key("attention.value_length")) &&
        !need(key("attention.value_length"), valueLength))
      return failure();
    if (valueLength != headDim)
      return err() << "GGUF key '" << key("attention.value_length") << "' is "
                   << valueLength << ", not the key length " << headDim
                   << ": different key and value widths are not supported";
  }
  if (heads <= 0 || kvHeads <= 0 || heads % kvHeads || layers <= 0 ||
      ffn <= 0 || headDim < 0 || (!headDim && dModel % heads))
    return err() << "inconsistent llama hyperparameters (heads " << heads
                 << ", kv heads " << kvHeads << ", width " << dModel
                 << ", head width " << headDim << ")";
  if (!headDim)
    headDim = dModel / heads;
  if (headDim % 2)
    return err() << "head dim " << headDim << " is odd; RoPE needs pairs";
  // StableLM's parallel residual (attention and FFN from the same norm,
  // no ffn_norm: the 12B) is not built.
  if (layerNorm && !starcoder2 && !nemotron && !gpt2 && llvm::none_of(file.tensors, [](const gguf::TensorInfo &t) {
        return t.name == "blk.0.ffn_norm.weight";
      }))
    return err() << "stablelm file without blk.0.ffn_norm.weight: the "
                    "parallel residual (one norm for attention and FFN) is "
                    "not supported";
  if (failed(readRopeScaling()) || failed(readLongRope()))
    return failure();
  const gguf::TensorInfo *embd = tensor("token_embd.weight");
  if (!embd || embd->dims.size() != 2 ||
      embd->dims[0] != static_cast<uint64_t>(dModel))
    return err() << "GGUF file lacks a [" << dModel
                 << ", vocab] token_embd.weight";
  vocab = static_cast<int64_t>(embd->dims[1]);
  return success();
}

LogicalResult LlamaBuilder::buildFunction(ModuleOp module, StringRef name,
                                          int64_t seq, bool cached) {
  int64_t kvDim = kvHeads * headDim, qDim = heads * headDim;
  auto i64 = b.getI64Type();
  auto idsType = RankedTensorType::get({1, seq}, i64);
  SmallVector<Type> argTypes = {idsType};
  SmallVector<Attribute> argNames = {b.getStringAttr("tokens")};
  if (cached) {
    argTypes.append({idsType, RankedTensorType::get({tableLen}, b.getI32Type()),
                     RankedTensorType::get({2}, i64), cacheType});
    for (StringRef n : {"positions", "block_table", "step"})
      argNames.push_back(b.getStringAttr(n));
  }
  // The LLM form returns the last real token's logits only.
  int64_t outRows = cached ? 1 : seq;
  auto logitsType = cached ? f32({1, vocab}) : f32({1, seq, vocab});
  b.setInsertionPointToEnd(module.getBody());
  auto func = func::FuncOp::create(b, loc, name,
                                   b.getFunctionType(argTypes, {logitsType}));
  Block *entry = func.addEntryBlock();
  b.setInsertionPointToStart(entry);
  Value tokens = entry->getArgument(0), positions, table, step, cache;
  if (cached) {
    positions = entry->getArgument(1);
    table = entry->getArgument(2);
    step = entry->getArgument(3);
    cache = entry->getArgument(4);
  } else {
    SmallVector<int64_t> iota(seq);
    for (int64_t i = 0; i < seq; ++i)
      iota[i] = i;
    positions = ConstantOp::create(
        b, loc, idsType, DenseElementsAttr::get(idsType, ArrayRef(iota)));
  }

  const gguf::TensorInfo *embd = tensor("token_embd.weight");
  StringRef embdFormat = packedFormat(*embd);
  Value x;
  if (!embdFormat.empty()) {
    x = QuantGatherOp::create(b, loc, f32({1, seq, dModel}),
                              packedWeight(*embd, embdFormat, vocab, dModel),
                              tokens, b.getStringAttr(embdFormat));
  } else {
    auto emb = f32Weight(*embd, "token_embd.weight", {vocab, dModel},
                         /*transpose=*/false);
    if (failed(emb))
      return failure();
    x = GatherOp::create(b, loc, f32({1, seq, dModel}), *emb, tokens,
                         b.getI64IntegerAttr(0));
  }
  if (gemma) // Gemma scales the embedding by sqrt(width).
    x = MulOp::create(b, loc, x.getType(), x,
                      scalar(std::sqrt(static_cast<float>(dModel))));
  if (gpt2) {
    // Learned absolute positions: row p of position_embd added.
    const gguf::TensorInfo *pt = tensor("position_embd.weight");
    if (!pt || pt->dims.size() != 2 || pt->dims[0] != static_cast<uint64_t>(dModel))
      return err() << "GGUF file lacks a [" << dModel
                   << ", positions] position_embd.weight";
    int64_t rows = static_cast<int64_t>(pt->dims[1]);
    auto pe = f32Weight(*pt, "position_embd.weight", {rows, dModel},
                        /*transpose=*/false);
    if (failed(pe))
      return failure();
    x = AddOp::create(b, loc, x.getType(), x,
                      GatherOp::create(b, loc, f32({1, seq, dModel}), *pe,
                                       positions, b.getI64IntegerAttr(0)));
  }
  auto flat = f32({seq, dModel});
  // Gemma 2 27B's and Gemma 3 27B's queries are scaled by their width per
  // head, not their head width (query_pre_attn_scalar, which GGUF does not
  // store; llama.cpp tells the 46- and 62-layer models apart the same way).
  bool widthScaled = gemma && layers == (gemma2 ? 46 : 62);
  float attnScale = 1.0f / std::sqrt(static_cast<float>(
                               widthScaled ? dModel / heads : headDim));
  for (int64_t l = 0; l < layers; ++l) {
    std::string p = "blk." + std::to_string(l) + ".";
    auto h = norm(x, p + "attn_norm.weight");
    if (failed(h))
      return failure();
    Value h2 = ReshapeOp::create(b, loc, flat, *h);
    FailureOr<Value> q, k, v;
    if ((phi3 || gpt2) && tensor(p + "attn_qkv.weight")) {
      // One projection; its columns are q, k, v.
      auto qkv = linear(h2, p + "attn_qkv.weight", dModel, qDim + 2 * kvDim,
                        p + "attn_qkv.bias");
      if (failed(qkv))
        return failure();
      q = columns(*qkv, 0, qDim);
      k = columns(*qkv, qDim, kvDim);
      v = columns(*qkv, qDim + kvDim, kvDim);
    } else {
      q = linear(h2, p + "attn_q.weight", dModel, qDim, p + "attn_q.bias");
      k = linear(h2, p + "attn_k.weight", dModel, kvDim, p + "attn_k.bias");
      v = linear(h2, p + "attn_v.weight", dModel, kvDim, p + "attn_v.bias");
    }
    if (failed(q) || failed(k) || failed(v))
      return failure();
    auto heads4 = [&](Value t, int64_t n) {
      Value r = ReshapeOp::create(b, loc, f32({1, seq, n, headDim}), t);
      return TransposeOp::create(b, loc, f32({1, n, seq, headDim}), r,
                                 ArrayRef<int64_t>{0, 2, 1, 3})
          .getResult();
    };
    Value qh = heads4(*q, heads), kh = heads4(*k, kvHeads);
    if (qkNorm) {
      auto qn = norm(qh, p + "attn_q_norm.weight", headDim);
      auto kn = norm(kh, p + "attn_k_norm.weight", headDim);
      if (failed(qn) || failed(kn))
        return failure();
      qh = *qn;
      kh = *kn;
    }
    bool sliding = slidingLayer(l);
    if (!gpt2) { // GPT-2's positions are in the embedding
      qh = rope(qh, heads, positions, localRope(l));
      kh = rope(kh, kvHeads, positions, localRope(l));
    }
    Value vh = heads4(*v, kvHeads);
    auto scale = b.getF32FloatAttr(attnScale);
    auto window = b.getI64IntegerAttr(sliding ? slidingWindow : 0);
    Value a;
    if (cached) {
      KvStoreOp::create(b, loc, cache, kh, vh, table, step,
                        b.getI64IntegerAttr(l));
      a = PagedAttentionOp::create(b, loc, qh.getType(), qh, cache, table,
                                   step, b.getI64IntegerAttr(l), scale,
                                   window, b.getI64IntegerAttr(0),
                                   options.kvDtype == "f16" &&
                                           options.roundedProbs
                                       ? b.getUnitAttr()
                                       : UnitAttr(),
                                   b.getF32FloatAttr(attnSoftcap));
    } else {
      a = AttentionOp::create(b, loc, f32({1, heads, seq, headDim}), qh, kh,
                              vh, Value(), scale, b.getBoolAttr(true), window,
                              b.getI64IntegerAttr(0),
                              b.getF32FloatAttr(attnSoftcap));
    }
    Value at = TransposeOp::create(b, loc, f32({1, seq, heads, headDim}), a,
                                   ArrayRef<int64_t>{0, 2, 1, 3});
    Value a2 = ReshapeOp::create(b, loc, f32({seq, qDim}), at);
    auto o = linear(a2, p + "attn_output.weight", qDim, dModel,
                    p + "attn_output.bias");
    if (failed(o))
      return failure();
    if (gemma) {
      o = norm(*o, p + "post_attention_norm.weight");
      if (failed(o))
        return failure();
    }
    x = AddOp::create(b, loc, x.getType(), x,
                      ReshapeOp::create(b, loc, x.getType(), *o));
    auto hf = norm(x, p + "ffn_norm.weight");
    if (failed(hf))
      return failure();
    Value hf2 = ReshapeOp::create(b, loc, flat, *hf);
    Value m;
    auto ft = f32({seq, ffn});
    if (starcoder2 || nemotron || gpt2) {
      // Not gated: down(act(up(x) + b)) + b, act gelu_tanh (starcoder2,
      // gpt2) or relu squared (nemotron).
      auto u = linear(hf2, p + "ffn_up.weight", dModel, ffn, p + "ffn_up.bias");
      if (failed(u))
        return failure();
      if (nemotron) {
        Value r = ReluOp::create(b, loc, ft, *u);
        m = MulOp::create(b, loc, ft, r, r);
      } else {
        m = GeluOp::create(b, loc, ft, *u, b.getBoolAttr(true));
      }
    } else {
      FailureOr<Value> g, u;
      if (phi3) {
        // ffn_up holds the gate's rows, then the up projection's.
        auto gu = linear(hf2, p + "ffn_up.weight", dModel, 2 * ffn);
        if (failed(gu))
          return failure();
        g = columns(*gu, 0, ffn);
        u = columns(*gu, ffn, ffn);
      } else {
        g = linear(hf2, p + "ffn_gate.weight", dModel, ffn);
        u = linear(hf2, p + "ffn_up.weight", dModel, ffn);
      }
      if (failed(g) || failed(u))
        return failure();
      Value act = gemma ? GeluOp::create(b, loc, ft, *g, b.getBoolAttr(true))
                              .getResult()
                        : MulOp::create(b, loc, ft, *g,
                                        SigmoidOp::create(b, loc, ft, *g))
                              .getResult();
      m = MulOp::create(b, loc, ft, act, *u);
    }
    auto d = linear(m, p + "ffn_down.weight", ffn, dModel, p + "ffn_down.bias");
    if (failed(d))
      return failure();
    if (gemma) {
      d = norm(*d, p + "post_ffw_norm.weight");
      if (failed(d))
        return failure();
    }
    x = AddOp::create(b, loc, x.getType(), x,
                      ReshapeOp::create(b, loc, x.getType(), *d));
  }
  if (cached && seq > 1) {
    // Only the last real token (index n - 1 of the chunk) needs logits.
    auto one = RankedTensorType::get({1}, i64);
    Value n = SliceOp::create(b, loc, one, step, ArrayRef<int64_t>{1},
                              ArrayRef<int64_t>{1});
    Value last = SubOp::create(
        b, loc, one, n,
        ConstantOp::create(b, loc, one,
                           DenseElementsAttr::get(one, int64_t(1))));
    x = GatherOp::create(b, loc, f32({1, 1, dModel}), x, last,
                         b.getI64IntegerAttr(1));
  }
  auto hn = norm(x, "output_norm.weight");
  if (failed(hn))
    return failure();
  Value h2 = ReshapeOp::create(b, loc, f32({outRows, dModel}), *hn);
  Value logits;
  if (tensor("output.weight")) {
    auto o = linear(h2, "output.weight", dModel, vocab);
    if (failed(o))
      return failure();
    logits = *o;
  } else if (!embdFormat.empty()) {
    // Tied embeddings: the output projection is the embedding table, whose
    // [vocab, width] rows are what quant_matmul reads.
    logits = QuantMatMulOp::create(
        b, loc, f32({outRows, vocab}), h2,
        packedWeight(*embd, embdFormat, vocab, dModel),
        b.getStringAttr(embdFormat), b.getStringAttr(options.activations));
  } else {
    // Tied embeddings: the output projection is the embedding table.
    auto w = f32Weight(*embd, "output.tied", {dModel, vocab},
                       /*transpose=*/true);
    if (failed(w))
      return failure();
    logits = MatMulOp::create(b, loc, f32({outRows, vocab}), h2, *w);
  }
  if (finalSoftcap > 0) {
    auto lt = cast<RankedTensorType>(logits.getType());
    logits = MulOp::create(
        b, loc, lt,
        TanhOp::create(b, loc, lt,
                       DivOp::create(b, loc, lt, logits, scalar(finalSoftcap))),
        scalar(finalSoftcap));
  }
  Value out = ReshapeOp::create(b, loc, logitsType, logits);
  func::ReturnOp::create(b, loc, out);
  func->setAttr("kiln.input_names", b.getArrayAttr(argNames));
  func->setAttr("kiln.output_names", b.getArrayAttr({b.getStringAttr("logits")}));
  return success();
}

LogicalResult LlamaBuilder::checkPositions(int64_t context) {
  if (!gpt2)
    return success();
  // Learned positions end at the table's last row.
  const gguf::TensorInfo *pt = tensor("position_embd.weight");
  int64_t rows = pt && pt->dims.size() == 2 ? static_cast<int64_t>(pt->dims[1]) : 0;
  if (context > rows)
    return err() << "a context of " << context << " is longer than gpt2's "
                 << rows << " learned positions (position_embd.weight); give "
                            "--max-context=" << rows << " or less";
  return success();
}

OwningOpRef<ModuleOp> LlamaBuilder::build() {
  if (failed(readHyperparameters()))
    return nullptr;
  OwningOpRef<ModuleOp> module = ModuleOp::create(loc);
  if (options.seqLen > 0) {
    if (failed(checkPositions(options.seqLen)))
      return nullptr;
    ropeRows = options.seqLen;
    if (longRope.enabled)
      ropeFactors = options.seqLen > longRope.originalContext
                        ? longRope.longFactors
                        : longRope.shortFactors;
    if (failed(buildFunction(*module, "main", options.seqLen, false)) ||
        failed(checkAllTensorsUsed()))
      return nullptr;
    return module;
  }
  int64_t trained = 0;
  if (file.find(key("context_length"))) {
    auto c = intKey(key("context_length"));
    if (failed(c))
      return nullptr;
    trained = *c;
  }
  int64_t context = options.maxContext;
  if (context <= 0)
    context = trained > 0 ? std::min<int64_t>(trained, 4096) : 2048;
  if (failed(checkPositions(context)))
    return nullptr;
  int64_t block = options.blockSize, chunk = options.prefillChunk;
  if (block <= 0 || chunk <= 0) {
    err() << "block size and prefill chunk must be positive";
    return nullptr;
  }
  tableLen = (context + block - 1) / block;
  // Round the context to whole blocks; padding of the last prefill chunk
  // may reach past it, so RoPE rows cover that too (the gather clamps).
  // LongRoPE's factors by the context asked for (llama.cpp's n_ctx).
  if (longRope.enabled)
    ropeFactors = context > longRope.originalContext ? longRope.longFactors
                                                     : longRope.shortFactors;
  context = tableLen * block;
  ropeRows = context + chunk;
  Type kvElt = kvCacheElementType(b.getContext(), options.kvDtype);
  if (!kvElt) {
    err() << "KV cache dtype must be f32, f16 or int8, not '"
          << options.kvDtype << "'";
    return nullptr;
  }
  cacheType = MemRefType::get(
      {tableLen, layers, 2, kvHeads, block, kvCacheRowElements(kvElt, headDim)},
      kvElt);
  if (failed(buildFunction(*module, "prefill", chunk, true)) ||
      failed(buildFunction(*module, "decode", 1, true)))
    return nullptr;
  for (int64_t n : options.smallerPrefillChunks) {
    if (n <= 1 || n >= chunk) {
      err() << "a smaller prefill chunk must be in [2, " << chunk << "), not "
            << n;
      return nullptr;
    }
    if (failed(buildFunction(*module, "prefill_" + std::to_string(n), n, true)))
      return nullptr;
  }
  if (failed(checkAllTensorsUsed()))
    return nullptr;
  (*module)->setAttr("kiln.max_context", b.getI64IntegerAttr(context));
  return module;
}

/// tokenizer.ggml.*: byte-level BPE ("gpt2") or SentencePiece BPE
/// ("llama"); other models are reported, and the artifact then has no
/// tokenizer.
LogicalResult readTokenizer(const gguf::File &file, Location loc,
                            std::optional<TokenizerSpec> &out) {
  const gguf::Value *model = file.find("tokenizer.ggml.model");
  if (!model)
    return success();
  if (model->type != gguf::ValueType::String)
    return emitError(loc) << "tokenizer.ggml.model is not a string";
  if (model->s != "gpt2" && model->s != "llama") {
    emitWarning(loc) << "tokenizer model '" << model->s
                     << "' is not supported (supported: gpt2, byte-level "
                        "BPE, and llama, SentencePiece BPE); the artifact "
                        "gets no tokenizer";
    return success();
  }
  bool spm = model->s == "llama";
  auto strings = [&](StringRef key, std::vector<std::string> &dst,
                     bool required) -> LogicalResult {
    const gguf::Value *v = file.find(key);
    if (!v)
      return required ? emitError(loc) << "GGUF file lacks '" << key << "'"
                      : success();
    if (v->type != gguf::ValueType::Array ||
        v->elementType != gguf::ValueType::String)
      return emitError(loc) << "'" << key << "' is not an array of strings";
    for (const gguf::Value &e : v->array)
      dst.push_back(e.s);
    return success();
  };
  TokenizerSpec t;
  t.model = model->s;
  std::string pre = "default";
  if (const gguf::Value *p = file.find("tokenizer.ggml.pre");
      p && p->type == gguf::ValueType::String)
    pre = p->s;
  // llama.cpp's names for the pre-tokenizers Kiln implements. Llama 3's
  // family also takes a piece that is a token whole (ignore_merges) and
  // adds BOS unless the file says otherwise.
  if (spm) {
    // SentencePiece has no pre-tokenizer (llama.cpp ignores the key), adds
    // BOS and the space prefix unless the file says otherwise.
    t.pre = "";
    t.addBos = true;
    t.addSpacePrefix = true;
  } else if (pre == "default" || pre == "gpt2" || pre == "gpt-2" ||
             pre == "phi-2" || pre == "mpt" || pre == "olmo" || pre == "jais") {
    // llama.cpp's GPT-2 regex family.
    t.pre = "gpt2";
  } else if (pre == "smollm" || pre == "starcoder" || pre == "refact" ||
             pre == "command-r" || pre == "codeshell" || pre == "exaone" ||
             pre == "minerva-7b") {
    // Single digits, then the GPT-2 regex (llama.cpp's STARCODER family).
    t.pre = "smollm";
  } else if (pre == "llama3" || pre == "llama-v3" || pre == "llama-bpe" ||
             pre == "falcon3") {
    t.pre = "llama3";
    t.ignoreMerges = true;
    t.addBos = true;
  } else if (pre == "qwen2" || pre == "deepseek-r1-qwen" || pre == "megrez" ||
             pre == "stablelm2") {
    t.pre = "qwen2";
  } else {
    emitWarning(loc) << "pre-tokenizer '" << pre
                     << "' is not supported (supported: gpt2, smollm, "
                        "llama3 / llama-bpe, qwen2); the artifact gets no "
                        "tokenizer";
    return success();
  }
  // No merges is a valid byte-level BPE: every byte is its own token.
  if (failed(strings("tokenizer.ggml.tokens", t.tokens, true)) ||
      failed(strings("tokenizer.ggml.merges", t.merges, false)))
    return failure();
  // A file that names no pre-tokenizer is tokenized with GPT-2's regex; a
  // real vocabulary (one with merges) was likely made under another, as
  // llama.cpp warns too.
  if (!spm && pre == "default" && !t.merges.empty())
    emitWarning(loc) << "the GGUF file names no pre-tokenizer "
                        "(tokenizer.ggml.pre); using GPT-2's, which may "
                        "split text differently from the model's own";
  t.types.assign(t.tokens.size(), 1);
  if (const gguf::Value *types = file.find("tokenizer.ggml.token_type")) {
    if (types->type != gguf::ValueType::Array ||
        types->array.size() != t.tokens.size())
      return emitError(loc) << "tokenizer.ggml.token_type does not match the "
                               "token list";
    for (size_t i = 0; i < types->array.size(); ++i)
      t.types[i] = static_cast<uint8_t>(types->array[i].i ? types->array[i].i
                                                          : types->array[i].u);
  }
  auto id = [&](StringRef key, int32_t &dst) -> LogicalResult {
    const gguf::Value *v = file.find(key);
    if (!v)
      return success();
    uint64_t x = v->u ? v->u : static_cast<uint64_t>(v->i);
    if (x >= t.tokens.size())
      return emitError(loc) << "'" << key << "' is " << x << ", outside the "
                            << t.tokens.size() << " tokens";
    dst = static_cast<int32_t>(x);
    return success();
  };
  int32_t eot = -1, eom = -1;
  if (failed(id("tokenizer.ggml.bos_token_id", t.bos)) ||
      failed(id("tokenizer.ggml.eos_token_id", t.eos)) ||
      failed(id("tokenizer.ggml.eot_token_id", eot)) ||
      failed(id("tokenizer.ggml.eom_token_id", eom)))
    return failure();
  for (int32_t e : {eot, eom})
    if (e >= 0)
      t.eog.push_back(e);
  if (const gguf::Value *v = file.find("tokenizer.ggml.add_bos_token"))
    t.addBos = v->u != 0;
  if (const gguf::Value *v = file.find("tokenizer.ggml.add_space_prefix"))
    t.addSpacePrefix = spm && v->u != 0;
  if (const gguf::Value *v = file.find("tokenizer.ggml.add_eos_token");
      v && v->u != 0)
    emitWarning(loc) << "tokenizer.ggml.add_eos_token is set; Kiln does not "
                        "append EOS to prompts";
  if (spm) {
    // Scores order the merges; a file without them merges left to right
    // (llama.cpp's default of 0 for every token).
    t.scores.assign(t.tokens.size(), 0.0f);
    if (const gguf::Value *v = file.find("tokenizer.ggml.scores")) {
      if (v->type != gguf::ValueType::Array ||
          v->elementType != gguf::ValueType::F32 ||
          v->array.size() != t.tokens.size())
        return emitError(loc) << "tokenizer.ggml.scores is not one f32 per "
                                 "token";
      for (size_t i = 0; i < v->array.size(); ++i)
        t.scores[i] = static_cast<float>(v->array[i].f);
    } else {
      emitWarning(loc) << "the SentencePiece vocabulary has no "
                          "tokenizer.ggml.scores: every merge scores 0 (as "
                          "in llama.cpp), so text may split differently "
                          "from the model's own";
    }
    if (!t.merges.empty())
      emitWarning(loc) << "tokenizer.ggml.merges of a SentencePiece "
                          "vocabulary are ignored (its scores order the "
                          "merges)";
    t.merges.clear();
  }
  if (const gguf::Value *v = file.find("tokenizer.chat_template");
      v && v->type == gguf::ValueType::String)
    t.chatTemplate = v->s;
  out = std::move(t);
  return success();
}

} // namespace

OwningOpRef<ModuleOp> importGgufFile(StringRef path, MLIRContext &context,
                                     WeightStore &weights,
                                     const GgufImportOptions &options,
                                     std::optional<TokenizerSpec> *tokenizer) {
  context.loadDialect<KilnDialect, func::FuncDialect>();
  Location loc = FileLineColLoc::get(&context, path, 0, 0);
  std::string error;
  std::shared_ptr<gguf::File> file = gguf::File::open(path, error);
  if (!file) {
    emitError(loc) << error;
    return nullptr;
  }
  weights.keepAlive(file);
  const gguf::Value *arch = file->find("general.architecture");
  if (!arch || arch->type != gguf::ValueType::String) {
    emitError(loc) << "GGUF file has no general.architecture";
    return nullptr;
  }
  if (arch->s != "llama" && arch->s != "qwen2" && arch->s != "qwen3" &&
      arch->s != "gemma2" && arch->s != "gemma3" && arch->s != "phi3" &&
      arch->s != "stablelm" && arch->s != "starcoder2" &&
      arch->s != "nemotron" && arch->s != "gpt2") {
    emitError(loc) << "GGUF architecture '" << arch->s
                   << "' is not supported (supported: llama, qwen2, qwen3, "
                      "gemma2, gemma3, phi3, stablelm, starcoder2, nemotron, "
                      "gpt2)";
    return nullptr;
  }
  if (tokenizer && failed(readTokenizer(*file, loc, *tokenizer)))
    return nullptr;
  LlamaBuilder builder(*file, context, weights, loc, options);
  builder.setArchitecture(arch->s);
  return builder.build();
}

} // namespace kiln
