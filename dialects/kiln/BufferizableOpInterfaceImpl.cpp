//===- BufferizableOpInterfaceImpl.cpp - Hand-built kernels ---------------===//
//
// Ops whose kernels are written here as loops over buffers take part in
// One-Shot Bufferize directly: their tensor operands are only read, their
// result is a new buffer, and bufferizing them emits their loops.
//
// kiln.quant_matmul and kiln.quant_gather read GGUF blocks as they are in
// the file and dequantize them in vector registers (16 lanes of f32 per
// half block); the matmul processes up to four rows of x per dequantized
// block, so a prefill chunk pays the unpacking once per four tokens. A
// K-quant row is walked by 256-value blocks with their eight 32-value
// groups unrolled, so that each group's scale decoding folds to a few
// byte loads and masks.
//
// kiln.kv_store and kiln.paged_attention read tensors and a memref (the
// runtime's KV cache), so they take part in One-Shot Bufferize directly:
// their tensor operands are only read, the attention result is a new
// buffer, and bufferizing them emits their loops. The attention kernel is
// the online-softmax form (one pass over the cached keys, running max and
// sum) with a head_dim vector per key; its trip count is the run-time
// context length, so a decode step costs what the context holds, not the
// cache's capacity. GPU targets get scalar forms: the store one invocation
// per (token, head, dim), attention split over the keys
// (splitKeysAttention).
//
//===----------------------------------------------------------------------===//
#include "dialects/kiln/BufferizableOpInterfaceImpl.h"
#include "dialects/kiln/KilnDialect.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Bufferization/IR/BufferizableOpInterface.h"
#include "mlir/Dialect/Bufferization/IR/Bufferization.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/Dialect/Vector/IR/VectorOps.h"

#include <optional>

using namespace mlir;
using namespace mlir::bufferization;

namespace kiln {
namespace {

/// The buffer of a tensor operand with an identity layout (vector loads
/// need a contiguous innermost dim); strided views are copied.
FailureOr<Value> contiguousBuffer(RewriterBase &rewriter, Location loc,
                                  Value tensor,
                                  const BufferizationOptions &options,
                                  const BufferizationState &state) {
  FailureOr<Value> buf = getBuffer(rewriter, tensor, options, state);
  if (failed(buf))
    return failure();
  auto type = cast<MemRefType>(buf->getType());
  if (type.getLayout().isIdentity())
    return buf;
  auto plain = MemRefType::get(type.getShape(), type.getElementType());
  FailureOr<Value> copy = options.createAlloc(rewriter, loc, plain, {});
  if (failed(copy) || failed(options.createMemCpy(rewriter, loc, *buf, *copy)))
    return failure();
  return copy;
}

struct CacheAddressing {
  Value table;       // memref<Mxi32>
  Value pos, n;      // index
  int64_t blockSize, maxBlock;

  static FailureOr<CacheAddressing>
  load(RewriterBase &b, Location loc, MemRefType cache, Value tableT,
       Value stepT, const BufferizationOptions &options,
       const BufferizationState &state) {
    CacheAddressing a;
    FailureOr<Value> table = getBuffer(b, tableT, options, state);
    FailureOr<Value> step = getBuffer(b, stepT, options, state);
    if (failed(table) || failed(step))
      return failure();
    a.table = *table;
    auto idx = [&](int64_t i) -> Value {
      Value c = arith::ConstantIndexOp::create(b, loc, i);
      Value v = memref::LoadOp::create(b, loc, *step, ValueRange{c});
      return arith::IndexCastOp::create(b, loc, b.getIndexType(), v);
    };
    a.pos = idx(0);
    a.n = idx(1);
    a.blockSize = cache.getDimSize(4);
    a.maxBlock = cache.getDimSize(0) - 1;
    return a;
  }

  /// (pool block, slot) of sequence position `j`. The block id is clamped
  /// into the pool: a bad table from a caller never addresses outside it.
  std::pair<Value, Value> locate(OpBuilder &b, Location loc, Value j) const {
    Value bs = arith::ConstantIndexOp::create(b, loc, blockSize);
    Value logical = arith::DivUIOp::create(b, loc, j, bs);
    Value slot = arith::RemUIOp::create(b, loc, j, bs);
    Value id = memref::LoadOp::create(b, loc, table, ValueRange{logical});
    Value block = arith::IndexCastOp::create(b, loc, b.getIndexType(), id);
    block = arith::MaxSIOp::create(
        b, loc, block, arith::ConstantIndexOp::create(b, loc, 0));
    block = arith::MinSIOp::create(
        b, loc, block, arith::ConstantIndexOp::create(b, loc, maxBlock));
    return {block, slot};
  }
};

/// Whether the module `op` sits in carries the target's attribute `attr`.
bool moduleHas(Operation *op, StringRef attr) {
  auto m = op->getParentOfType<ModuleOp>();
  return m && m->hasAttr(attr);
}

/// GPU targets mark the module they lower: their kernels run one
/// invocation per output element or row, with scalars (SPIR-V has no wide
/// vectors), where the CPU forms use head_dim or 16-lane vectors.
bool forGpu(Operation *op) { return moduleHas(op, "kiln.gpu_kernels"); }

/// The f16 at byte `off` of an i8 buffer `w`, indexed by `lead` then
/// `off` (a weight's row, a KV cache row), as f32, read byte by byte (GPU
/// form).
Value scalarHalf(OpBuilder &b, Location loc, Value w, ValueRange lead,
                 Value off) {
  auto i16 = b.getI16Type();
  auto byte = [&](int64_t k) -> Value {
    Value idx = arith::AddIOp::create(
        b, loc, off, arith::ConstantIndexOp::create(b, loc, k));
    SmallVector<Value> at(lead);
    at.push_back(idx);
    Value v = memref::LoadOp::create(b, loc, w, at);
    return arith::ExtUIOp::create(b, loc, i16, v);
  };
  Value hi = arith::ShLIOp::create(
      b, loc, byte(1),
      arith::ConstantOp::create(b, loc, b.getIntegerAttr(i16, 8)));
  Value bits = arith::OrIOp::create(b, loc, byte(0), hi);
  Value h = arith::BitcastOp::create(b, loc, b.getF16Type(), bits);
  return arith::ExtFOp::create(b, loc, b.getF32Type(), h);
}

/// The f16 at `at` (the last index a byte offset) of an i8 buffer, as f32,
/// by one two-byte vector load (CPU form).
Value vectorHalf(OpBuilder &b, Location loc, Value w, ValueRange at) {
  Value raw = vector::LoadOp::create(
      b, loc, VectorType::get({2}, b.getI8Type()), w, at);
  Value h = vector::BitCastOp::create(
      b, loc, VectorType::get({1}, b.getF16Type()), raw);
  Value e = vector::ExtractOp::create(b, loc, h, ArrayRef<int64_t>{0});
  return arith::ExtFOp::create(b, loc, b.getF32Type(), e);
}

/// ggml's Q8_0 scale for a block whose largest magnitude is `amax`: the
/// scale d = amax / 127 and the factor id = 127 / amax (0 for an all-zero
/// block) that maps the block's values onto [-127, 127] before rounding
/// half to even (its AVX quantizer's arithmetic).
std::pair<Value, Value> q8Scale(OpBuilder &b, Location loc, Value amax) {
  auto f = [&](float v) {
    return arith::ConstantOp::create(b, loc, b.getF32FloatAttr(v)).getResult();
  };
  Value d = arith::DivFOp::create(b, loc, amax, f(127.0f));
  Value nonzero =
      arith::CmpFOp::create(b, loc, arith::CmpFPredicate::ONE, amax, f(0.0f));
  Value id = arith::SelectOp::create(
      b, loc, nonzero, arith::DivFOp::create(b, loc, f(127.0f), amax), f(0.0f));
  return {d, id};
}

std::pair<Value, Value> kQuantValues(OpBuilder &b, Location loc, Value w,
                                     Value row, Value blk, StringRef format,
                                     int64_t lanes, Value k);

/// max |at(i)| over i in [0, n) by a scalar loop (GPU forms of the
/// quantizers: a Q8_0 / Q8_K block of x, a group of an int8 KV row).
Value scalarAbsMax(OpBuilder &b, Location loc, int64_t n,
                   function_ref<Value(OpBuilder &, Value)> at) {
  auto c = [&](int64_t i) {
    return arith::ConstantIndexOp::create(b, loc, i).getResult();
  };
  Value zero = arith::ConstantOp::create(b, loc, b.getF32FloatAttr(0.0f));
  auto loop = scf::ForOp::create(
      b, loc, c(0), c(n), c(1), ValueRange{zero},
      [&](OpBuilder &b, Location loc, Value i, ValueRange acc) {
        Value a = math::AbsFOp::create(b, loc, at(b, i));
        scf::YieldOp::create(
            b, loc, ValueRange{arith::MaximumFOp::create(b, loc, acc[0], a)});
      });
  return loop.getResult(0);
}

/// Where the parts of a 32-value block of q8_0, q4_0, q4_1, q5_0 or q5_1
/// sit: the f16 scale d at byte 0, for q4_1 / q5_1 the f16 minimum m at 2,
/// for q5_0 / q5_1 the u32 of fifth bits (bit l for value l), then the
/// codes (q8_0: 32 i8; the others: 16 bytes, value l in the low nibble of
/// byte l and value l + 16 in its high nibble). Value = d * (code - bias)
/// (+ m); iq4_nl (q4_0's layout): d * kIq4Values[code].
struct BlockLayout {
  int64_t codes;   // byte offset of the codes
  int64_t high;    // byte offset of the fifth bits, -1 for none
  int64_t bias;    // subtracted from the unsigned code (q4_0 8, q5_0 16)
  bool hasMin;     // an f16 minimum m at byte 2
  bool codebook;   // the code indexes kIq4Values (iq4_nl)
};

BlockLayout blockLayout(StringRef format) {
  if (format == "q4_0")
    return {2, -1, 8, false, false};
  if (format == "q4_1")
    return {4, -1, 0, true, false};
  if (format == "q5_0")
    return {6, 2, 16, false, false};
  if (format == "q5_1")
    return {8, 4, 0, true, false};
  if (format == "iq4_nl")
    return {2, -1, 0, false, true};
  return {2, -1, 0, false, false}; // q8_0: signed codes
}

/// IQ4's codebook entries of 4-bit codes n (i8, or vector<16xi8> on the
/// CPU: kiln.table16_i8, which becomes pshufb there).
Value iq4Codes(OpBuilder &b, Location loc, Value n) {
  if (isa<VectorType>(n.getType()))
    return Table16I8Op::create(b, loc, n.getType(), n,
                               b.getDenseI8ArrayAttr(kIq4Values));
  return buildTableLookup(b, loc, kIq4Values, n);
}

/// The scale d and, for q4_1 / q5_1, the minimum m (else null) of block
/// `blk` of row `row` of a 32-value block weight (GPU form, scalars).
std::pair<Value, Value> scalarBlockScales(OpBuilder &b, Location loc, Value w,
                                          Value row, Value blk,
                                          StringRef format) {
  Value base = arith::MulIOp::create(
      b, loc, blk, arith::ConstantIndexOp::create(b, loc, quantBlockBytes(format)));
  Value d = scalarHalf(b, loc, w, row, base);
  if (!blockLayout(format).hasMin)
    return {d, Value()};
  Value two = arith::ConstantIndexOp::create(b, loc, 2);
  return {d, scalarHalf(b, loc, w, row, arith::AddIOp::create(b, loc, base, two))};
}

/// The codes k and k + 16 of that block as f32: q8_0's signed q, the
/// others' unsigned code (nibble, and fifth bit for q5), iq4_nl's codebook
/// entry (GPU form, scalars).
std::pair<Value, Value> scalarBlockCodes(OpBuilder &b, Location loc, Value w,
                                         Value row, Value blk, Value k,
                                         StringRef format) {
  auto c = [&](int64_t i) {
    return arith::ConstantIndexOp::create(b, loc, i).getResult();
  };
  Type f32 = b.getF32Type(), i8 = b.getI8Type();
  BlockLayout layout = blockLayout(format);
  Value base = arith::MulIOp::create(b, loc, blk, c(quantBlockBytes(format)));
  auto at = [&](int64_t off, Value i) {
    Value o = arith::AddIOp::create(b, loc, base, c(off));
    return memref::LoadOp::create(
               b, loc, w, ValueRange{row, arith::AddIOp::create(b, loc, o, i)})
        .getResult();
  };
  if (format == "q8_0")
    return {arith::SIToFPOp::create(b, loc, f32, at(2, k)),
            arith::SIToFPOp::create(b, loc, f32, at(18, k))};
  Value byte = at(layout.codes, k);
  auto i8c = [&](int64_t v) {
    return arith::ConstantOp::create(b, loc, b.getIntegerAttr(i8, v));
  };
  Value lo = arith::AndIOp::create(b, loc, byte, i8c(0x0F));
  Value hi = arith::ShRUIOp::create(b, loc, byte, i8c(4));
  if (layout.high >= 0) {
    // Value l's fifth bit: bit l % 8 of byte l / 8 of qh (l = k, k + 16).
    Value shift = arith::TruncIOp::create(
        b, loc, i8,
        arith::IndexCastOp::create(b, loc, b.getI32Type(),
                                   arith::RemUIOp::create(b, loc, k, c(8))));
    auto fifth = [&](Value code, int64_t plus) {
      Value qh = at(layout.high,
                    arith::AddIOp::create(
                        b, loc, arith::DivUIOp::create(b, loc, k, c(8)),
                        c(plus)));
      Value bit = arith::AndIOp::create(
          b, loc, arith::ShRUIOp::create(b, loc, qh, shift), i8c(1));
      return arith::OrIOp::create(
                 b, loc, code, arith::ShLIOp::create(b, loc, bit, i8c(4)))
          .getResult();
    };
    lo = fifth(lo, 0);
    hi = fifth(hi, 2);
  }
  if (layout.codebook)
    return {arith::SIToFPOp::create(b, loc, f32, iq4Codes(b, loc, lo)),
            arith::SIToFPOp::create(b, loc, f32, iq4Codes(b, loc, hi))};
  return {arith::UIToFPOp::create(b, loc, f32, lo),
          arith::UIToFPOp::create(b, loc, f32, hi)};
}

/// Values k and k + 16 of block `blk` of row `row` (GPU form, scalars).
std::pair<Value, Value> scalarBlockValues(OpBuilder &b, Location loc, Value w,
                                          Value row, Value blk, Value k,
                                          StringRef format) {
  auto c = [&](int64_t i) {
    return arith::ConstantIndexOp::create(b, loc, i).getResult();
  };
  if (quantBlockValues(format) == 256)
    return kQuantValues(b, loc, w, row, blk, format, 1, k);
  if (format == "f16") {
    Value base = arith::MulIOp::create(b, loc, blk, c(quantBlockBytes(format)));
    auto v = [&](Value k) {
      Value off = arith::AddIOp::create(
          b, loc, base, arith::MulIOp::create(b, loc, k, c(2)));
      return scalarHalf(b, loc, w, row, off);
    };
    return {v(k), v(arith::AddIOp::create(b, loc, k, c(16)))};
  }
  auto [d, m] = scalarBlockScales(b, loc, w, row, blk, format);
  auto [lo, hi] = scalarBlockCodes(b, loc, w, row, blk, k, format);
  BlockLayout layout = blockLayout(format);
  if (!m && !layout.bias)
    return {arith::MulFOp::create(b, loc, lo, d),
            arith::MulFOp::create(b, loc, hi, d)};
  Value offset =
      m ? m
        : arith::MulFOp::create(
              b, loc, d,
              arith::ConstantOp::create(
                  b, loc, b.getF32FloatAttr(-static_cast<float>(layout.bias))))
              .getResult();
  return {math::FmaOp::create(b, loc, lo, d, offset),
          math::FmaOp::create(b, loc, hi, d, offset)};
}

/// Integers k and k + 16 of block `blk` of row `row` as f32 (the code
/// minus the format's bias; GPU form): the block's values are d * q (+ m).
std::pair<Value, Value> scalarBlockInts(OpBuilder &b, Location loc, Value w,
                                        Value row, Value blk, Value k,
                                        StringRef format) {
  auto [lo, hi] = scalarBlockCodes(b, loc, w, row, blk, k, format);
  int64_t bias = blockLayout(format).bias;
  if (!bias)
    return {lo, hi};
  Value sub = arith::ConstantOp::create(b, loc,
                                        b.getF32FloatAttr(static_cast<float>(bias)));
  return {arith::SubFOp::create(b, loc, lo, sub),
          arith::SubFOp::create(b, loc, hi, sub)};
}

/// The hand-built kernels read their tensor operands and never write or
/// alias them; a tensor result is a new buffer.
template <class Concrete, class Op>
struct ReadOnlyOperands
    : BufferizableOpInterface::ExternalModel<Concrete, Op> {
  bool bufferizesToMemoryRead(Operation *, OpOperand &,
                              const AnalysisState &) const {
    return true;
  }
  bool bufferizesToMemoryWrite(Operation *, OpOperand &,
                               const AnalysisState &) const {
    return false;
  }
  AliasingValueList getAliasingValues(Operation *, OpOperand &,
                                      const AnalysisState &) const {
    return {};
  }
  bool bufferizesToAllocation(Operation *, Value) const { return true; }
};

/// Block `blk` of row `row` of a quantized weight `w` (memref<R x B x i8>):
/// its 32 integers as two vector<16xf32> (values 0-15 and 16-31; the code
/// minus the format's bias), its scale d and, for q4_1 / q5_1, its minimum
/// m (else null). The values are d * q (+ m).
struct BlockInts {
  Value lo, hi, d, m;
};

/// `codesI8`: lo and hi stay vector<16xi8> (the integers fit: -128..127),
/// for the CPU's 8-bit dot products.
BlockInts blockInts(OpBuilder &b, Location loc, Value w, Value row, Value blk,
                    StringRef format, bool codesI8 = false) {
  int64_t bb = quantBlockBytes(format);
  auto c = [&](int64_t i) {
    return arith::ConstantIndexOp::create(b, loc, i).getResult();
  };
  Value base = arith::MulIOp::create(b, loc, blk, c(bb));
  auto at = [&](int64_t off) {
    return arith::AddIOp::create(b, loc, base, c(off)).getResult();
  };
  Type f32 = b.getF32Type(), i8 = b.getI8Type();
  auto scale = [&](int64_t off) {
    return vectorHalf(b, loc, w, ValueRange{row, at(off)});
  };
  auto v16i8 = VectorType::get({16}, i8), v16f = VectorType::get({16}, f32);
  BlockInts out;
  out.d = scale(0);
  if (format == "q8_0") {
    auto half = [&](int64_t off) {
      Value q = vector::LoadOp::create(b, loc, v16i8, w, ValueRange{row, at(off)});
      if (codesI8)
        return q;
      return arith::SIToFPOp::create(b, loc, v16f, q).getResult();
    };
    out.lo = half(2);
    out.hi = half(18);
    return out;
  }
  BlockLayout layout = blockLayout(format);
  Value q = vector::LoadOp::create(b, loc, v16i8, w,
                                   ValueRange{row, at(layout.codes)});
  auto i8splat = [&](int64_t v) {
    return arith::ConstantOp::create(
        b, loc, v16i8, DenseElementsAttr::get(v16i8, b.getI8IntegerAttr(v)));
  };
  // q5: the 4 bytes of fifth bits; value l's is bit l % 8 of byte l / 8.
  Value qh;
  if (layout.high >= 0)
    qh = vector::LoadOp::create(b, loc, VectorType::get({4}, i8), w,
                                ValueRange{row, at(layout.high)});
  // The codes of values first..first+15 from their nibbles `n`, as f32
  // integers: q5's fifth bits spread to one byte per lane (a shuffle of qh,
  // a per-lane bit mask) and OR'ed in as 16; the bias taken off in i8
  // (the results fit: -16..15), then one widening conversion.
  auto ints = [&](Value n, int64_t first) {
    if (qh) {
      SmallVector<int64_t> pick;
      SmallVector<int8_t> bit;
      for (int64_t l = first; l < first + 16; ++l) {
        pick.push_back(l / 8);
        bit.push_back(static_cast<int8_t>(1u << (l % 8)));
      }
      Value spread = vector::ShuffleOp::create(b, loc, qh, qh, pick);
      Value set = arith::CmpIOp::create(
          b, loc, arith::CmpIPredicate::ne,
          arith::AndIOp::create(
              b, loc, spread,
              arith::ConstantOp::create(
                  b, loc, v16i8, DenseElementsAttr::get(v16i8, ArrayRef<int8_t>(bit)))),
          i8splat(0));
      n = arith::OrIOp::create(
          b, loc, n, arith::SelectOp::create(b, loc, set, i8splat(16), i8splat(0)));
    }
    if (layout.codebook) {
      Value q = iq4Codes(b, loc, n);
      return codesI8 ? q : arith::SIToFPOp::create(b, loc, v16f, q).getResult();
    }
    if (!layout.bias)
      return codesI8 ? n : arith::UIToFPOp::create(b, loc, v16f, n).getResult();
    Value q = arith::SubIOp::create(b, loc, n, i8splat(layout.bias));
    return codesI8 ? q : arith::SIToFPOp::create(b, loc, v16f, q).getResult();
  };
  out.lo = ints(arith::AndIOp::create(b, loc, q, i8splat(0x0F)), 0);
  out.hi = ints(arith::ShRUIOp::create(b, loc, q, i8splat(4)), 16);
  if (layout.hasMin)
    out.m = scale(2);
  return out;
}

/// Group `blk` (32 values) of a K-quant row (groups of 32 inside blocks
/// of 256) as integers: values l < 16 are d * scLo * q - dmin * mLo,
/// values l >= 16 d * scHi * q - dmin * mHi, with d and dmin the block's
/// f16 scales and sc and m the group's integer scales and minimums:
///   q2_k: q in 0..3, a 4-bit scale and a 4-bit minimum per 16 values;
///   q3_k: q in -4..3, a 6-bit scale (-32..31) per 16 values, no minimum;
///   q4_k / q5_k: q unsigned (4 or 5 bits), one 6-bit (scale, minimum)
///     pair per group (scLo == scHi, mLo == mHi);
///   q6_k: q in -32..31, an int8 scale per 16 values, no minimum.
struct KQuantGroup {
  Value base, j;                          // the block's first byte, the group
  Value d, dmin, scLo, scHi, mLo, mHi;    // f32; dmin, mLo, mHi null without
                                          // minimums
};

/// Group j (< 8) of block sb; with j a constant its decoding folds.
KQuantGroup kQuantGroup(OpBuilder &b, Location loc, Value w, Value row,
                        Value sb, Value j, StringRef format) {
  auto c = [&](int64_t i) {
    return arith::ConstantIndexOp::create(b, loc, i).getResult();
  };
  auto add = [&](Value a, Value x) {
    return arith::AddIOp::create(b, loc, a, x).getResult();
  };
  Type i32 = b.getI32Type(), f32 = b.getF32Type();
  KQuantGroup g;
  g.j = j;
  g.base = arith::MulIOp::create(b, loc, sb, c(quantBlockBytes(format)));
  auto scalarByte = [&](Value off) -> Value {
    return memref::LoadOp::create(b, loc, w, ValueRange{row, off});
  };
  if (format == "q6_k") {
    g.d = scalarHalf(b, loc, w, row, add(g.base, c(208)));
    // Scales of values 16 i .. 16 i + 15 at byte 192 + i, i = 2 j (+ 1).
    Value scIdx = add(add(g.base, c(192)),
                      arith::MulIOp::create(b, loc, g.j, c(2)));
    g.scLo = arith::SIToFPOp::create(b, loc, f32, scalarByte(scIdx));
    g.scHi = arith::SIToFPOp::create(b, loc, f32, scalarByte(add(scIdx, c(1))));
    return g;
  }
  if (format == "iq4_xs") {
    // d at byte 0, scales_h (u16) at 2, scales_l[4] at 4: group j's scale
    // is nibble j % 2 of scales_l[j / 2] with bits 2 j, 2 j + 1 of scales_h
    // above it, minus 32 (one per 32 values).
    g.d = scalarHalf(b, loc, w, row, g.base);
    auto extByte = [&](Value off) {
      return arith::ExtUIOp::create(b, loc, i32, scalarByte(off)).getResult();
    };
    auto i32c = [&](int64_t v) {
      return arith::ConstantOp::create(b, loc, b.getIntegerAttr(i32, v)).getResult();
    };
    Value j32 = arith::IndexCastOp::create(b, loc, i32, j);
    Value low = extByte(add(add(g.base, c(4)), arith::DivUIOp::create(b, loc, j, c(2))));
    low = arith::AndIOp::create(
        b, loc,
        arith::ShRUIOp::create(
            b, loc, low,
            arith::MulIOp::create(b, loc,
                                  arith::RemUIOp::create(b, loc, j32, i32c(2)),
                                  i32c(4))),
        i32c(15));
    Value high = arith::OrIOp::create(
        b, loc, extByte(add(g.base, c(2))),
        arith::ShLIOp::create(b, loc, extByte(add(g.base, c(3))), i32c(8)));
    high = arith::AndIOp::create(
        b, loc,
        arith::ShRUIOp::create(b, loc, high,
                               arith::MulIOp::create(b, loc, j32, i32c(2))),
        i32c(3));
    Value ls = arith::OrIOp::create(
        b, loc, low, arith::ShLIOp::create(b, loc, high, i32c(4)));
    g.scLo = g.scHi = arith::SIToFPOp::create(
        b, loc, f32, arith::SubIOp::create(b, loc, ls, i32c(32)));
    return g;
  }
  auto i32c = [&](int64_t v) {
    return arith::ConstantOp::create(b, loc, b.getIntegerAttr(i32, v)).getResult();
  };
  auto byteAt = [&](int64_t off, Value idx) {
    return arith::ExtUIOp::create(b, loc, i32,
                                  scalarByte(add(add(g.base, c(off)), idx)))
        .getResult();
  };
  auto pair = [&]() {
    Value j2 = arith::MulIOp::create(b, loc, j, c(2));
    return std::make_pair(j2, add(j2, c(1)));
  };
  if (format == "q2_k") {
    // scales[16] at byte 0: the low nibble the scale, the high the minimum
    // of values 16 i .. 16 i + 15, i = 2 j (+ 1); d, dmin at byte 80, 82.
    g.d = scalarHalf(b, loc, w, row, add(g.base, c(80)));
    g.dmin = scalarHalf(b, loc, w, row, add(g.base, c(82)));
    auto nibbles = [&](Value idx, Value &sc, Value &m) {
      Value s = byteAt(0, idx);
      sc = arith::UIToFPOp::create(
          b, loc, f32, arith::AndIOp::create(b, loc, s, i32c(15)));
      m = arith::UIToFPOp::create(
          b, loc, f32, arith::ShRUIOp::create(b, loc, s, i32c(4)));
    };
    auto [lo, hi] = pair();
    nibbles(lo, g.scLo, g.mLo);
    nibbles(hi, g.scHi, g.mHi);
    return g;
  }
  if (format == "q3_k") {
    // 16 6-bit scales in 12 bytes at byte 96: scale k's low 4 bits in the
    // low (k < 8) or high nibble of s[k % 8], its high 2 bits at bit
    // 2 (k / 4) of s[8 + k % 4]; minus 32. d at byte 108.
    g.d = scalarHalf(b, loc, w, row, add(g.base, c(108)));
    auto scale = [&](Value k) {
      Value k8 = arith::RemUIOp::create(b, loc, k, c(8));
      Value k4 = arith::RemUIOp::create(b, loc, k, c(4));
      Value lowShift = arith::MulIOp::create(
          b, loc,
          arith::IndexCastOp::create(b, loc, i32,
                                     arith::DivUIOp::create(b, loc, k, c(8))),
          i32c(4));
      Value highShift = arith::MulIOp::create(
          b, loc,
          arith::IndexCastOp::create(b, loc, i32,
                                     arith::DivUIOp::create(b, loc, k, c(4))),
          i32c(2));
      Value low = arith::AndIOp::create(
          b, loc, arith::ShRUIOp::create(b, loc, byteAt(96, k8), lowShift),
          i32c(15));
      Value high = arith::AndIOp::create(
          b, loc,
          arith::ShRUIOp::create(b, loc, byteAt(104, k4), highShift), i32c(3));
      Value v = arith::OrIOp::create(
          b, loc, low, arith::ShLIOp::create(b, loc, high, i32c(4)));
      return arith::SIToFPOp::create(b, loc, f32,
                                     arith::SubIOp::create(b, loc, v, i32c(32)))
          .getResult();
    };
    auto [lo, hi] = pair();
    g.scLo = scale(lo);
    g.scHi = scale(hi);
    return g;
  }
  // q4_k / q5_k: 6-bit (scale, min) pairs packed in 12 bytes at byte 4.
  g.d = scalarHalf(b, loc, w, row, g.base);
  g.dmin = scalarHalf(b, loc, w, row, add(g.base, c(2)));
  Value jm4 = arith::MaxSIOp::create(
      b, loc, arith::SubIOp::create(b, loc, j, c(4)), c(0));
  Value sj = byteAt(4, j), sj4 = byteAt(4, add(j, c(4))), sjm4 = byteAt(4, jm4);
  auto andi = [&](Value x, int64_t m) {
    return arith::AndIOp::create(b, loc, x, i32c(m)).getResult();
  };
  auto shr = [&](Value x, int64_t n) {
    return arith::ShRUIOp::create(b, loc, x, i32c(n)).getResult();
  };
  auto shl4 = [&](Value x) {
    return arith::ShLIOp::create(b, loc, x, i32c(4)).getResult();
  };
  Value scLo = andi(sj, 63), mLo = andi(sj4, 63);
  Value scHi = arith::OrIOp::create(b, loc, andi(sj4, 0xF), shl4(shr(sjm4, 6)));
  Value mHi = arith::OrIOp::create(b, loc, shr(sj4, 4), shl4(shr(sj, 6)));
  Value low = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::ult, j, c(4));
  g.scLo = g.scHi = arith::UIToFPOp::create(
      b, loc, f32, arith::SelectOp::create(b, loc, low, scLo, scHi));
  g.mLo = g.mHi = arith::UIToFPOp::create(
      b, loc, f32, arith::SelectOp::create(b, loc, low, mLo, mHi));
  return g;
}

/// Group `blk` of the row (block blk / 8, group blk % 8).
KQuantGroup kQuantGroup(OpBuilder &b, Location loc, Value w, Value row,
                        Value blk, StringRef format) {
  Value eight = arith::ConstantIndexOp::create(b, loc, 8);
  return kQuantGroup(b, loc, w, row, arith::DivUIOp::create(b, loc, blk, eight),
                     arith::RemUIOp::create(b, loc, blk, eight), format);
}

/// The integers q of values l and l + 16 of group `g` as f32: `lanes` 16
/// gives vector<16xf32> of l = 0..15 (CPU), 1 gives the scalars at l = `k`
/// (GPU).
std::pair<Value, Value> kQuantCodes(OpBuilder &b, Location loc, Value w,
                                    Value row, const KQuantGroup &g,
                                    StringRef format, int64_t lanes, Value k,
                                    bool codesI8 = false) {
  auto c = [&](int64_t i) {
    return arith::ConstantIndexOp::create(b, loc, i).getResult();
  };
  Type i8 = b.getI8Type(), i32 = b.getI32Type(), f32 = b.getF32Type();
  Type v8 = lanes > 1 ? Type(VectorType::get({lanes}, i8)) : i8;
  Type vf = lanes > 1 ? Type(VectorType::get({lanes}, f32)) : f32;
  auto splat8 = [&](Value x) -> Value {
    return lanes > 1 ? vector::BroadcastOp::create(b, loc, v8, x).getResult() : x;
  };
  auto i8c = [&](int64_t v) {
    return arith::ConstantOp::create(b, loc, b.getIntegerAttr(i8, v)).getResult();
  };
  auto add = [&](Value a, Value x) {
    return arith::AddIOp::create(b, loc, a, x).getResult();
  };
  // lanes bytes from `off` (the CPU's vector, or the GPU's byte l = k).
  auto bytes = [&](Value off) -> Value {
    if (lanes > 1)
      return vector::LoadOp::create(b, loc, cast<VectorType>(v8), w,
                                    ValueRange{row, off});
    return memref::LoadOp::create(b, loc, w, ValueRange{row, add(off, k)});
  };
  auto toI8 = [&](Value idx) {
    return arith::TruncIOp::create(
        b, loc, i8, arith::IndexCastOp::create(b, loc, i32, idx));
  };
  // The integers as f32 (codesI8: kept in i8, where they fit).
  auto unsignedInts = [&](Value n) -> Value {
    return codesI8 ? n : arith::UIToFPOp::create(b, loc, vf, n).getResult();
  };
  auto signedInts = [&](Value n) -> Value {
    return codesI8 ? n : arith::SIToFPOp::create(b, loc, vf, n).getResult();
  };
  Value base = g.base, j = g.j;
  if (format == "q4_k" || format == "q5_k") {
    bool q5 = format == "q5_k";
    // Low nibbles for even j, high for odd: shift by 4 * (j % 2).
    Value shift = splat8(arith::MulIOp::create(
        b, loc, toI8(arith::RemUIOp::create(b, loc, j, c(2))), i8c(4)));
    Value q = add(add(base, c(q5 ? 48 : 16)),
                  arith::MulIOp::create(
                      b, loc, arith::DivUIOp::create(b, loc, j, c(2)), c(32)));
    // q5_k's fifth bit of value l: bit j of qh[l] (qh at byte 16).
    Value highShift = splat8(toI8(j));
    auto code = [&](int64_t l) {
      Value n = arith::AndIOp::create(
          b, loc, arith::ShRUIOp::create(b, loc, bytes(add(q, c(l))), shift),
          splat8(i8c(0xF)));
      if (q5) {
        Value bit = arith::AndIOp::create(
            b, loc,
            arith::ShRUIOp::create(b, loc, bytes(add(base, c(16 + l))),
                                   highShift),
            splat8(i8c(1)));
        n = arith::OrIOp::create(
            b, loc, n, arith::ShLIOp::create(b, loc, bit, splat8(i8c(4))));
      }
      return unsignedInts(n);
    };
    return {code(0), code(16)};
  }
  if (format == "iq4_xs") {
    // Group j's 16 bytes at 8 + 16 j: value l < 16 the low nibble of byte
    // l, l + 16 its high nibble; kIq4Values of each.
    Value q = bytes(add(add(base, c(8)), arith::MulIOp::create(b, loc, j, c(16))));
    Value lo = arith::AndIOp::create(b, loc, q, splat8(i8c(0xF)));
    Value hi = arith::ShRUIOp::create(b, loc, q, splat8(i8c(4)));
    return {signedInts(iq4Codes(b, loc, lo)), signedInts(iq4Codes(b, loc, hi))};
  }
  Value h = arith::DivUIOp::create(b, loc, j, c(4));
  Value t = arith::RemUIOp::create(b, loc, j, c(4));
  if (format == "q2_k" || format == "q3_k") {
    // 2 bits of qs[64] (q2_k at byte 16, q3_k at 32): value l of group j
    // at shift 2 t of byte 32 h + l. q3_k's third bit: bit 4 h + t of
    // hmask[l] (byte l), 4 subtracted when it is clear.
    bool q3 = format == "q3_k";
    Value qs = add(add(base, c(q3 ? 32 : 16)),
                   arith::MulIOp::create(b, loc, h, c(32)));
    Value shift = splat8(arith::MulIOp::create(b, loc, toI8(t), i8c(2)));
    Value maskShift = splat8(toI8(add(arith::MulIOp::create(b, loc, h, c(4)), t)));
    auto code = [&](int64_t l) -> Value {
      Value n = arith::AndIOp::create(
          b, loc, arith::ShRUIOp::create(b, loc, bytes(add(qs, c(l))), shift),
          splat8(i8c(3)));
      if (!q3)
        return unsignedInts(n);
      Value bit = arith::AndIOp::create(
          b, loc,
          arith::ShRUIOp::create(b, loc, bytes(add(base, c(l))), maskShift),
          splat8(i8c(1)));
      // n - 4 (1 - bit) = n + 4 bit - 4
      Value v = arith::SubIOp::create(
          b, loc,
          arith::OrIOp::create(b, loc, n,
                               arith::ShLIOp::create(b, loc, bit, splat8(i8c(2)))),
          splat8(i8c(4)));
      return signedInts(v);
    };
    return {code(0), code(16)};
  }
  // q6_k: the low 4 bits in ql[128], the high 2 in qh[64], minus 32.
  Value ql = add(add(base, arith::MulIOp::create(b, loc, h, c(64))),
                 arith::MulIOp::create(b, loc,
                                       arith::RemUIOp::create(b, loc, t, c(2)),
                                       c(32)));
  Value qh = add(add(base, c(128)), arith::MulIOp::create(b, loc, h, c(32)));
  Value qlShift = splat8(arith::MulIOp::create(
      b, loc, toI8(arith::DivUIOp::create(b, loc, t, c(2))), i8c(4)));
  Value qhShift = splat8(arith::MulIOp::create(b, loc, toI8(t), i8c(2)));
  Value bias = arith::ConstantOp::create(b, loc, b.getF32FloatAttr(32.0f));
  if (lanes > 1)
    bias = vector::BroadcastOp::create(b, loc, vf, bias);
  auto code = [&](int64_t l) {
    Value lo4 = arith::AndIOp::create(
        b, loc, arith::ShRUIOp::create(b, loc, bytes(add(ql, c(l))), qlShift),
        splat8(i8c(0xF)));
    Value hi2 = arith::AndIOp::create(
        b, loc, arith::ShRUIOp::create(b, loc, bytes(add(qh, c(l))), qhShift),
        splat8(i8c(3)));
    Value q = arith::OrIOp::create(
        b, loc, lo4, arith::ShLIOp::create(b, loc, hi2, splat8(i8c(4))));
    if (codesI8)
      return arith::SubIOp::create(b, loc, q, splat8(i8c(32))).getResult();
    return arith::SubFOp::create(b, loc, arith::UIToFPOp::create(b, loc, vf, q),
                                 bias)
        .getResult();
  };
  return {code(0), code(16)};
}

/// Values l and l + 16 of group `blk` of a K-quant row, dequantized (lanes
/// as kQuantCodes).
std::pair<Value, Value> kQuantValues(OpBuilder &b, Location loc, Value w,
                                     Value row, const KQuantGroup &g,
                                     StringRef format, int64_t lanes, Value k) {
  auto [lo, hi] = kQuantCodes(b, loc, w, row, g, format, lanes, k);
  Type vf = lo.getType();
  auto splatF = [&](Value x) -> Value {
    return lanes > 1 ? vector::BroadcastOp::create(b, loc, vf, x).getResult() : x;
  };
  auto mul = [&](Value x, Value y) {
    return arith::MulFOp::create(b, loc, x, y).getResult();
  };
  Value dLo = splatF(mul(g.d, g.scLo));
  Value dHi = g.scHi == g.scLo ? dLo : splatF(mul(g.d, g.scHi));
  if (!g.mLo)
    return {mul(lo, dLo), mul(hi, dHi)};
  // d1 * q - m1
  Value mLo = splatF(mul(g.dmin, g.mLo));
  Value mHi = g.mHi == g.mLo ? mLo : splatF(mul(g.dmin, g.mHi));
  return {arith::SubFOp::create(b, loc, mul(lo, dLo), mLo),
          arith::SubFOp::create(b, loc, mul(hi, dHi), mHi)};
}

std::pair<Value, Value> kQuantValues(OpBuilder &b, Location loc, Value w,
                                     Value row, Value blk, StringRef format,
                                     int64_t lanes, Value k) {
  return kQuantValues(b, loc, w, row, kQuantGroup(b, loc, w, row, blk, format),
                      format, lanes, k);
}

std::pair<Value, Value> kQuantValues(OpBuilder &b, Location loc, Value w,
                                     Value row, Value sb, Value j,
                                     StringRef format, int64_t lanes, Value k) {
  return kQuantValues(b, loc, w, row, kQuantGroup(b, loc, w, row, sb, j, format),
                      format, lanes, k);
}

/// The block's 32 values as two vector<16xf32>: d * q (+ m), one rounding;
/// f16 blocks widen exactly.
std::pair<Value, Value> dequantBlock(OpBuilder &b, Location loc, Value w,
                                     Value row, Value blk, StringRef format) {
  if (quantBlockValues(format) == 256)
    return kQuantValues(b, loc, w, row, blk, format, 16, Value());
  if (format == "f16") {
    Value base = arith::MulIOp::create(
        b, loc, blk, arith::ConstantIndexOp::create(b, loc, 64));
    auto half = [&](int64_t off) {
      Value at = arith::AddIOp::create(
          b, loc, base, arith::ConstantIndexOp::create(b, loc, off));
      Value raw = vector::LoadOp::create(
          b, loc, VectorType::get({32}, b.getI8Type()), w, ValueRange{row, at});
      Value h = vector::BitCastOp::create(
          b, loc, VectorType::get({16}, b.getF16Type()), raw);
      return arith::ExtFOp::create(b, loc,
                                   VectorType::get({16}, b.getF32Type()), h)
          .getResult();
    };
    return {half(0), half(32)};
  }
  BlockInts q = blockInts(b, loc, w, row, blk, format);
  auto v16f = VectorType::get({16}, b.getF32Type());
  Value d = vector::BroadcastOp::create(b, loc, v16f, q.d);
  auto value = [&](Value n) -> Value {
    if (q.m)
      return vector::FMAOp::create(
          b, loc, n, d, vector::BroadcastOp::create(b, loc, v16f, q.m));
    return arith::MulFOp::create(b, loc, n, d);
  };
  return {value(q.lo), value(q.hi)};
}

/// llama.cpp's 8-bit activation blocks of x (memref<M x K x f32>): `q`
/// [M, K] the block integers (as f32), `d` the block scales and `s` [M,
/// K/32] the block sums the weights' minimums need (else null). Q8_0 /
/// Q8_1 (quantizeActivations): d [M, K/32] rounded to f16, s = f16(d *
/// sum q); Q8_K (quantizeActivationsQ8K): d [M, K/256] in f32, s = sum q.
/// On the CPU, s (and Q8_K's d) are stored by block instead, [K/32, M]
/// (byBlock): the kernels read a tile's rows of them as one vector.
struct ActivationBlocks {
  Value q, d, s;
  bool byBlock = false;
  /// s[row m, block i] and Q8_K's d[row m, super-block i].
  SmallVector<Value, 2> at(Value m, Value i) const {
    return byBlock ? SmallVector<Value, 2>{i, m} : SmallVector<Value, 2>{m, i};
  }
};

/// The f32 buffers of x's blocks: q [M, K] (codesI8: in i8), d [M, K /
/// scaleBlock] and, withSums, s [M, K / sumBlock]; byBlock: s [K /
/// sumBlock, M] and, for Q8_K's scales (scaleBlock 256), d [K / 256, M].
FailureOr<ActivationBlocks>
allocActivationBlocks(RewriterBase &b, Location loc, Value x,
                      int64_t scaleBlock, bool withSums,
                      const BufferizationOptions &options, int64_t sumBlock,
                      bool codesI8, bool byBlock) {
  auto xType = cast<MemRefType>(x.getType());
  int64_t rows = xType.getDimSize(0), k = xType.getDimSize(1);
  auto alloc = [&](ArrayRef<int64_t> shape, Type t) {
    return options.createAlloc(b, loc, MemRefType::get(shape, t), {});
  };
  auto shape = [&](int64_t blocks, bool transposed) {
    return transposed ? SmallVector<int64_t>{blocks, rows}
                      : SmallVector<int64_t>{rows, blocks};
  };
  Type f32 = b.getF32Type();
  FailureOr<Value> q = alloc({rows, k}, codesI8 ? b.getI8Type() : f32),
                   d = alloc(shape(k / scaleBlock, byBlock && scaleBlock == 256),
                             f32);
  FailureOr<Value> s = withSums ? alloc(shape(k / sumBlock, byBlock), f32)
                                : FailureOr<Value>(Value());
  if (failed(q) || failed(d) || failed(s))
    return failure();
  return ActivationBlocks{*q, *d, *s, byBlock};
}

/// The i8 form of rounded (integral) q (vector<16xf32>) where codesI8.
Value storedCodes(OpBuilder &b, Location loc, Value q, bool codesI8) {
  if (!codesI8)
    return q;
  return arith::FPToSIOp::create(b, loc, VectorType::get({16}, b.getI8Type()),
                                 q);
}

/// codesI8 (CPU forms only): q in i8, for the 8-bit dot products.
FailureOr<ActivationBlocks>
quantizeActivations(RewriterBase &b, Location loc, Value x, bool withSums,
                    const BufferizationOptions &options, bool gpu,
                    bool codesI8) {
  auto xType = cast<MemRefType>(x.getType());
  int64_t rows = xType.getDimSize(0), k = xType.getDimSize(1);
  Type f32 = b.getF32Type(), f16 = b.getF16Type();
  FailureOr<ActivationBlocks> blocks = allocActivationBlocks(
      b, loc, x, 32, withSums, options, 32, codesI8, /*byBlock=*/!gpu);
  if (failed(blocks))
    return failure();
  Value q = blocks->q, d = blocks->d, s = blocks->s;
  auto c = [&](OpBuilder &b, int64_t i) {
    return arith::ConstantIndexOp::create(b, loc, i).getResult();
  };
  auto f = [&](OpBuilder &b, float v) {
    return arith::ConstantOp::create(b, loc, b.getF32FloatAttr(v)).getResult();
  };
  auto v16f = VectorType::get({16}, f32);
  auto toF16AndBack = [&](OpBuilder &b, Value v) {
    Value h = arith::TruncFOp::create(b, loc, f16, v);
    return arith::ExtFOp::create(b, loc, f32, h).getResult();
  };
  if (gpu) {
    // One invocation per (row, block), scalars: the same arithmetic.
    scf::ParallelOp::create(
        b, loc, ValueRange{c(b, 0), c(b, 0)}, ValueRange{c(b, rows), c(b, k / 32)},
        ValueRange{c(b, 1), c(b, 1)},
        [&](OpBuilder &b, Location loc, ValueRange ivs) {
          Value m = ivs[0], blk = ivs[1];
          Value k0 = arith::MulIOp::create(b, loc, blk, c(b, 32));
          auto xAt = [&](OpBuilder &b, Value i) {
            return memref::LoadOp::create(
                       b, loc, x,
                       ValueRange{m, arith::AddIOp::create(b, loc, k0, i)})
                .getResult();
          };
          // (Not structured bindings: C++17 lambdas cannot capture them.)
          std::pair<Value, Value> scale = q8Scale(b, loc, scalarAbsMax(b, loc, 32, xAt));
          Value dv = scale.first, id = scale.second;
          auto qLoop = scf::ForOp::create(
              b, loc, c(b, 0), c(b, 32), c(b, 1), ValueRange{f(b, 0.0f)},
              [&](OpBuilder &b, Location loc, Value i, ValueRange acc) {
                Value qv = math::RoundEvenOp::create(
                    b, loc, arith::MulFOp::create(b, loc, xAt(b, i), id));
                memref::StoreOp::create(
                    b, loc, qv, q,
                    ValueRange{m, arith::AddIOp::create(b, loc, k0, i)});
                scf::YieldOp::create(
                    b, loc, ValueRange{arith::AddFOp::create(b, loc, acc[0], qv)});
              });
          memref::StoreOp::create(b, loc, toF16AndBack(b, dv), d,
                                  ValueRange{m, blk});
          if (withSums) {
            Value ds = arith::MulFOp::create(b, loc, dv, qLoop.getResult(0));
            memref::StoreOp::create(b, loc, toF16AndBack(b, ds), s,
                                    ValueRange{m, blk});
          }
        });
    return *blocks;
  }
  scf::ForOp::create(
      b, loc, c(b, 0), c(b, rows), c(b, 1), ValueRange{},
      [&](OpBuilder &b, Location loc, Value m, ValueRange) {
        scf::ForOp::create(
            b, loc, c(b, 0), c(b, k / 32), c(b, 1), ValueRange{},
            [&](OpBuilder &b, Location loc, Value blk, ValueRange) {
              Value k0 = arith::MulIOp::create(b, loc, blk, c(b, 32));
              Value k1 = arith::AddIOp::create(b, loc, k0, c(b, 16));
              Value lo = vector::LoadOp::create(b, loc, v16f, x, ValueRange{m, k0});
              Value hi = vector::LoadOp::create(b, loc, v16f, x, ValueRange{m, k1});
              Value amaxV = arith::MaximumFOp::create(
                  b, loc, math::AbsFOp::create(b, loc, lo),
                  math::AbsFOp::create(b, loc, hi));
              Value amax = vector::ReductionOp::create(
                  b, loc, vector::CombiningKind::MAXIMUMF, amaxV);
              std::pair<Value, Value> scale = q8Scale(b, loc, amax);
              Value dv = scale.first, id = scale.second;
              Value idV = vector::BroadcastOp::create(b, loc, v16f, id);
              auto round = [&](Value v) {
                return math::RoundEvenOp::create(
                           b, loc, arith::MulFOp::create(b, loc, v, idV))
                    .getResult();
              };
              Value qlo = round(lo), qhi = round(hi);
              vector::StoreOp::create(b, loc, storedCodes(b, loc, qlo, codesI8),
                                      q, ValueRange{m, k0});
              vector::StoreOp::create(b, loc, storedCodes(b, loc, qhi, codesI8),
                                      q, ValueRange{m, k1});
              memref::StoreOp::create(b, loc, toF16AndBack(b, dv), d,
                                      ValueRange{m, blk});
              if (withSums) {
                Value sum = vector::ReductionOp::create(
                    b, loc, vector::CombiningKind::ADD,
                    arith::AddFOp::create(b, loc, qlo, qhi));
                Value ds = arith::MulFOp::create(b, loc, dv, sum);
                memref::StoreOp::create(b, loc, toF16AndBack(b, ds), s,
                                        blocks->at(m, blk));
              }
              scf::YieldOp::create(b, loc);
            });
        scf::YieldOp::create(b, loc);
      });
  return *blocks;
}

/// llama.cpp's Q8_K activation blocks of x (memref<M x K x f32>), which
/// its K-quant dot products take: per 256 values amax = max |x|, id = 127
/// / amax, `q` [M, K] = round-half-even(x * id) (as f32), `d` [M, K/256] =
/// 1 / id in f32 (not rounded to f16; 0 for an all-zero block) and `s` [M,
/// K/sumBlock] (withSums: q2_k 16, q4_k and q5_k 32) each sumBlock
/// values' sum of q, an integer.
/// (ggml divides by the signed value of largest magnitude, which negates
/// both q and d when it is positive: the products d q are the same.)
FailureOr<ActivationBlocks>
quantizeActivationsQ8K(RewriterBase &b, Location loc, Value x, bool withSums,
                       int64_t sumBlock, const BufferizationOptions &options,
                       bool gpu, bool codesI8) {
  auto xType = cast<MemRefType>(x.getType());
  int64_t rows = xType.getDimSize(0), k = xType.getDimSize(1);
  Type f32 = b.getF32Type();
  FailureOr<ActivationBlocks> blocks = allocActivationBlocks(
      b, loc, x, 256, withSums, options, sumBlock, codesI8, /*byBlock=*/!gpu);
  if (failed(blocks))
    return failure();
  Value q = blocks->q, d = blocks->d, s = blocks->s;
  auto c = [&](OpBuilder &b, int64_t i) {
    return arith::ConstantIndexOp::create(b, loc, i).getResult();
  };
  auto f = [&](OpBuilder &b, float v) {
    return arith::ConstantOp::create(b, loc, b.getF32FloatAttr(v)).getResult();
  };
  auto add = [&](OpBuilder &b, Value x, Value y) {
    return arith::AddIOp::create(b, loc, x, y).getResult();
  };
  // Stores group grp's sums: lo + hi at [m, grp] (sumBlock 32), or lo and
  // hi at [m, 2 grp] and [m, 2 grp + 1] (16).
  auto storeSums = [&](OpBuilder &b, Value m, Value grp, Value lo, Value hi) {
    if (sumBlock == 32) {
      memref::StoreOp::create(b, loc, arith::AddFOp::create(b, loc, lo, hi), s,
                              blocks->at(m, grp));
      return;
    }
    Value at = arith::MulIOp::create(b, loc, grp, c(b, 2));
    memref::StoreOp::create(b, loc, lo, s, blocks->at(m, at));
    memref::StoreOp::create(b, loc, hi, s, blocks->at(m, add(b, at, c(b, 1))));
  };
  // id as Q8_0's (q8Scale), d = 1 / id instead of amax / 127.
  auto scales = [&](OpBuilder &b, Value amax) {
    Value id = q8Scale(b, loc, amax).second;
    Value nonzero =
        arith::CmpFOp::create(b, loc, arith::CmpFPredicate::ONE, amax, f(b, 0.0f));
    Value dv = arith::SelectOp::create(
        b, loc, nonzero, arith::DivFOp::create(b, loc, f(b, 1.0f), id),
        f(b, 0.0f));
    return std::make_pair(id, dv);
  };
  if (gpu) {
    // One invocation per (row, group of 32): the group's super-block amax
    // (read by each of its 8 groups), then its own 32 values.
    scf::ParallelOp::create(
        b, loc, ValueRange{c(b, 0), c(b, 0)}, ValueRange{c(b, rows), c(b, k / 32)},
        ValueRange{c(b, 1), c(b, 1)},
        [&](OpBuilder &b, Location loc, ValueRange ivs) {
          Value m = ivs[0], grp = ivs[1];
          Value sb = arith::DivUIOp::create(b, loc, grp, c(b, 8));
          Value first = arith::MulIOp::create(b, loc, sb, c(b, 256));
          auto xAt = [&](OpBuilder &b, Value i) {
            return memref::LoadOp::create(b, loc, x, ValueRange{m, i}).getResult();
          };
          std::pair<Value, Value> sc =
              scales(b, scalarAbsMax(b, loc, 256, [&](OpBuilder &b, Value i) {
                       return xAt(b, add(b, first, i));
                     }));
          Value id = sc.first, dv = sc.second;
          Value k0 = arith::MulIOp::create(b, loc, grp, c(b, 32));
          // Values first .. first + 15 rounded and stored; their sum.
          auto half = [&](Value first) {
            return scf::ForOp::create(
                       b, loc, c(b, 0), c(b, 16), c(b, 1), ValueRange{f(b, 0.0f)},
                       [&](OpBuilder &b, Location loc, Value i, ValueRange acc) {
                         Value at = add(b, first, i);
                         Value qv = math::RoundEvenOp::create(
                             b, loc, arith::MulFOp::create(b, loc, xAt(b, at), id));
                         memref::StoreOp::create(b, loc, qv, q, ValueRange{m, at});
                         scf::YieldOp::create(
                             b, loc,
                             ValueRange{arith::AddFOp::create(b, loc, acc[0], qv)});
                       })
                .getResult(0);
          };
          Value sumLo = half(k0), sumHi = half(add(b, k0, c(b, 16)));
          if (withSums)
            storeSums(b, m, grp, sumLo, sumHi);
          Value lead = arith::CmpIOp::create(
              b, loc, arith::CmpIPredicate::eq,
              arith::RemUIOp::create(b, loc, grp, c(b, 8)), c(b, 0));
          scf::IfOp::create(b, loc, lead, [&](OpBuilder &b, Location loc) {
            memref::StoreOp::create(b, loc, dv, d, ValueRange{m, sb});
            scf::YieldOp::create(b, loc);
          });
        });
    return *blocks;
  }
  auto v16f = VectorType::get({16}, f32);
  Value zeroV = arith::ConstantOp::create(
      b, loc, v16f, DenseElementsAttr::get(v16f, b.getF32FloatAttr(0.0f)));
  scf::ForOp::create(
      b, loc, c(b, 0), c(b, rows), c(b, 1), ValueRange{},
      [&](OpBuilder &b, Location loc, Value m, ValueRange) {
        scf::ForOp::create(
            b, loc, c(b, 0), c(b, k / 256), c(b, 1), ValueRange{},
            [&](OpBuilder &b, Location loc, Value sb, ValueRange) {
              Value first = arith::MulIOp::create(b, loc, sb, c(b, 256));
              auto amaxLoop = scf::ForOp::create(
                  b, loc, c(b, 0), c(b, 256), c(b, 16), ValueRange{zeroV},
                  [&](OpBuilder &b, Location loc, Value i, ValueRange acc) {
                    Value v = vector::LoadOp::create(b, loc, v16f, x,
                                                     ValueRange{m, add(b, first, i)});
                    scf::YieldOp::create(
                        b, loc,
                        ValueRange{arith::MaximumFOp::create(
                            b, loc, acc[0], math::AbsFOp::create(b, loc, v))});
                  });
              Value amax = vector::ReductionOp::create(
                  b, loc, vector::CombiningKind::MAXIMUMF, amaxLoop.getResult(0));
              std::pair<Value, Value> sc = scales(b, amax);
              Value idV = vector::BroadcastOp::create(b, loc, v16f, sc.first);
              memref::StoreOp::create(b, loc, sc.second, d, blocks->at(m, sb));
              scf::ForOp::create(
                  b, loc, c(b, 0), c(b, 8), c(b, 1), ValueRange{},
                  [&](OpBuilder &b, Location loc, Value g, ValueRange) {
                    Value k0 = add(b, first, arith::MulIOp::create(b, loc, g, c(b, 32)));
                    Value k1 = add(b, k0, c(b, 16));
                    auto round = [&](Value at) {
                      Value v = vector::LoadOp::create(b, loc, v16f, x, ValueRange{m, at});
                      Value qv = math::RoundEvenOp::create(
                          b, loc, arith::MulFOp::create(b, loc, v, idV));
                      vector::StoreOp::create(b, loc,
                                              storedCodes(b, loc, qv, codesI8), q,
                                              ValueRange{m, at});
                      return qv;
                    };
                    Value qlo = round(k0), qhi = round(k1);
                    auto sum = [&](Value v) {
                      return vector::ReductionOp::create(
                                 b, loc, vector::CombiningKind::ADD, v)
                          .getResult();
                    };
                    if (withSums)
                      storeSums(b, m,
                                add(b, arith::MulIOp::create(b, loc, sb, c(b, 8)), g),
                                sum(qlo), sum(qhi));
                    scf::YieldOp::create(b, loc);
                  });
              scf::YieldOp::create(b, loc);
            });
        scf::YieldOp::create(b, loc);
      });
  return *blocks;
}

/// A K-quant group's minimums times x's sums of q over them: mLo s[m, blk]
/// (sumBlock 32, mLo == mHi), or mLo s[m, 2 blk] + mHi s[m, 2 blk + 1]
/// (16, q2_k), an integer exact in f32.
Value minimumSums(OpBuilder &b, Location loc, const KQuantGroup &g, Value s,
                  Value m, Value blk, int64_t sumBlock) {
  if (sumBlock == 32)
    return arith::MulFOp::create(
        b, loc, g.mLo, memref::LoadOp::create(b, loc, s, ValueRange{m, blk}));
  Value at = arith::MulIOp::create(b, loc, blk,
                                   arith::ConstantIndexOp::create(b, loc, 2));
  Value at1 = arith::AddIOp::create(b, loc, at,
                                    arith::ConstantIndexOp::create(b, loc, 1));
  Value lo = memref::LoadOp::create(b, loc, s, ValueRange{m, at});
  Value hi = memref::LoadOp::create(b, loc, s, ValueRange{m, at1});
  return math::FmaOp::create(b, loc, g.mHi, hi,
                             arith::MulFOp::create(b, loc, g.mLo, lo));
}

/// minimumSums for rows m0 .. m0 + count of s stored by block ([K /
/// sumBlock, M]): one vector<count x f32>, the same arithmetic per lane.
Value minimumSumsRows(OpBuilder &b, Location loc, const KQuantGroup &g,
                      Value s, Value m0, int64_t count, Value blk,
                      int64_t sumBlock) {
  auto vt = VectorType::get({count}, b.getF32Type());
  auto rowsAt = [&](Value i) {
    return vector::LoadOp::create(b, loc, vt, s, ValueRange{i, m0}).getResult();
  };
  auto bcast = [&](Value v) {
    return vector::BroadcastOp::create(b, loc, vt, v).getResult();
  };
  if (sumBlock == 32)
    return arith::MulFOp::create(b, loc, bcast(g.mLo), rowsAt(blk));
  Value at = arith::MulIOp::create(b, loc, blk,
                                   arith::ConstantIndexOp::create(b, loc, 2));
  Value at1 = arith::AddIOp::create(b, loc, at,
                                    arith::ConstantIndexOp::create(b, loc, 1));
  return math::FmaOp::create(b, loc, bcast(g.mHi), rowsAt(at1),
                             arith::MulFOp::create(b, loc, bcast(g.mLo), rowsAt(at)));
}

/// Whether the CPU target named 8-bit dot product instructions on the
/// module (kiln.int8_dot, from the target machine's features; see
/// kiln-lower-int8-dot). Without them the q8 kernels multiply the
/// integers as f32, which the vectorizer handles as well.
bool hasInt8Dot(Operation *op) { return moduleHas(op, "kiln.int8_dot"); }

/// Two vector<16xi8> as one vector<32xi8> (lo's lanes first).
Value concat16(OpBuilder &b, Location loc, Value lo, Value hi) {
  SmallVector<int64_t> all;
  for (int64_t i = 0; i < 32; ++i)
    all.push_back(i);
  return vector::ShuffleOp::create(b, loc, lo, hi, all);
}

struct QuantMatMulOpInterface
    : ReadOnlyOperands<QuantMatMulOpInterface, QuantMatMulOp> {

  LogicalResult bufferize(Operation *op, RewriterBase &rewriter,
                          const BufferizationOptions &options,
                          BufferizationState &state) const {
    auto mm = cast<QuantMatMulOp>(op);
    Location loc = op->getLoc();
    rewriter.setInsertionPoint(op);
    auto rType = cast<RankedTensorType>(mm.getResult().getType());
    FailureOr<Value> x =
        contiguousBuffer(rewriter, loc, mm.getInput(), options, state);
    FailureOr<Value> w = getBuffer(rewriter, mm.getWeight(), options, state);
    if (failed(x) || failed(w))
      return failure();
    auto outType = MemRefType::get(rType.getShape(), rType.getElementType());
    FailureOr<Value> out = options.createAlloc(rewriter, loc, outType, {});
    if (failed(out))
      return failure();
    int64_t rows = rType.getDimSize(0), n = rType.getDimSize(1);
    int64_t blocks = cast<MemRefType>(x->getType()).getDimSize(1) / 32;
    StringRef format = mm.getFormat();
    auto v16f = VectorType::get({16}, rewriter.getF32Type());
    auto c = [&](OpBuilder &b, int64_t i) {
      return arith::ConstantIndexOp::create(b, loc, i).getResult();
    };
    auto fast = arith::FastMathFlagsAttr::get(rewriter.getContext(),
                                              arith::FastMathFlags::reassoc);
    bool q8 = mm.getActivations() == "q8";
    // llama.cpp multiplies f16 weights with f16-rounded activations.
    bool roundXToF16 = q8 && format == "f16";
    if (roundXToF16)
      q8 = false;
    // K-quants take Q8_K activations (256-value blocks, f32 scales); their
    // q2_k / q4_k / q5_k minimums, like q4_1's and q5_1's, need x's block
    // sums.
    bool kq = quantBlockValues(format) == 256;
    bool withMins = kq ? format != "q6_k" && format != "q3_k" && format != "iq4_xs"
                       : blockLayout(format).hasMin;
    // q2_k's minimums are per 16 values: so are x's sums.
    int64_t sumBlock = format == "q2_k" ? 16 : 32;
    // The CPU's 8-bit dot products, where it has them: x's codes in i8.
    bool codesI8 = q8 && !forGpu(op) && hasInt8Dot(op);
    auto quantizeX = [&](bool gpu) {
      return kq ? quantizeActivationsQ8K(rewriter, loc, *x, withMins, sumBlock,
                                         options, gpu, codesI8)
                : quantizeActivations(rewriter, loc, *x, withMins, options, gpu,
                                      codesI8);
    };
    if (forGpu(op)) {
      // q8 (llama.cpp's numerics): x quantized per block of 32 first (a
      // kernel of its own), then integer dot products scaled per block.
      FailureOr<ActivationBlocks> xq = ActivationBlocks{};
      if (q8)
        xq = quantizeX(/*gpu=*/true);
      if (failed(xq))
        return failure();
      // One invocation per output element: sum over blocks of 32.
      auto cg = [&](OpBuilder &b, int64_t i) {
        return arith::ConstantIndexOp::create(b, loc, i).getResult();
      };
      scf::ParallelOp::create(
          rewriter, loc, ValueRange{cg(rewriter, 0), cg(rewriter, 0)},
          ValueRange{cg(rewriter, rows), cg(rewriter, n)},
          ValueRange{cg(rewriter, 1), cg(rewriter, 1)},
          [&](OpBuilder &b, Location loc, ValueRange ivs) {
            Value m = ivs[0], col = ivs[1];
            Value zero = arith::ConstantOp::create(b, loc, b.getF32FloatAttr(0.0f));
            auto outer = scf::ForOp::create(
                b, loc, cg(b, 0), cg(b, blocks), cg(b, 1), ValueRange{zero},
                [&](OpBuilder &b, Location loc, Value blk, ValueRange acc) {
                  Value k0 = arith::MulIOp::create(b, loc, blk, cg(b, 32));
                  if (q8 && kq) {
                    // Per group: dx d (scLo q.x[0:16] + scHi q.x[16:32])
                    // - dx dmin m s_x; the integer dots are exact in f32.
                    KQuantGroup g = kQuantGroup(b, loc, *w, col, blk, format);
                    Value zeroI = arith::ConstantOp::create(
                        b, loc, b.getF32FloatAttr(0.0f));
                    auto dot = scf::ForOp::create(
                        b, loc, cg(b, 0), cg(b, 16), cg(b, 1),
                        ValueRange{zeroI, zeroI},
                        [&](OpBuilder &b, Location loc, Value k, ValueRange a) {
                          auto [wl, wh] =
                              kQuantCodes(b, loc, *w, col, g, format, 1, k);
                          Value kl = arith::AddIOp::create(b, loc, k0, k);
                          Value kh = arith::AddIOp::create(b, loc, kl, cg(b, 16));
                          Value xl = memref::LoadOp::create(b, loc, xq->q,
                                                            ValueRange{m, kl});
                          Value xh = memref::LoadOp::create(b, loc, xq->q,
                                                            ValueRange{m, kh});
                          scf::YieldOp::create(
                              b, loc,
                              ValueRange{math::FmaOp::create(b, loc, wl, xl, a[0]),
                                         math::FmaOp::create(b, loc, wh, xh, a[1])});
                        });
                    Value dx = memref::LoadOp::create(
                        b, loc, xq->d,
                        ValueRange{m, arith::DivUIOp::create(b, loc, blk, cg(b, 8))});
                    Value isum = arith::AddFOp::create(
                        b, loc, arith::MulFOp::create(b, loc, g.scLo, dot.getResult(0)),
                        arith::MulFOp::create(b, loc, g.scHi, dot.getResult(1)));
                    Value term = arith::MulFOp::create(
                        b, loc, arith::MulFOp::create(b, loc, dx, g.d), isum);
                    if (g.mLo)
                      term = arith::SubFOp::create(
                          b, loc, term,
                          arith::MulFOp::create(
                              b, loc, arith::MulFOp::create(b, loc, dx, g.dmin),
                              minimumSums(b, loc, g, xq->s, m, blk, sumBlock)));
                    scf::YieldOp::create(
                        b, loc, ValueRange{arith::AddFOp::create(b, loc, acc[0], term)});
                    return;
                  }
                  if (q8) {
                    // Integer products are exact in f32 (|sum| < 2^24).
                    Value zeroI = arith::ConstantOp::create(
                        b, loc, b.getF32FloatAttr(0.0f));
                    auto dot = scf::ForOp::create(
                        b, loc, cg(b, 0), cg(b, 16), cg(b, 1), ValueRange{zeroI},
                        [&](OpBuilder &b, Location loc, Value k, ValueRange a) {
                          auto [wl, wh] =
                              scalarBlockInts(b, loc, *w, col, blk, k, format);
                          Value kl = arith::AddIOp::create(b, loc, k0, k);
                          Value kh = arith::AddIOp::create(b, loc, kl, cg(b, 16));
                          Value xl = memref::LoadOp::create(b, loc, xq->q,
                                                            ValueRange{m, kl});
                          Value xh = memref::LoadOp::create(b, loc, xq->q,
                                                            ValueRange{m, kh});
                          Value s1 = math::FmaOp::create(b, loc, wl, xl, a[0]);
                          scf::YieldOp::create(
                              b, loc,
                              ValueRange{math::FmaOp::create(b, loc, wh, xh, s1)});
                        });
                    auto [dw, mw] =
                        scalarBlockScales(b, loc, *w, col, blk, format);
                    Value dx = memref::LoadOp::create(b, loc, xq->d,
                                                      ValueRange{m, blk});
                    Value term = arith::MulFOp::create(
                        b, loc, dot.getResult(0),
                        arith::MulFOp::create(b, loc, dw, dx));
                    if (mw) {
                      Value sx = memref::LoadOp::create(b, loc, xq->s,
                                                        ValueRange{m, blk});
                      term = math::FmaOp::create(b, loc, mw, sx, term);
                    }
                    scf::YieldOp::create(
                        b, loc, ValueRange{arith::AddFOp::create(b, loc, acc[0], term)});
                    return;
                  }
                  // A K-quant group's scales are decoded once, outside
                  // the loop over its values.
                  std::optional<KQuantGroup> group;
                  if (kq)
                    group = kQuantGroup(b, loc, *w, col, blk, format);
                  auto inner = scf::ForOp::create(
                      b, loc, cg(b, 0), cg(b, 16), cg(b, 1), acc,
                      [&](OpBuilder &b, Location loc, Value k, ValueRange a) {
                        auto [lo, hi] =
                            group ? kQuantValues(b, loc, *w, col, *group, format, 1, k)
                                  : scalarBlockValues(b, loc, *w, col, blk, k, format);
                        Value kl = arith::AddIOp::create(b, loc, k0, k);
                        Value kh = arith::AddIOp::create(b, loc, kl, cg(b, 16));
                        Value xl = memref::LoadOp::create(b, loc, *x, ValueRange{m, kl});
                        Value xh = memref::LoadOp::create(b, loc, *x, ValueRange{m, kh});
                        if (roundXToF16) {
                          auto round = [&](Value v) {
                            return arith::ExtFOp::create(
                                       b, loc, b.getF32Type(),
                                       arith::TruncFOp::create(b, loc, b.getF16Type(), v)
                                           .getResult())
                                .getResult();
                          };
                          xl = round(xl);
                          xh = round(xh);
                        }
                        Value s1 = math::FmaOp::create(b, loc, lo, xl, a[0]);
                        scf::YieldOp::create(
                            b, loc, ValueRange{math::FmaOp::create(b, loc, hi, xh, s1)});
                      });
                  scf::YieldOp::create(b, loc, inner.getResults());
                });
            // The accumulator only ever has products added to it: the GPU
            // mapping may split the blocks over a workgroup and sum the
            // partial sums (kiln-map-parallel-loops-to-gpu).
            outer->setAttr("kiln.reduction", b.getStringAttr("addf"));
            memref::StoreOp::create(b, loc, outer.getResult(0), *out,
                                    ValueRange{m, col});
          });
      replaceOpWithBufferizedValues(rewriter, op, *out);
      return success();
    }
    FailureOr<ActivationBlocks> xq = ActivationBlocks{};
    if (q8)
      xq = quantizeX(/*gpu=*/false);
    if (failed(xq))
      return failure();
    Value zero = arith::ConstantOp::create(
        rewriter, loc, v16f,
        DenseElementsAttr::get(v16f, rewriter.getF32FloatAttr(0.0f)));
    auto v8f = VectorType::get({8}, rewriter.getF32Type());
    Value zero8 = arith::ConstantOp::create(
        rewriter, loc, v8f,
        DenseElementsAttr::get(v8f, rewriter.getF32FloatAttr(0.0f)));
    // Rows [m0, m0 + count) of x against output column `col`. f32
    // activations: a vector accumulator per row (8 lanes with the 8-bit
    // dot products, else 16). q8: the same plus, for the formats with
    // minimums, the rows' sums of m_w * s_x as one vector<count> (x's
    // sums are stored by block, so a tile's rows are one load).
    auto rowsTimesColumn = [&](OpBuilder &b, Value m0, int64_t count,
                               Value col) {
      bool sums = q8 && withMins;
      SmallVector<Value> init(count, codesI8 ? zero8 : zero);
      auto vRows = VectorType::get({count}, b.getF32Type());
      if (sums)
        init.push_back(arith::ConstantOp::create(
            b, loc, vRows, DenseElementsAttr::get(vRows, b.getF32FloatAttr(0.0f))));
      // One 32-value group: the accumulators after it. K-quant groups come
      // as (super-block sb, constant j < 8) too, so that their scale
      // decoding folds (see the loop below).
      auto step = [&](OpBuilder &b, Value blk, Value sb, Value j,
                      ValueRange acc) -> SmallVector<Value> {
            Value k0 = arith::MulIOp::create(b, loc, blk, c(b, 32));
            Value k1 = arith::AddIOp::create(b, loc, k0, c(b, 16));
            SmallVector<Value> next;
            if (!q8) {
              auto [lo, hi] = kq ? kQuantValues(b, loc, *w, col, sb, j, format, 16,
                                                Value())
                                 : dequantBlock(b, loc, *w, col, blk, format);
              for (int64_t r = 0; r < count; ++r) {
                Value m = arith::AddIOp::create(b, loc, m0, c(b, r));
                Value xl = vector::LoadOp::create(b, loc, v16f, *x, ValueRange{m, k0});
                Value xh = vector::LoadOp::create(b, loc, v16f, *x, ValueRange{m, k1});
                if (roundXToF16) {
                  auto v16h = VectorType::get({16}, b.getF16Type());
                  auto round = [&](Value v) {
                    return arith::ExtFOp::create(
                        b, loc, v16f,
                        arith::TruncFOp::create(b, loc, v16h, v).getResult())
                        .getResult();
                  };
                  xl = round(xl);
                  xh = round(xh);
                }
                Value a = vector::FMAOp::create(b, loc, lo, xl, acc[r]);
                next.push_back(vector::FMAOp::create(b, loc, hi, xh, a));
              }
              return next;
            }
            // q8: per row, acc + (w . x) * scale, with the weight's
            // integers decoded once for the rows. codesI8: w . x by
            // kiln.dot4_i8 on the block's 32 bytes (8 lanes of 4-product
            // sums, lanes 0-3 values 0-15); else two 16-lane f32 products
            // (exact: |sum| < 2^24 per block). `scale(row, lanes, hi)`
            // gives the lanes' scale vector (hi: values 16-31).
            auto v32i8 = VectorType::get({32}, b.getI8Type());
            auto rowDot = [&](Value m, Value lo, Value hi, bool wSigned,
                              function_ref<Value(int64_t, bool)> scale,
                              bool twoScales, Value acc) -> Value {
              if (codesI8) {
                Value xv = vector::LoadOp::create(b, loc, v32i8, xq->q,
                                                  ValueRange{m, k0});
                Value dot = Dot4I8Op::create(
                    b, loc, VectorType::get({8}, b.getI32Type()),
                    concat16(b, loc, lo, hi), xv, !wSigned);
                Value sc = scale(8, false);
                if (twoScales) {
                  // Lanes 0-3 take the first 16 values' scale.
                  auto v8i1 = VectorType::get({8}, b.getI1Type());
                  Value firstHalf = arith::ConstantOp::create(
                      b, loc, v8i1,
                      DenseElementsAttr::get(
                          v8i1, ArrayRef<bool>{true, true, true, true, false,
                                               false, false, false}));
                  sc = arith::SelectOp::create(b, loc, firstHalf, sc,
                                               scale(8, true));
                }
                return vector::FMAOp::create(
                    b, loc, arith::SIToFPOp::create(b, loc, v8f, dot), sc, acc);
              }
              Value xl = vector::LoadOp::create(b, loc, v16f, xq->q, ValueRange{m, k0});
              Value xh = vector::LoadOp::create(b, loc, v16f, xq->q, ValueRange{m, k1});
              if (!twoScales) {
                Value prod = vector::FMAOp::create(
                    b, loc, lo, xl, arith::MulFOp::create(b, loc, hi, xh));
                return vector::FMAOp::create(b, loc, prod, scale(16, false), acc);
              }
              acc = vector::FMAOp::create(b, loc, arith::MulFOp::create(b, loc, lo, xl),
                                          scale(16, false), acc);
              return vector::FMAOp::create(b, loc, arith::MulFOp::create(b, loc, hi, xh),
                                           scale(16, true), acc);
            };
            auto bcast = [&](int64_t lanes, Value v) {
              return vector::BroadcastOp::create(
                         b, loc, VectorType::get({lanes}, b.getF32Type()), v)
                  .getResult();
            };
            if (kq) {
              // Q8_K: per group dx d (scLo q.x[0:16] + scHi q.x[16:32]) -
              // dx dmin m s_x.
              KQuantGroup g = kQuantGroup(b, loc, *w, col, sb, j, format);
              auto [lo, hi] = kQuantCodes(b, loc, *w, col, g, format, 16, Value(),
                                          codesI8);
              bool wSigned =
                  format == "q3_k" || format == "q6_k" || format == "iq4_xs";
              // Byte products of a group with two scales (q2_k, q3_k, q6_k:
              // one per 16 values): the group's lanes of scales once, each
              // row's scale vector dd x that (the same products as
              // broadcasting dd scLo and dd scHi, without a select per row).
              Value laneScales;
              if (codesI8 && g.scLo != g.scHi) {
                auto v8i1 = VectorType::get({8}, b.getI1Type());
                Value firstHalf = arith::ConstantOp::create(
                    b, loc, v8i1,
                    DenseElementsAttr::get(
                        v8i1, ArrayRef<bool>{true, true, true, true, false,
                                             false, false, false}));
                laneScales = arith::SelectOp::create(b, loc, firstHalf,
                                                     bcast(8, g.scLo),
                                                     bcast(8, g.scHi));
              }
              for (int64_t r = 0; r < count; ++r) {
                Value m = arith::AddIOp::create(b, loc, m0, c(b, r));
                Value dx = memref::LoadOp::create(b, loc, xq->d, xq->at(m, sb));
                Value dd = arith::MulFOp::create(b, loc, dx, g.d);
                auto scale = [&](int64_t lanes, bool second) -> Value {
                  if (laneScales)
                    return arith::MulFOp::create(b, loc, bcast(lanes, dd),
                                                 laneScales);
                  return bcast(lanes, arith::MulFOp::create(
                                          b, loc, dd, second ? g.scHi : g.scLo));
                };
                next.push_back(rowDot(m, lo, hi, wSigned, scale,
                                      !laneScales && g.scLo != g.scHi, acc[r]));
              }
              if (sums) {
                // Per row: sum - (dx dmin) (m . s_x).
                Value dxRows = vector::LoadOp::create(b, loc, vRows, xq->d,
                                                      ValueRange{sb, m0});
                next.push_back(arith::SubFOp::create(
                    b, loc, acc[count],
                    arith::MulFOp::create(
                        b, loc,
                        arith::MulFOp::create(
                            b, loc, dxRows,
                            vector::BroadcastOp::create(b, loc, vRows, g.dmin)),
                        minimumSumsRows(b, loc, g, xq->s, m0, count, blk,
                                        sumBlock))));
              }
              return next;
            }
            BlockInts wq = blockInts(b, loc, *w, col, blk, format, codesI8);
            BlockLayout layout = blockLayout(format);
            bool wSigned = format == "q8_0" || layout.bias || layout.codebook;
            for (int64_t r = 0; r < count; ++r) {
              Value m = arith::AddIOp::create(b, loc, m0, c(b, r));
              Value dx = memref::LoadOp::create(b, loc, xq->d, ValueRange{m, blk});
              Value dd = arith::MulFOp::create(b, loc, wq.d, dx);
              next.push_back(rowDot(
                  m, wq.lo, wq.hi, wSigned,
                  [&](int64_t lanes, bool) { return bcast(lanes, dd); }, false,
                  acc[r]));
            }
            if (sums) {
              // Per row: sum + m_w s_x.
              Value sx = vector::LoadOp::create(b, loc, vRows, xq->s,
                                                ValueRange{blk, m0});
              next.push_back(arith::AddFOp::create(
                  b, loc, acc[count],
                  arith::MulFOp::create(
                      b, loc, vector::BroadcastOp::create(b, loc, vRows, wq.m),
                      sx)));
            }
            return next;
          };
      // K-quants: a loop over 256-value blocks, its 8 groups unrolled.
      int64_t unroll = kq ? 8 : 1;
      auto loop = scf::ForOp::create(
          b, loc, c(b, 0), c(b, blocks / unroll), c(b, 1), init,
          [&](OpBuilder &b, Location loc, Value iv, ValueRange acc) {
            SmallVector<Value> state(acc);
            for (int64_t jj = 0; jj < unroll; ++jj) {
              Value blk = kq ? arith::AddIOp::create(
                                   b, loc, arith::MulIOp::create(b, loc, iv, c(b, 8)),
                                   c(b, jj))
                                   .getResult()
                             : iv;
              state = step(b, blk, kq ? iv : Value(), kq ? c(b, jj) : Value(), state);
            }
            scf::YieldOp::create(b, loc, state);
          });
      for (int64_t r = 0; r < count; ++r) {
        Value sum = vector::ReductionOp::create(
            b, loc, vector::CombiningKind::ADD, loop.getResult(r), Value(),
            fast.getValue());
        if (sums)
          sum = arith::AddFOp::create(
              b, loc, sum,
              vector::ExtractOp::create(b, loc, loop.getResult(count),
                                        ArrayRef<int64_t>{r}));
        Value m = arith::AddIOp::create(b, loc, m0, c(b, r));
        memref::StoreOp::create(b, loc, sum, *out, ValueRange{m, col});
      }
    };
    // Rows sharing one decoding of each weight block. The byte products
    // keep one 8-lane accumulator per row (and the minimums' sums one
    // vector for the tile), so 16 rows fit the registers and decode each
    // block a quarter as often as 4 rows do. The f32 forms (16-lane
    // accumulators) gain nothing past 4. Measured per format in
    // docs/benchmarks.md.
    int64_t kTile = codesI8 ? 16 : 4;
    scf::ParallelOp::create(
        rewriter, loc, ValueRange{c(rewriter, 0)}, ValueRange{c(rewriter, n)},
        ValueRange{c(rewriter, 1)},
        [&](OpBuilder &b, Location loc, ValueRange ivs) {
          Value col = ivs[0];
          int64_t full = rows / kTile * kTile;
          if (full > 0)
            scf::ForOp::create(
                b, loc, c(b, 0), c(b, full), c(b, kTile), ValueRange{},
                [&](OpBuilder &b, Location loc, Value m0, ValueRange) {
                  rowsTimesColumn(b, m0, kTile, col);
                  scf::YieldOp::create(b, loc);
                });
          if (rows % kTile)
            rowsTimesColumn(b, c(b, full), rows % kTile, col);
        });
    replaceOpWithBufferizedValues(rewriter, op, *out);
    return success();
  }
};

struct QuantGatherOpInterface
    : ReadOnlyOperands<QuantGatherOpInterface, QuantGatherOp> {

  LogicalResult bufferize(Operation *op, RewriterBase &rewriter,
                          const BufferizationOptions &options,
                          BufferizationState &state) const {
    auto g = cast<QuantGatherOp>(op);
    Location loc = op->getLoc();
    rewriter.setInsertionPoint(op);
    auto rType = cast<RankedTensorType>(g.getResult().getType());
    FailureOr<Value> idx =
        contiguousBuffer(rewriter, loc, g.getIndices(), options, state);
    FailureOr<Value> table = getBuffer(rewriter, g.getTable(), options, state);
    if (failed(idx) || failed(table))
      return failure();
    auto outType = MemRefType::get(rType.getShape(), rType.getElementType());
    FailureOr<Value> out = options.createAlloc(rewriter, loc, outType, {});
    if (failed(out))
      return failure();
    int64_t k = rType.getShape().back();
    int64_t count = 1;
    for (int64_t d : rType.getShape().drop_back())
      count *= d;
    int64_t vocab = cast<MemRefType>(table->getType()).getDimSize(0);
    // Both as 2-D/1-D views: [count] indices, [count, K] rows.
    SmallVector<ReassociationIndices> all(1), rowsAndK(2);
    for (int64_t d = 0; d < cast<MemRefType>(idx->getType()).getRank(); ++d)
      all[0].push_back(d);
    for (int64_t d = 0; d + 1 < rType.getRank(); ++d)
      rowsAndK[0].push_back(d);
    rowsAndK[1].push_back(rType.getRank() - 1);
    Value flatIdx = all[0].size() == 1 ? *idx
                                       : memref::CollapseShapeOp::create(
                                             rewriter, loc, *idx, all)
                                             .getResult();
    Value flatOut = rowsAndK[0].size() == 1 ? *out
                                            : memref::CollapseShapeOp::create(
                                                  rewriter, loc, *out, rowsAndK)
                                                  .getResult();
    auto c = [&](OpBuilder &b, int64_t i) {
      return arith::ConstantIndexOp::create(b, loc, i).getResult();
    };
    StringRef format = g.getFormat();
    bool gpu = forGpu(op);
    scf::ForOp::create(
        rewriter, loc, c(rewriter, 0), c(rewriter, count), c(rewriter, 1),
        ValueRange{}, [&](OpBuilder &b, Location loc, Value p, ValueRange) {
          Value id = memref::LoadOp::create(b, loc, flatIdx, ValueRange{p});
          Value row = arith::IndexCastOp::create(b, loc, b.getIndexType(), id);
          row = arith::MaxSIOp::create(b, loc, row, c(b, 0));
          row = arith::MinSIOp::create(b, loc, row, c(b, vocab - 1));
          scf::ForOp::create(
              b, loc, c(b, 0), c(b, k / 32), c(b, 1), ValueRange{},
              [&](OpBuilder &b, Location loc, Value blk, ValueRange) {
                Value k0 = arith::MulIOp::create(b, loc, blk, c(b, 32));
                Value k1 = arith::AddIOp::create(b, loc, k0, c(b, 16));
                if (gpu) {
                  scf::ForOp::create(
                      b, loc, c(b, 0), c(b, 16), c(b, 1), ValueRange{},
                      [&](OpBuilder &b, Location loc, Value k, ValueRange) {
                        auto [lo, hi] = scalarBlockValues(b, loc, *table, row,
                                                          blk, k, format);
                        memref::StoreOp::create(
                            b, loc, lo, flatOut,
                            ValueRange{p, arith::AddIOp::create(b, loc, k0, k)});
                        memref::StoreOp::create(
                            b, loc, hi, flatOut,
                            ValueRange{p, arith::AddIOp::create(b, loc, k1, k)});
                        scf::YieldOp::create(b, loc);
                      });
                  scf::YieldOp::create(b, loc);
                  return;
                }
                auto [lo, hi] = dequantBlock(b, loc, *table, row, blk, format);
                vector::StoreOp::create(b, loc, lo, flatOut, ValueRange{p, k0});
                vector::StoreOp::create(b, loc, hi, flatOut, ValueRange{p, k1});
                scf::YieldOp::create(b, loc);
              });
          scf::YieldOp::create(b, loc);
        });
    replaceOpWithBufferizedValues(rewriter, op, *out);
    return success();
  }
};

/// Quantizes `x`, one group of a KV row (vector<g x f32>), to Q8_0: its
/// codes (vector<g x i8>) and scale d (f32, before rounding to f16).
std::pair<Value, Value> quantizeKvGroup(OpBuilder &b, Location loc, Value x) {
  auto type = cast<VectorType>(x.getType());
  Value amax = vector::ReductionOp::create(
      b, loc, vector::CombiningKind::MAXIMUMF, math::AbsFOp::create(b, loc, x));
  auto [d, id] = q8Scale(b, loc, amax);
  Value q = math::RoundEvenOp::create(
      b, loc,
      arith::MulFOp::create(b, loc, x,
                            vector::BroadcastOp::create(b, loc, type, id)));
  Value codes = arith::FPToSIOp::create(
      b, loc, VectorType::get(type.getShape(), b.getI8Type()), q);
  return {codes, d};
}

/// Stores f32 `d` as the two little-endian bytes of its f16 at `lead` then
/// `off`, `off` + 1 of an i8 buffer (GPU form: byte stores).
void storeScalarHalf(OpBuilder &b, Location loc, Value d, Value w,
                     ValueRange lead, Value off) {
  auto i16 = b.getI16Type(), i8 = b.getI8Type();
  Value bits = arith::BitcastOp::create(
      b, loc, i16, arith::TruncFOp::create(b, loc, b.getF16Type(), d));
  Value hi = arith::ShRUIOp::create(
      b, loc, bits, arith::ConstantOp::create(b, loc, b.getIntegerAttr(i16, 8)));
  Value parts[] = {bits, hi};
  for (int64_t k = 0; k < 2; ++k) {
    SmallVector<Value> at(lead);
    at.push_back(arith::AddIOp::create(
        b, loc, off, arith::ConstantIndexOp::create(b, loc, k)));
    memref::StoreOp::create(b, loc,
                            arith::TruncIOp::create(b, loc, i8, parts[k]), w,
                            at);
  }
}

struct KvStoreOpInterface
    : ReadOnlyOperands<KvStoreOpInterface, KvStoreOp> {

  LogicalResult bufferize(Operation *op, RewriterBase &rewriter,
                          const BufferizationOptions &options,
                          BufferizationState &state) const {
    auto store = cast<KvStoreOp>(op);
    Location loc = op->getLoc();
    rewriter.setInsertionPoint(op);
    auto cacheType = cast<MemRefType>(store.getCache().getType());
    auto addr = CacheAddressing::load(rewriter, loc, cacheType,
                                      store.getBlockTable(), store.getStep(),
                                      options, state);
    FailureOr<Value> k =
        contiguousBuffer(rewriter, loc, store.getK(), options, state);
    FailureOr<Value> v =
        contiguousBuffer(rewriter, loc, store.getV(), options, state);
    if (failed(addr) || failed(k) || failed(v))
      return failure();
    int64_t kvHeads = cacheType.getDimSize(3);
    int64_t headDim = cast<MemRefType>(k->getType()).getDimSize(3);
    Type f32 = rewriter.getF32Type(), elt = cacheType.getElementType();
    // An f16 cache stores rounded keys and values; an i8 one Q8_0 groups
    // of `group` values: codes at [0, head_dim), group g's f16 scale at
    // head_dim + 2 g.
    bool int8 = elt.isInteger(8);
    int64_t group = int8 ? kvInt8Group(headDim) : headDim;
    int64_t groups = headDim / group;
    auto c = [&](int64_t i) {
      return arith::ConstantIndexOp::create(rewriter, loc, i).getResult();
    };
    Value cache = store.getCache(), layer = c(store.getLayer());
    SmallVector<Value, 2> sources = {*k, *v};
    if (forGpu(op)) {
      // One invocation per (token, head, dim) of the call's chunk (an i8
      // cache: per (token, head, group)); those past its n real tokens
      // store nothing.
      int64_t seq = cast<MemRefType>(k->getType()).getDimSize(2);
      scf::ParallelOp::create(
          rewriter, loc, ValueRange{c(0), c(0), c(0)},
          ValueRange{c(seq), c(kvHeads), c(int8 ? groups : headDim)},
          ValueRange{c(1), c(1), c(1)},
          [&](OpBuilder &b, Location loc, ValueRange iv) {
            Value i = iv[0], h = iv[1], d = iv[2];
            Value real = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::ult,
                                               i, addr->n);
            auto ifReal = scf::IfOp::create(b, loc, real, /*withElse=*/false);
            OpBuilder t = ifReal.getThenBodyBuilder();
            auto ct = [&](int64_t v) {
              return arith::ConstantIndexOp::create(t, loc, v).getResult();
            };
            auto [block, slot] =
                addr->locate(t, loc, arith::AddIOp::create(t, loc, addr->pos, i));
            for (int64_t which = 0; which < 2; ++which) {
              Value src = sources[which];
              SmallVector<Value> row = {block, ct(store.getLayer()),
                                        ct(which), h, slot};
              auto at = [&](Value x) {
                SmallVector<Value> r(row);
                r.push_back(x);
                return r;
              };
              if (!int8) {
                Value x = memref::LoadOp::create(t, loc, src,
                                                 ValueRange{ct(0), h, i, d});
                if (x.getType() != elt)
                  x = arith::TruncFOp::create(t, loc, elt, x);
                memref::StoreOp::create(t, loc, x, cache, at(d));
                continue;
              }
              // Group d: its largest magnitude, then codes and scale.
              Value g0 = arith::MulIOp::create(t, loc, d, ct(group));
              auto xAt = [&](OpBuilder &b, Value e) {
                return memref::LoadOp::create(
                           b, loc, src,
                           ValueRange{ct(0), h, i,
                                      arith::AddIOp::create(b, loc, g0, e)})
                    .getResult();
              };
              std::pair<Value, Value> scale =
                  q8Scale(t, loc, scalarAbsMax(t, loc, group, xAt));
              Value id = scale.second;
              scf::ForOp::create(
                  t, loc, ct(0), ct(group), ct(1), ValueRange{},
                  [&](OpBuilder &b, Location loc, Value e, ValueRange) {
                    Value q = math::RoundEvenOp::create(
                        b, loc, arith::MulFOp::create(b, loc, xAt(b, e), id));
                    memref::StoreOp::create(
                        b, loc,
                        arith::FPToSIOp::create(b, loc, b.getI8Type(), q),
                        cache, at(arith::AddIOp::create(b, loc, g0, e)));
                    scf::YieldOp::create(b, loc);
                  });
              Value off = arith::AddIOp::create(
                  t, loc, ct(headDim), arith::MulIOp::create(t, loc, d, ct(2)));
              storeScalarHalf(t, loc, scale.first, cache, row, off);
            }
          });
      rewriter.eraseOp(op);
      return success();
    }
    auto groupType = VectorType::get({group}, f32);
    scf::ForOp::create(
        rewriter, loc, c(0), addr->n, c(1), ValueRange{},
        [&](OpBuilder &b, Location loc, Value i, ValueRange) {
          Value j = arith::AddIOp::create(b, loc, addr->pos, i);
          // (Not structured bindings: C++17 lambdas cannot capture them.)
          std::pair<Value, Value> at = addr->locate(b, loc, j);
          Value block = at.first, slot = at.second;
          scf::ForOp::create(
              b, loc, c(0), c(kvHeads), c(1), ValueRange{},
              [&](OpBuilder &b, Location loc, Value h, ValueRange) {
                for (int64_t which = 0; which < 2; ++which) {
                  Value src = sources[which];
                  auto rowAt = [&](int64_t off) {
                    return SmallVector<Value>{block, layer, c(which), h, slot,
                                              c(off)};
                  };
                  for (int64_t g = 0; g < groups; ++g) {
                    Value x = vector::LoadOp::create(
                        b, loc, groupType, src,
                        ValueRange{c(0), h, i, c(g * group)});
                    if (!int8) {
                      if (elt != f32)
                        x = arith::TruncFOp::create(
                            b, loc, VectorType::get({group}, elt), x);
                      vector::StoreOp::create(b, loc, x, cache, rowAt(0));
                      continue;
                    }
                    auto [codes, d] = quantizeKvGroup(b, loc, x);
                    vector::StoreOp::create(b, loc, codes, cache,
                                            rowAt(g * group));
                    Value h16 = vector::BroadcastOp::create(
                        b, loc, VectorType::get({1}, b.getF16Type()),
                        arith::TruncFOp::create(b, loc, b.getF16Type(), d));
                    Value bytes = vector::BitCastOp::create(
                        b, loc, VectorType::get({2}, b.getI8Type()), h16);
                    vector::StoreOp::create(b, loc, bytes, cache,
                                            rowAt(headDim + 2 * g));
                  }
                }
                scf::YieldOp::create(b, loc);
              });
          scf::YieldOp::create(b, loc);
        });
    rewriter.eraseOp(op);
    return success();
  }
};

/// One online-softmax step for score `s` over the running (max, sum):
/// the new max and sum, the factor `corr` that rescales what was summed
/// before, and the new key's weight `pexp`.
struct SoftmaxStep {
  Value max, sum, corr, pexp;
};

SoftmaxStep softmaxStep(OpBuilder &b, Location loc, Value max, Value sum,
                        Value s) {
  Value m = arith::MaximumFOp::create(b, loc, max, s);
  Value corr =
      math::ExpOp::create(b, loc, arith::SubFOp::create(b, loc, max, m));
  Value pexp = math::ExpOp::create(b, loc, arith::SubFOp::create(b, loc, s, m));
  Value l = arith::AddFOp::create(
      b, loc, arith::MulFOp::create(b, loc, sum, corr), pexp);
  return {m, l, corr, pexp};
}

/// The cached keys that query `i` of a call sees: the first `sinks` keys
/// when there are sinks, then [lo, hi) with hi = min(pos + i + 1, end)
/// (causal; queries past the n real ones see all of the call's keys) and
/// lo = hi - window with a sliding window, else 0. The last range's end is
/// hi.
struct VisibleKeys {
  Value pos, end;
  int64_t window, sinks;

  SmallVector<std::pair<Value, Value>, 2> ranges(OpBuilder &b, Location loc,
                                                 Value i) const {
    auto c = [&](int64_t v) {
      return arith::ConstantIndexOp::create(b, loc, v).getResult();
    };
    Value p = arith::AddIOp::create(b, loc, pos, i);
    Value hi = arith::MinUIOp::create(
        b, loc, arith::AddIOp::create(b, loc, p, c(1)), end);
    SmallVector<std::pair<Value, Value>, 2> r;
    Value lo = c(0);
    if (window > 0) {
      // Keys p - window < j <= p, after the first `sinks` keys.
      Value first = arith::SubIOp::create(
          b, loc, arith::MaxSIOp::create(b, loc, hi, c(window)), c(window));
      lo = first;
      if (sinks > 0) {
        Value sinkEnd = arith::MinUIOp::create(b, loc, c(sinks), first);
        r.push_back({c(0), sinkEnd});
        lo = arith::MaxUIOp::create(b, loc, first, sinkEnd);
      }
    }
    r.push_back({lo, hi});
    return r;
  }
};

/// The GPU attention's splits: at least kMinKeysPerSplit keys each, at
/// most kMaxSplits of them (longer caches get longer splits, so that the
/// merge stays short); and the most scratch (scores and per-split partial
/// results) one attention op may use: past it the queries are processed
/// in groups.
constexpr int64_t kMinKeysPerSplit = 32;
constexpr int64_t kMaxSplits = 256;
constexpr int64_t kAttentionScratchBytes = int64_t(64) << 20;

/// An attention score: q . k times `scale`, then, when `softcap` is set,
/// softcap * tanh(s / softcap) (both paged-attention forms).
Value scaledScore(OpBuilder &b, Location loc, Value dot, Value scale,
                  Value softcap) {
  Value s = arith::MulFOp::create(b, loc, dot, scale);
  if (!softcap)
    return s;
  Value t = math::TanhOp::create(b, loc, arith::DivFOp::create(b, loc, s, softcap));
  return arith::MulFOp::create(b, loc, t, softcap);
}

/// The GPU form of paged attention, split over the keys (flash-decoding):
/// a decode step has one query per head, so one invocation per (head,
/// query) would leave a GPU idle and walk the whole context serially.
/// Three flat parallel loops instead, each a kernel of many invocations:
///  1. scores: S[h, i, j] = scale * q . k_j (soft-capped: c tanh(S / c)),
///     one invocation per visible (head, query, key) (the others return at
///     once);
///  2. partials: per split of keys and per head dim, the
///     online softmax of the split's scores (running max m, sum l) and
///     its weighted value sum; neighbouring invocations read neighbouring
///     value elements and the same score;
///  3. merge, per (head, query, dim): each split rescaled to the common
///     max, out = sum of values / sum of weights. Splits without a
///     visible key (l = 0) are skipped.
/// With rounded probabilities (llama.cpp's numerics: p = f16(exp(s - M) /
/// L) with the final M and L) step 2 is split in three: each split's
/// (m, l); their merge into (M, 1 / L) per (head, query); each split's sum
/// of rounded probabilities times values. The merge then adds the splits.
/// Everything is scalar (SPIR-V has no wide vectors); the trip counts
/// follow the run-time context, the grids the cache's capacity.
LogicalResult splitKeysAttention(RewriterBase &rewriter, Location loc,
                                 PagedAttentionOp attn,
                                 const CacheAddressing &addr,
                                 const VisibleKeys &keys, Value q, Value out,
                                 const BufferizationOptions &options) {
  auto cacheType = cast<MemRefType>(attn.getCache().getType());
  auto tableType = cast<MemRefType>(addr.table.getType());
  auto qType = cast<MemRefType>(q.getType());
  if (!tableType.hasStaticShape() || !qType.hasStaticShape())
    return attn.emitOpError("GPU targets need a static block table and query");
  int64_t heads = qType.getDimSize(1), seq = qType.getDimSize(2);
  int64_t headDim = qType.getDimSize(3);
  int64_t group = heads / cacheType.getDimSize(3);
  int64_t capacity = tableType.getDimSize(0) * addr.blockSize;
  int64_t keysPerSplit = kMinKeysPerSplit;
  while (capacity > keysPerSplit * kMaxSplits)
    keysPerSplit *= 2;
  int64_t splits = (capacity + keysPerSplit - 1) / keysPerSplit;
  // Queries per group: as many as the scratch budget holds.
  int64_t perQuery = 4 * heads * (capacity + splits * (2 + headDim) + 2);
  int64_t groupSize =
      std::clamp<int64_t>(kAttentionScratchBytes / perQuery, 1, seq);
  bool rounded = attn.getRoundedProbs();
  Type f32 = rewriter.getF32Type();
  Type cacheElt = cacheType.getElementType();

  auto scratch = [&](ArrayRef<int64_t> shape) {
    return options.createAlloc(rewriter, loc, MemRefType::get(shape, f32), {});
  };
  FailureOr<Value> scores = scratch({heads, groupSize, capacity});
  FailureOr<Value> maxes = scratch({heads, groupSize, splits});
  FailureOr<Value> sums = scratch({heads, groupSize, splits});
  FailureOr<Value> partials = scratch({heads, groupSize, splits, headDim});
  if (failed(scores) || failed(maxes) || failed(sums) || failed(partials))
    return failure();
  // Rounded probabilities: the final max and 1 / sum per (head, query).
  FailureOr<Value> finalMax = Value(), finalInv = Value();
  if (rounded) {
    finalMax = scratch({heads, groupSize});
    finalInv = scratch({heads, groupSize});
    if (failed(finalMax) || failed(finalInv))
      return failure();
  }

  auto c = [&](OpBuilder &b, int64_t v) {
    return arith::ConstantIndexOp::create(b, loc, v).getResult();
  };
  auto f = [&](OpBuilder &b, float x) {
    return arith::ConstantOp::create(b, loc, b.getF32FloatAttr(x)).getResult();
  };
  auto add = [&](OpBuilder &b, Value x, Value y) {
    return arith::AddFOp::create(b, loc, x, y).getResult();
  };
  auto mul = [&](OpBuilder &b, Value x, Value y) {
    return arith::MulFOp::create(b, loc, x, y).getResult();
  };
  auto expDiff = [&](OpBuilder &b, Value x, Value y) {
    return math::ExpOp::create(b, loc, arith::SubFOp::create(b, loc, x, y))
        .getResult();
  };
  Value cache = attn.getCache();
  int64_t layer = attn.getLayer();
  // Element d of row `which` (0 keys, 1 values) of cached key j, as f32
  // (an i8 cache: its code times its group's scale).
  auto cacheAt = [&](OpBuilder &b, Value j, Value kvHead, int64_t which,
                     Value d) -> Value {
    auto [block, slot] = addr.locate(b, loc, j);
    SmallVector<Value> row = {block, c(b, layer), c(b, which), kvHead, slot};
    SmallVector<Value> at(row);
    at.push_back(d);
    Value v = memref::LoadOp::create(b, loc, cache, at);
    if (cacheElt.isF32())
      return v;
    if (cacheElt.isF16())
      return arith::ExtFOp::create(b, loc, f32, v);
    Value g = arith::DivUIOp::create(b, loc, d, c(b, kvInt8Group(headDim)));
    Value off = arith::AddIOp::create(b, loc, c(b, headDim),
                                      arith::MulIOp::create(b, loc, g, c(b, 2)));
    return mul(b, arith::SIToFPOp::create(b, loc, f32, v),
               scalarHalf(b, loc, cache, row, off));
  };
  // A kernel: one flat parallel loop over `extents`.
  auto kernel = [&](ArrayRef<int64_t> extents,
                    function_ref<void(OpBuilder &, ValueRange)> body) {
    SmallVector<Value> lbs, ubs, steps;
    for (int64_t e : extents) {
      lbs.push_back(c(rewriter, 0));
      ubs.push_back(c(rewriter, e));
      steps.push_back(c(rewriter, 1));
    }
    scf::ParallelOp::create(
        rewriter, loc, lbs, ubs, steps,
        [&](OpBuilder &b, Location, ValueRange ivs) { body(b, ivs); });
  };
  // Loops over the keys of split `s` that query `i` sees, carrying `init`.
  auto overSplitKeys = [&](OpBuilder &b, Value i, Value s, ValueRange init,
                           function_ref<SmallVector<Value>(
                               OpBuilder &, Value, ValueRange)> step) {
    Value s0 = arith::MulIOp::create(b, loc, s, c(b, keysPerSplit));
    Value s1 = arith::AddIOp::create(b, loc, s0, c(b, keysPerSplit));
    SmallVector<Value> st(init);
    for (auto [lo, hi] : keys.ranges(b, loc, i)) {
      auto loop = scf::ForOp::create(
          b, loc, arith::MaxUIOp::create(b, loc, lo, s0),
          arith::MinUIOp::create(b, loc, hi, s1), c(b, 1), st,
          [&](OpBuilder &b, Location loc, Value j, ValueRange a) {
            scf::YieldOp::create(b, loc, step(b, j, a));
          });
      st = SmallVector<Value>(loop.getResults());
    }
    return st;
  };
  // Loops over the splits holding keys query `i` sees, carrying `init`.
  auto overSplits = [&](OpBuilder &b, Value i, ValueRange init,
                        function_ref<SmallVector<Value>(OpBuilder &, Value,
                                                        ValueRange)>
                            step) {
    Value hi = keys.ranges(b, loc, i).back().second;
    Value active = arith::DivUIOp::create(
        b, loc, arith::AddIOp::create(b, loc, hi, c(b, keysPerSplit - 1)),
        c(b, keysPerSplit));
    return SmallVector<Value>(
        scf::ForOp::create(b, loc, c(b, 0), active, c(b, 1), init,
                           [&](OpBuilder &b, Location loc, Value s,
                               ValueRange a) {
                             scf::YieldOp::create(b, loc, step(b, s, a));
                           })
            .getResults());
  };
  // Folds a split's (max m, sum l) into the running (M, L): the new M,
  // the factors for what was summed before and for the split, the new L.
  // A split without visible keys (l = 0, m = -inf) changes nothing.
  auto mergeSplit = [&](OpBuilder &b, Value runMax, Value runSum, Value m,
                        Value l) {
    Value seen = arith::CmpFOp::create(b, loc, arith::CmpFPredicate::OGT, l,
                                       f(b, 0.0f));
    Value newMax = arith::SelectOp::create(
        b, loc, seen, arith::MaximumFOp::create(b, loc, runMax, m), runMax);
    Value keep = arith::SelectOp::create(b, loc, seen,
                                         expDiff(b, runMax, newMax), f(b, 1.0f));
    Value take = arith::SelectOp::create(b, loc, seen, expDiff(b, m, newMax),
                                         f(b, 0.0f));
    Value newSum = add(b, mul(b, runSum, keep), mul(b, l, take));
    return std::make_tuple(newMax, keep, take, newSum);
  };
  Value minusInf = f(rewriter, -std::numeric_limits<float>::infinity());
  Value scale = f(rewriter, attn.getScale().convertToFloat());
  float cap = attn.getSoftcap().convertToFloat();
  Value softcap = cap > 0 ? f(rewriter, cap) : Value();

  for (int64_t q0 = 0; q0 < seq; q0 += groupSize) {
    int64_t n = std::min(groupSize, seq - q0);
    auto query = [&](OpBuilder &b, Value gi) {
      return arith::AddIOp::create(b, loc, gi, c(b, q0)).getResult();
    };
    // 1. Scores of the visible keys.
    kernel({heads, n, capacity}, [&](OpBuilder &b, ValueRange iv) {
      Value h = iv[0], gi = iv[1], j = iv[2], i = query(b, gi);
      Value kvHead = arith::DivUIOp::create(b, loc, h, c(b, group));
      Value visible;
      for (auto [lo, hi] : keys.ranges(b, loc, i)) {
        Value in = arith::AndIOp::create(
            b, loc,
            arith::CmpIOp::create(b, loc, arith::CmpIPredicate::uge, j, lo),
            arith::CmpIOp::create(b, loc, arith::CmpIPredicate::ult, j, hi));
        visible = visible ? arith::OrIOp::create(b, loc, visible, in) : in;
      }
      auto ifVisible = scf::IfOp::create(b, loc, visible, /*withElse=*/false);
      OpBuilder t = ifVisible.getThenBodyBuilder();
      auto dot = scf::ForOp::create(
          t, loc, c(t, 0), c(t, headDim), c(t, 1), ValueRange{f(t, 0.0f)},
          [&](OpBuilder &b, Location loc, Value d, ValueRange a) {
            Value qd = memref::LoadOp::create(b, loc, q,
                                              ValueRange{c(b, 0), h, i, d});
            // With an f16 cache the query is rounded alike.
            if (cacheElt.isF16())
              qd = arith::ExtFOp::create(
                  b, loc, f32,
                  arith::TruncFOp::create(b, loc, cacheElt, qd).getResult());
            Value kd = cacheAt(b, j, kvHead, 0, d);
            scf::YieldOp::create(b, loc,
                                 ValueRange{math::FmaOp::create(b, loc, qd, kd,
                                                                a[0])});
          });
      Value score = scaledScore(t, loc, dot.getResult(0), scale, softcap);
      memref::StoreOp::create(t, loc, score, *scores, ValueRange{h, gi, j});
    });

    if (!rounded) {
      // 2. Each split's (m, l) and weighted value sums.
      kernel({heads, n, splits, headDim}, [&](OpBuilder &b, ValueRange iv) {
        Value h = iv[0], gi = iv[1], s = iv[2], d = iv[3], i = query(b, gi);
        Value kvHead = arith::DivUIOp::create(b, loc, h, c(b, group));
        SmallVector<Value> st = overSplitKeys(
            b, i, s, ValueRange{minusInf, f(b, 0.0f), f(b, 0.0f)},
            [&](OpBuilder &b, Value j, ValueRange a) -> SmallVector<Value> {
              Value sc = memref::LoadOp::create(b, loc, *scores,
                                                ValueRange{h, gi, j});
              SoftmaxStep t = softmaxStep(b, loc, a[0], a[1], sc);
              Value v = cacheAt(b, j, kvHead, 1, d);
              return {t.max, t.sum,
                      math::FmaOp::create(b, loc, t.pexp, v,
                                          mul(b, a[2], t.corr))};
            });
        memref::StoreOp::create(b, loc, st[2], *partials,
                                ValueRange{h, gi, s, d});
        Value first = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::eq,
                                            d, c(b, 0));
        auto ifFirst = scf::IfOp::create(b, loc, first, /*withElse=*/false);
        OpBuilder t = ifFirst.getThenBodyBuilder();
        memref::StoreOp::create(t, loc, st[0], *maxes, ValueRange{h, gi, s});
        memref::StoreOp::create(t, loc, st[1], *sums, ValueRange{h, gi, s});
      });
      // 3. Merge the splits.
      kernel({heads, n, headDim}, [&](OpBuilder &b, ValueRange iv) {
        Value h = iv[0], gi = iv[1], d = iv[2], i = query(b, gi);
        SmallVector<Value> st = overSplits(
            b, i, ValueRange{minusInf, f(b, 0.0f), f(b, 0.0f)},
            [&](OpBuilder &b, Value s, ValueRange a) -> SmallVector<Value> {
              Value m = memref::LoadOp::create(b, loc, *maxes,
                                               ValueRange{h, gi, s});
              Value l = memref::LoadOp::create(b, loc, *sums,
                                               ValueRange{h, gi, s});
              Value part = memref::LoadOp::create(b, loc, *partials,
                                                  ValueRange{h, gi, s, d});
              auto [newMax, keep, take, newSum] = mergeSplit(b, a[0], a[1], m, l);
              return {newMax, newSum,
                      add(b, mul(b, a[2], keep), mul(b, part, take))};
            });
        memref::StoreOp::create(b, loc, arith::DivFOp::create(b, loc, st[2], st[1]),
                                out, ValueRange{c(b, 0), h, i, d});
      });
      continue;
    }

    // 2a. Each split's (m, l).
    kernel({heads, n, splits}, [&](OpBuilder &b, ValueRange iv) {
      Value h = iv[0], gi = iv[1], s = iv[2], i = query(b, gi);
      SmallVector<Value> st = overSplitKeys(
          b, i, s, ValueRange{minusInf, f(b, 0.0f)},
          [&](OpBuilder &b, Value j, ValueRange a) -> SmallVector<Value> {
            Value sc = memref::LoadOp::create(b, loc, *scores,
                                              ValueRange{h, gi, j});
            SoftmaxStep t = softmaxStep(b, loc, a[0], a[1], sc);
            return {t.max, t.sum};
          });
      memref::StoreOp::create(b, loc, st[0], *maxes, ValueRange{h, gi, s});
      memref::StoreOp::create(b, loc, st[1], *sums, ValueRange{h, gi, s});
    });
    // 2b. The final (M, 1 / L) per (head, query).
    kernel({heads, n}, [&](OpBuilder &b, ValueRange iv) {
      Value h = iv[0], gi = iv[1], i = query(b, gi);
      SmallVector<Value> stats = overSplits(
          b, i, ValueRange{minusInf, f(b, 0.0f)},
          [&](OpBuilder &b, Value s, ValueRange a) -> SmallVector<Value> {
            Value m = memref::LoadOp::create(b, loc, *maxes, ValueRange{h, gi, s});
            Value l = memref::LoadOp::create(b, loc, *sums, ValueRange{h, gi, s});
            auto [newMax, keep, take, newSum] = mergeSplit(b, a[0], a[1], m, l);
            return {newMax, newSum};
          });
      memref::StoreOp::create(b, loc, stats[0], *finalMax, ValueRange{h, gi});
      memref::StoreOp::create(b, loc,
                              arith::DivFOp::create(b, loc, f(b, 1.0f), stats[1]),
                              *finalInv, ValueRange{h, gi});
    });
    // 2c. Each split's sum of f16(exp(s - M) / L) v.
    kernel({heads, n, splits, headDim}, [&](OpBuilder &b, ValueRange iv) {
      Value h = iv[0], gi = iv[1], s = iv[2], d = iv[3], i = query(b, gi);
      Value kvHead = arith::DivUIOp::create(b, loc, h, c(b, group));
      Value max = memref::LoadOp::create(b, loc, *finalMax, ValueRange{h, gi});
      Value inv = memref::LoadOp::create(b, loc, *finalInv, ValueRange{h, gi});
      SmallVector<Value> acc = overSplitKeys(
          b, i, s, ValueRange{f(b, 0.0f)},
          [&](OpBuilder &b, Value j, ValueRange a) -> SmallVector<Value> {
            Value sc = memref::LoadOp::create(b, loc, *scores,
                                              ValueRange{h, gi, j});
            Value p = mul(b, expDiff(b, sc, max), inv);
            p = arith::ExtFOp::create(
                b, loc, f32,
                arith::TruncFOp::create(b, loc, b.getF16Type(), p).getResult());
            return {math::FmaOp::create(b, loc, p, cacheAt(b, j, kvHead, 1, d),
                                        a[0])};
          });
      memref::StoreOp::create(b, loc, acc[0], *partials, ValueRange{h, gi, s, d});
    });
    // 3. Add the splits.
    kernel({heads, n, headDim}, [&](OpBuilder &b, ValueRange iv) {
      Value h = iv[0], gi = iv[1], d = iv[2], i = query(b, gi);
      SmallVector<Value> sum = overSplits(
          b, i, ValueRange{f(b, 0.0f)},
          [&](OpBuilder &b, Value s, ValueRange a) -> SmallVector<Value> {
            return {add(b, a[0], memref::LoadOp::create(b, loc, *partials,
                                                        ValueRange{h, gi, s, d}))};
          });
      memref::StoreOp::create(b, loc, sum[0], out, ValueRange{c(b, 0), h, i, d});
    });
  }
  return success();
}

struct PagedAttentionOpInterface
    : ReadOnlyOperands<PagedAttentionOpInterface, PagedAttentionOp> {

  LogicalResult bufferize(Operation *op, RewriterBase &rewriter,
                          const BufferizationOptions &options,
                          BufferizationState &state) const {
    auto attn = cast<PagedAttentionOp>(op);
    Location loc = op->getLoc();
    rewriter.setInsertionPoint(op);
    auto cacheType = cast<MemRefType>(attn.getCache().getType());
    auto qType = cast<RankedTensorType>(attn.getQ().getType());
    auto addr = CacheAddressing::load(rewriter, loc, cacheType,
                                      attn.getBlockTable(), attn.getStep(),
                                      options, state);
    FailureOr<Value> q =
        contiguousBuffer(rewriter, loc, attn.getQ(), options, state);
    if (failed(addr) || failed(q))
      return failure();
    auto outType = MemRefType::get(qType.getShape(), qType.getElementType());
    FailureOr<Value> out = options.createAlloc(rewriter, loc, outType, {});
    if (failed(out))
      return failure();

    int64_t heads = qType.getDimSize(1), seq = qType.getDimSize(2);
    int64_t headDim = qType.getDimSize(3);
    int64_t group = heads / cacheType.getDimSize(3);
    Type f32 = rewriter.getF32Type(), cacheElt = cacheType.getElementType();
    auto vecType = VectorType::get({headDim}, f32);
    auto halfVecType = VectorType::get({headDim}, rewriter.getF16Type());
    auto c = [&](OpBuilder &b, int64_t i) {
      return arith::ConstantIndexOp::create(b, loc, i).getResult();
    };
    auto f = [&](OpBuilder &b, float x) {
      return arith::ConstantOp::create(b, loc, b.getF32FloatAttr(x))
          .getResult();
    };
    Value cache = attn.getCache();
    Value layer = c(rewriter, attn.getLayer());
    VisibleKeys keys{addr->pos,
                     arith::AddIOp::create(rewriter, loc, addr->pos, addr->n),
                     int64_t(attn.getWindow()), int64_t(attn.getSinks())};
    if (forGpu(op)) {
      if (failed(splitKeysAttention(rewriter, loc, attn, *addr, keys, *q, *out,
                                    options)))
        return failure();
      replaceOpWithBufferizedValues(rewriter, op, *out);
      return success();
    }
    auto fast = arith::FastMathFlagsAttr::get(rewriter.getContext(),
                                              arith::FastMathFlags::reassoc);
    bool rounded = attn.getRoundedProbs();
    // Row `which` (0 keys, 1 values) of a cached token as parts: the whole
    // row as f32 (f32 and f16 caches), or for an i8 cache each group's
    // codes as f32 with the group's scale (value = codes * scale). The
    // kernel works part by part so that a scale costs one scalar multiply
    // per group: q . k = sum_g d_g (q_g . codes_g), and a value row joins
    // the accumulator as codes_g * (p d_g).
    struct Part {
      Value x, scale; // scale null: x is the value
    };
    bool int8 = cacheElt.isInteger(8);
    int64_t width = int8 ? kvInt8Group(headDim) : headDim;
    int64_t numParts = headDim / width;
    auto partType = VectorType::get({width}, f32);
    auto cacheRow = [&](OpBuilder &b, Value block, Value slot, Value kvHead,
                        int64_t which) {
      auto at = [&](int64_t off) {
        return SmallVector<Value>{block, layer, c(b, which), kvHead, slot,
                                  c(b, off)};
      };
      SmallVector<Part> parts;
      if (cacheElt.isF32()) {
        parts.push_back(
            {vector::LoadOp::create(b, loc, vecType, cache, at(0)), Value()});
      } else if (cacheElt.isF16()) {
        parts.push_back(
            {arith::ExtFOp::create(
                 b, loc, vecType,
                 vector::LoadOp::create(b, loc, halfVecType, cache, at(0))
                     .getResult()),
             Value()});
      } else {
        for (int64_t g = 0; g < numParts; ++g)
          parts.push_back(
              {arith::SIToFPOp::create(
                   b, loc, partType,
                   vector::LoadOp::create(
                       b, loc, VectorType::get({width}, b.getI8Type()), cache,
                       at(g * width))),
               vectorHalf(b, loc, cache, at(headDim + 2 * g))});
      }
      return parts;
    };

    scf::ParallelOp::create(
        rewriter, loc, ValueRange{c(rewriter, 0), c(rewriter, 0)},
        ValueRange{c(rewriter, heads), c(rewriter, seq)},
        ValueRange{c(rewriter, 1), c(rewriter, 1)},
        [&](OpBuilder &b, Location loc, ValueRange ivs) {
          Value h = ivs[0], i = ivs[1];
          Value kvHead = arith::DivUIOp::create(b, loc, h, c(b, group));
          auto ranges = keys.ranges(b, loc, i);
          Value qv = vector::LoadOp::create(b, loc, vecType, *q,
                                            ValueRange{c(b, 0), h, i, c(b, 0)});
          // With an f16 cache the query is rounded alike: q . k is a
          // product of f16 values accumulated in f32. (An i8 cache's keys
          // are widened exactly; the query stays f32.)
          if (cacheElt.isF16())
            qv = arith::ExtFOp::create(
                b, loc, vecType,
                arith::TruncFOp::create(b, loc, halfVecType, qv).getResult());
          SmallVector<Value> qParts;
          for (int64_t g = 0; g < numParts; ++g)
            qParts.push_back(numParts == 1
                                 ? qv
                                 : vector::ExtractStridedSliceOp::create(
                                       b, loc, qv, ArrayRef<int64_t>{g * width},
                                       ArrayRef<int64_t>{width},
                                       ArrayRef<int64_t>{1})
                                       .getResult());
          Value scale = f(b, attn.getScale().convertToFloat());
          float cap = attn.getSoftcap().convertToFloat();
          Value softcap = cap > 0 ? f(b, cap) : Value();

          // Key j's (pool block, slot) and scaled (soft-capped) score.
          auto score = [&](OpBuilder &b, Value j) {
            auto [block, slot] = addr->locate(b, loc, j);
            Value dot;
            for (auto [g, part] :
                 llvm::enumerate(cacheRow(b, block, slot, kvHead, 0))) {
              Value prod = arith::MulFOp::create(b, loc, qParts[g], part.x);
              Value d = vector::ReductionOp::create(
                  b, loc, vector::CombiningKind::ADD, prod, Value(),
                  fast.getValue());
              if (part.scale)
                d = arith::MulFOp::create(b, loc, d, part.scale);
              dot = dot ? arith::AddFOp::create(b, loc, dot, d).getResult() : d;
            }
            Value s = scaledScore(b, loc, dot, scale, softcap);
            return std::make_tuple(block, slot, s);
          };
          auto bcast = [&](OpBuilder &b, Type type, Value x) {
            return vector::BroadcastOp::create(b, loc, type, x).getResult();
          };
          // A value part's weight: p, times the part's scale.
          auto weight = [&](OpBuilder &b, const Part &part, Value p) {
            return part.scale ? arith::MulFOp::create(b, loc, p, part.scale)
                                    .getResult()
                              : p;
          };
          // One online-softmax step per key: (max, sum[, acc parts])
          // carried; `withValues` false gives the statistics pass alone.
          auto onlineRange = [&](OpBuilder &b, Value lo, Value hiV,
                                 ValueRange init, bool withValues) {
            auto loop = scf::ForOp::create(
                b, loc, lo, hiV, c(b, 1), init,
                [&](OpBuilder &b, Location loc, Value j, ValueRange st) {
                  auto [block, slot, s] = score(b, j);
                  SoftmaxStep t = softmaxStep(b, loc, st[0], st[1], s);
                  SmallVector<Value> next = {t.max, t.sum};
                  if (withValues)
                    for (auto [g, part] :
                         llvm::enumerate(cacheRow(b, block, slot, kvHead, 1))) {
                      Type type = part.x.getType();
                      next.push_back(arith::AddFOp::create(
                          b, loc,
                          arith::MulFOp::create(b, loc, st[2 + g],
                                                bcast(b, type, t.corr)),
                          arith::MulFOp::create(
                              b, loc, part.x,
                              bcast(b, type, weight(b, part, t.pexp)))));
                    }
                  scf::YieldOp::create(b, loc, next);
                });
            return SmallVector<Value>(loop.getResults());
          };
          // Second pass of the rounded form: acc += f16(exp(s - m) / l) v.
          auto weightedRange = [&](OpBuilder &b, Value lo, Value hiV,
                                   ValueRange acc, Value m, Value inv) {
            auto loop = scf::ForOp::create(
                b, loc, lo, hiV, c(b, 1), acc,
                [&](OpBuilder &b, Location loc, Value j, ValueRange st) {
                  auto [block, slot, s] = score(b, j);
                  Value p = arith::MulFOp::create(
                      b, loc,
                      math::ExpOp::create(
                          b, loc, arith::SubFOp::create(b, loc, s, m)),
                      inv);
                  p = arith::ExtFOp::create(
                      b, loc, f32,
                      arith::TruncFOp::create(b, loc, rewriter.getF16Type(), p)
                          .getResult());
                  SmallVector<Value> next;
                  for (auto [g, part] :
                       llvm::enumerate(cacheRow(b, block, slot, kvHead, 1)))
                    next.push_back(vector::FMAOp::create(
                        b, loc, part.x,
                        bcast(b, part.x.getType(), weight(b, part, p)),
                        st[g]));
                  scf::YieldOp::create(b, loc, next);
                });
            return SmallVector<Value>(loop.getResults());
          };
          auto zeros = [&](VectorType type) {
            return arith::ConstantOp::create(
                       b, loc, type,
                       DenseElementsAttr::get(type, b.getF32FloatAttr(0.0f)))
                .getResult();
          };
          VectorType accType = numParts == 1 ? vecType : partType;
          SmallVector<Value> zeroAcc(numParts, zeros(accType));
          SmallVector<Value> st = {
              f(b, -std::numeric_limits<float>::infinity()), f(b, 0.0f)};
          if (!rounded)
            st.append(zeroAcc);
          for (auto [rlo, rhi] : ranges)
            st = onlineRange(b, rlo, rhi, st, !rounded);
          Value inv = arith::DivFOp::create(b, loc, f(b, 1.0f), st[1]);
          SmallVector<Value> acc(ArrayRef<Value>(st).drop_front(2));
          if (rounded) {
            acc = zeroAcc;
            for (auto [rlo, rhi] : ranges)
              acc = weightedRange(b, rlo, rhi, acc, st[0], inv);
          }
          Value res = acc[0];
          if (numParts > 1) {
            res = zeros(vecType);
            for (auto [g, part] : llvm::enumerate(acc))
              res = vector::InsertStridedSliceOp::create(
                  b, loc, part, res, ArrayRef<int64_t>{int64_t(g) * width},
                  ArrayRef<int64_t>{1});
          }
          if (!rounded)
            res = arith::MulFOp::create(b, loc, res, bcast(b, vecType, inv));
          vector::StoreOp::create(b, loc, res, *out,
                                  ValueRange{c(b, 0), h, i, c(b, 0)});
        });
    replaceOpWithBufferizedValues(rewriter, op, *out);
    return success();
  }
};

} // namespace

void registerBufferizableOpInterfaceExternalModels(DialectRegistry &registry) {
  registry.addExtension(+[](MLIRContext *ctx, KilnDialect *) {
    ctx->loadDialect<arith::ArithDialect, math::MathDialect,
                     memref::MemRefDialect, scf::SCFDialect,
                     vector::VectorDialect>();
    QuantMatMulOp::attachInterface<QuantMatMulOpInterface>(*ctx);
    QuantGatherOp::attachInterface<QuantGatherOpInterface>(*ctx);
    KvStoreOp::attachInterface<KvStoreOpInterface>(*ctx);
    PagedAttentionOp::attachInterface<PagedAttentionOpInterface>(*ctx);
  });
}

} // namespace kiln
