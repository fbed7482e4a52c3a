//===- QuantizeWeights.cpp - Weight-only int8 / int4 quantization ---------===//
//
// `kiln-compile --quantize-weights=FORMAT`: every kiln.matmul whose right
// operand is an f32 weight W[K, N] (K a multiple of 32) becomes a
// kiln.quant_matmul over the same weight quantized group-wise, stored
// packed in the artifact: the rows of W^T ([N, K], what quant_matmul
// reads) in blocks of 32 values, in GGUF's block layouts, so the packed
// kernels that run GGUF files on every target run these too:
//   q8_0  int8, symmetric: {f16 d; i8 q[32]}, value d * q
//   q4_0  int4, symmetric: {f16 d; u8 q[16]}, value d * (nibble - 8)
//   q4_1  int4 with a minimum: {f16 d; f16 m; u8 q[16]}, value d * nibble + m
// (nibble j of 0..15 is byte j's low half, nibble j + 16 its high half).
// The arithmetic is llama.cpp's reference quantizer, so a model quantized
// here equals the same weights quantized by gguf-py (checked by the tests).
// The left operand [..., M, K] is reshaped to the [rows, K] quant_matmul
// takes, and the result back. The f32 weight stays in the artifact only
// if something else still reads it (a tied embedding, say).
//
//===----------------------------------------------------------------------===//
#include "passes/Passes.h"

#include "compiler/WeightStore.h"
#include "dialects/kiln/KilnDialect.h"

#include "mlir/IR/Builders.h"
#include "mlir/IR/BuiltinOps.h"

#include "llvm/ADT/APFloat.h"
#include "llvm/ADT/StringSet.h"

#include <algorithm>
#include <cmath>
#include <cstring>

using namespace mlir;

namespace kiln {
namespace {

constexpr int64_t kGroup = 32;

uint16_t toHalf(float f) {
  llvm::APFloat v(f);
  bool lost;
  v.convert(llvm::APFloat::IEEEhalf(), llvm::APFloat::rmNearestTiesToEven,
            &lost);
  return static_cast<uint16_t>(v.bitcastToAPInt().getZExtValue());
}

void putHalf(char *p, float f) {
  uint16_t h = toHalf(f);
  std::memcpy(p, &h, 2);
}

/// One block of 32 values `x` into `out` (quantBlockBytes(format) bytes).
void quantizeBlock(llvm::StringRef format, const float *x, char *out) {
  if (format == "q8_0") {
    float amax = 0;
    for (int j = 0; j < kGroup; ++j)
      amax = std::max(amax, std::fabs(x[j]));
    float d = amax / 127, id = d ? 1 / d : 0;
    putHalf(out, d);
    for (int j = 0; j < kGroup; ++j)
      out[2 + j] = static_cast<char>(static_cast<int8_t>(std::round(x[j] * id)));
    return;
  }
  auto nibbles = [&](float offset, float id, float bias, char *q) {
    for (int j = 0; j < kGroup / 2; ++j) {
      auto code = [&](float v) {
        return std::min(15, static_cast<int>((v - offset) * id + bias));
      };
      q[j] = static_cast<char>(code(x[j]) | code(x[j + kGroup / 2]) << 4);
    }
  };
  if (format == "q4_0") {
    // d from the value of largest magnitude, with its sign: it maps to -8.
    float amax = 0, max = 0;
    for (int j = 0; j < kGroup; ++j)
      if (std::fabs(x[j]) > amax) {
        amax = std::fabs(x[j]);
        max = x[j];
      }
    float d = max / -8, id = d ? 1 / d : 0;
    putHalf(out, d);
    nibbles(0, id, 8.5f, out + 2);
    return;
  }
  // q4_1
  float min = x[0], max = x[0];
  for (int j = 1; j < kGroup; ++j) {
    min = std::min(min, x[j]);
    max = std::max(max, x[j]);
  }
  float d = (max - min) / 15, id = d ? 1 / d : 0;
  putHalf(out, d);
  putHalf(out + 2, min);
  nibbles(min, id, 0.5f, out + 4);
}

struct QuantizeWeightsPass
    : PassWrapper<QuantizeWeightsPass, OperationPass<ModuleOp>> {
  MLIR_DEFINE_EXPLICIT_INTERNAL_INLINE_TYPE_ID(QuantizeWeightsPass)

  QuantizeWeightsPass(WeightStore &store, std::string format)
      : store(store), format(std::move(format)) {}

  StringRef getArgument() const final { return "kiln-quantize-weights"; }
  StringRef getDescription() const final {
    return "matmuls by f32 weights become quant_matmuls by packed int8/int4 "
           "blocks";
  }

  /// The packed [N, K] weight for W[K, N] named `name`, made once.
  FailureOr<std::string> packed(WeightOp w, int64_t k, int64_t n) {
    std::string key = (w.getName() + "." + format).str();
    if (store.contains(key))
      return key;
    llvm::ArrayRef<char> bytes = store.lookup(w.getName());
    if (static_cast<int64_t>(bytes.size()) != k * n * 4)
      return w.emitOpError("quantize-weights: weight '")
             << w.getName() << "' has " << bytes.size() << " bytes, not "
             << k * n * 4;
    int64_t rowBytes = quantRowBytes(format, k), blockBytes =
                                                      quantBlockBytes(format);
    std::vector<char> out(n * rowBytes);
    std::vector<float> row(k);
    for (int64_t r = 0; r < n; ++r) {
      for (int64_t i = 0; i < k; ++i)
        std::memcpy(&row[i], bytes.data() + 4 * (i * n + r), 4);
      for (int64_t blk = 0; blk < k / kGroup; ++blk)
        quantizeBlock(format, row.data() + blk * kGroup,
                      out.data() + r * rowBytes + blk * blockBytes);
    }
    store.addOwned(key, std::move(out));
    return key;
  }

  void runOnOperation() override {
    SmallVector<MatMulOp> matmuls;
    getOperation().walk([&](MatMulOp m) { matmuls.push_back(m); });
    for (MatMulOp m : matmuls) {
      auto w = m.getRhs().getDefiningOp<WeightOp>();
      auto wt = cast<RankedTensorType>(m.getRhs().getType());
      auto xt = cast<RankedTensorType>(m.getLhs().getType());
      auto rt = cast<RankedTensorType>(m.getResult().getType());
      if (!w || wt.getRank() != 2 || !wt.getElementType().isF32() ||
          !xt.hasStaticShape() || !xt.getElementType().isF32() ||
          !rt.hasStaticShape())
        continue;
      int64_t k = wt.getDimSize(0), n = wt.getDimSize(1);
      if (k % kGroup != 0) {
        if (leftF32.insert(w.getName()).second)
          leftExample = (w.getName() + " [" + llvm::Twine(k) + ", " +
                         llvm::Twine(n) + "]")
                            .str();
        continue;
      }
      FailureOr<std::string> key = packed(w, k, n);
      if (failed(key))
        return signalPassFailure();
      OpBuilder b(m);
      Location loc = m.getLoc();
      int64_t rows = xt.getNumElements() / k;
      auto f32 = b.getF32Type();
      Value x = m.getLhs();
      if (xt.getRank() != 2)
        x = ReshapeOp::create(b, loc, RankedTensorType::get({rows, k}, f32), x);
      Value q = WeightOp::create(
          b, w.getLoc(),
          RankedTensorType::get({n, quantRowBytes(format, k)}, b.getI8Type()),
          b.getStringAttr(*key));
      Value y = QuantMatMulOp::create(b, loc, RankedTensorType::get({rows, n}, f32),
                                      x, q, b.getStringAttr(format),
                                      b.getStringAttr("f32"));
      if (rt.getRank() != 2)
        y = ReshapeOp::create(b, loc, rt, y);
      m.getResult().replaceAllUsesWith(y);
      m.erase();
      if (w->use_empty())
        w.erase();
    }
    if (!leftF32.empty())
      mlir::emitWarning(getOperation().getLoc())
          << "--quantize-weights: " << leftF32.size()
          << " matmul weight(s) stay f32, their inner dimension not a "
             "multiple of 32 (e.g. "
          << leftExample << ")";
  }

  llvm::StringSet<> leftF32;
  std::string leftExample;

  WeightStore &store;
  std::string format;
};

} // namespace

std::unique_ptr<Pass> createQuantizeWeights(WeightStore &store,
                                            llvm::StringRef format) {
  return std::make_unique<QuantizeWeightsPass>(store, format.str());
}

} // namespace kiln
