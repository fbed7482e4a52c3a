//===- KvLayout.cpp - Past/present KV tensors to the paged cache ----------===//
//
// A decoder exported with its cache as graph inputs and outputs (HF's
// `past_key_values.N.key` in, `present.N.key` out, the new keys appended by
// a Concat on the sequence axis) becomes an LLM step function over the
// runtime's paged cache. The pass only rewrites what it proves: each
// attention's keys and values must be that concat of a graph input (seen
// through the grouped-query repeat), the mask causal; the imported past
// length is a placeholder that must not be used anywhere else.
//
//===----------------------------------------------------------------------===//
#include "dialects/kiln/KilnDialect.h"
#include "passes/Passes.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/IR/Builders.h"

namespace kiln {
#define GEN_PASS_DEF_KVLAYOUT
#include "passes/Passes.h.inc"
} // namespace kiln

using namespace mlir;
using namespace kiln;

namespace {

RankedTensorType tensorType(Value v) {
  return cast<RankedTensorType>(v.getType());
}

/// `x` through GQA's repeat: reshape [b, kv, 1, t, d] -> broadcast
/// [b, kv, rep, t, d] -> reshape [b, kv * rep, t, d].
Value stripRepeat(Value v) {
  auto outer = v.getDefiningOp<ReshapeOp>();
  auto bcast = outer ? outer.getInput().getDefiningOp<BroadcastOp>() : nullptr;
  auto inner = bcast ? bcast.getInput().getDefiningOp<ReshapeOp>() : nullptr;
  if (!inner)
    return v;
  auto x = tensorType(inner.getInput());
  auto e = tensorType(inner.getResult());
  if (x.getRank() != 4 || e.getRank() != 5 || e.getDimSize(2) != 1 ||
      e.getDimSize(0) != x.getDimSize(0) || e.getDimSize(1) != x.getDimSize(1) ||
      e.getDimSize(3) != x.getDimSize(2) || e.getDimSize(4) != x.getDimSize(3))
    return v;
  return inner.getInput();
}

/// If `mask` (broadcastable to [.., S, P + S]) is a causal mask — 0 where
/// query i (at position P + i) may see key j, hugely negative elsewhere —
/// its sliding window: 0 for none, else W with keys P + i - j < W visible.
/// The window shows in the mask whenever W < P + S; the importer makes P
/// the largest past a call can have, so a larger window never applies.
std::optional<int64_t> causalMaskWindow(Value mask, int64_t seq, int64_t past) {
  auto c = mask.getDefiningOp<ConstantOp>();
  auto attr = c ? dyn_cast<DenseFPElementsAttr>(c.getValue()) : nullptr;
  if (!attr)
    return std::nullopt;
  auto type = tensorType(mask);
  ArrayRef<int64_t> shape = type.getShape();
  if (shape.size() < 2 || shape[shape.size() - 2] != seq ||
      shape.back() != past + seq)
    return std::nullopt;
  for (int64_t d : shape.drop_back(2))
    if (d != 1)
      return std::nullopt;
  int64_t total = past + seq;
  auto values = attr.getValues<APFloat>();
  auto visible = [&](int64_t i, int64_t j) {
    return values[i * total + j].convertToDouble() == 0.0;
  };
  int64_t window = 0;
  for (int64_t i = 0; i < seq && !window; ++i)
    if (!visible(i, 0) && visible(i, past + i)) {
      int64_t lo = 0;
      while (lo < total && !visible(i, lo))
        ++lo;
      window = past + i - lo + 1;
    }
  for (int64_t i = 0; i < seq; ++i)
    for (int64_t j = 0; j < total; ++j) {
      bool want = j <= past + i && (!window || past + i - j < window);
      double m = values[i * total + j].convertToDouble();
      if (want ? m != 0.0 : m > -1e30)
        return std::nullopt;
    }
  return window;
}

struct KvLayoutPass : kiln::impl::KvLayoutBase<KvLayoutPass> {
  using KvLayoutBase::KvLayoutBase;

  struct Layer {
    AttentionOp attn;
    ConcatOp keys, values;
  };

  void runOnOperation() override {
    ModuleOp module = getOperation();
    if (blockSize <= 0 || maxContext <= 0) {
      module.emitError("kiln-kv-layout: block size and context must be > 0");
      return signalPassFailure();
    }
    if (!kvCacheElementType(&getContext(), kvDtype)) {
      module.emitError("kiln-kv-layout: kv-dtype must be f32, f16 or int8, "
                       "not '")
          << kvDtype << "'";
      return signalPassFailure();
    }
    MemRefType cacheType;
    bool any = false;
    for (func::FuncOp f : llvm::to_vector(module.getOps<func::FuncOp>())) {
      if (f.isExternal() || !f.isPublic())
        continue;
      FailureOr<bool> done = rewrite(f, cacheType);
      if (failed(done))
        return signalPassFailure();
      any |= *done;
    }
    if (any) {
      int64_t blocks = (maxContext + blockSize - 1) / blockSize;
      module->setAttr("kiln.max_context",
                      IntegerAttr::get(IntegerType::get(&getContext(), 64),
                                       blocks * blockSize));
    }
  }

  /// The concat feeding `kv` (keys or values of an attention), or null.
  static ConcatOp pastConcat(Value kv) {
    auto cat = stripRepeat(kv).getDefiningOp<ConcatOp>();
    if (!cat || cat.getAxis() != 2 || cat.getInputs().size() != 2 ||
        !isa<BlockArgument>(cat.getInputs()[0]))
      return nullptr;
    return cat;
  }

  FailureOr<bool> rewrite(func::FuncOp f, MemRefType &cacheType) {
    SmallVector<Layer> layers;
    bool failedMatch = false;
    f.walk([&](AttentionOp attn) {
      ConcatOp k = pastConcat(attn.getK()), v = pastConcat(attn.getV());
      if (!k && !v)
        return;
      if (!k || !v) {
        attn.emitError("kiln-kv-layout: keys and values of this attention "
                       "do not both come from past + new concats");
        failedMatch = true;
        return;
      }
      layers.push_back({attn, k, v});
    });
    if (failedMatch)
      return failure();
    if (layers.empty())
      return false;

    // One cache for every layer: [blocks, layers, 2, kv_heads, block, d].
    auto past0 = tensorType(layers[0].keys.getInputs()[0]);
    int64_t kvHeads = past0.getDimSize(1), headDim = past0.getDimSize(3);
    int64_t pastLen = past0.getDimSize(2);
    int64_t blocks = (maxContext + blockSize - 1) / blockSize;
    Type elt = kvCacheElementType(&getContext(), kvDtype);
    auto type = MemRefType::get({blocks, int64_t(layers.size()), 2, kvHeads,
                                 blockSize, kvCacheRowElements(elt, headDim)},
                                elt);
    if (cacheType && cacheType != type)
      return f.emitError("kiln-kv-layout: functions disagree on the cache "
                         "shape (")
             << cacheType << " vs " << type << ")";
    cacheType = type;

    // The remaining inputs must be the tokens and their positions.
    llvm::SmallDenseSet<unsigned> pastArgs;
    for (Layer &l : layers)
      for (ConcatOp c : {l.keys, l.values})
        pastArgs.insert(cast<BlockArgument>(c.getInputs()[0]).getArgNumber());
    SmallVector<unsigned> keep;
    for (unsigned i = 0; i < f.getNumArguments(); ++i)
      if (!pastArgs.contains(i))
        keep.push_back(i);
    if (keep.size() != 2)
      return f.emitError("kiln-kv-layout: besides the past keys and values "
                         "the graph must take exactly the token ids and "
                         "position ids (it takes ")
             << keep.size() << " other inputs)";
    auto tokensType = dyn_cast<RankedTensorType>(f.getArgument(keep[0]).getType());
    int64_t seq = tokensType ? tokensType.getDimSize(1) : 0;
    for (unsigned i : keep) {
      auto t = dyn_cast<RankedTensorType>(f.getArgument(i).getType());
      if (!t || t.getRank() != 2 || t.getDimSize(0) != 1 ||
          t.getDimSize(1) != seq || !t.getElementType().isInteger(64))
        return f.emitError("kiln-kv-layout: input ")
               << i << " must be i64 [1, " << seq
               << "] (token ids, then position ids)";
    }

    OpBuilder b(f.getContext());
    Block &entry = f.getBody().front();
    auto i64 = b.getI64Type();
    unsigned tableIdx = f.getNumArguments();
    Location loc = f.getLoc();
    if (failed(f.insertArgument(tableIdx,
                                RankedTensorType::get({blocks}, b.getI32Type()),
                                {}, loc)) ||
        failed(f.insertArgument(tableIdx + 1, RankedTensorType::get({2}, i64),
                                {}, loc)) ||
        failed(f.insertArgument(tableIdx + 2, type, {}, loc)))
      return f.emitError("kiln-kv-layout: cannot add the cache arguments");
    Value table = entry.getArgument(tableIdx);
    Value step = entry.getArgument(tableIdx + 1);
    Value cache = entry.getArgument(tableIdx + 2);

    for (auto [index, l] : llvm::enumerate(layers)) {
      AttentionOp attn = l.attn;
      auto q = tensorType(attn.getQ());
      if (q.getDimSize(0) != 1 || q.getDimSize(2) != seq)
        return attn.emitError("kiln-kv-layout: queries must be [1, heads, ")
               << seq << ", d] (batch 1)";
      int64_t window = attn.getWindow();
      bool causal = attn.getCausal() && !attn.getMask();
      if (!causal && attn.getMask() && !attn.getCausal()) {
        std::optional<int64_t> w =
            causalMaskWindow(attn.getMask(), seq, pastLen);
        causal = w.has_value();
        if (w && *w)
          window = *w;
      }
      if (!causal)
        return attn.emitError("kiln-kv-layout: the attention mask is not the "
                              "causal (or sliding-window) mask of the new "
                              "tokens over the cache");
      for (ConcatOp c : {l.keys, l.values}) {
        auto past = tensorType(c.getInputs()[0]);
        if (past.getDimSize(1) != kvHeads || past.getDimSize(3) != headDim ||
            past.getDimSize(2) != pastLen)
          return c.emitError("kiln-kv-layout: layer ")
                 << index << " has a differently shaped cache";
      }
      b.setInsertionPoint(attn);
      Value newK = l.keys.getInputs()[1], newV = l.values.getInputs()[1];
      KvStoreOp::create(b, attn.getLoc(), cache, newK, newV, table, step,
                        b.getI64IntegerAttr(index));
      Value out = PagedAttentionOp::create(
          b, attn.getLoc(), attn.getType(), attn.getQ(), cache, table, step,
          b.getI64IntegerAttr(index), attn.getScaleAttr(),
          b.getI64IntegerAttr(window), attn.getSinksAttr(), UnitAttr(),
          attn.getSoftcapAttr());
      attn.replaceAllUsesWith(out);
      attn.erase();
    }

    // Present outputs leave the signature; nothing else may read them.
    auto ret = cast<func::ReturnOp>(entry.getTerminator());
    SmallVector<Value> results;
    SmallVector<Attribute> outNames;
    auto oldOutNames = f->getAttrOfType<ArrayAttr>("kiln.output_names");
    llvm::SmallPtrSet<Operation *, 8> concats;
    for (Layer &l : layers) {
      concats.insert(l.keys);
      concats.insert(l.values);
    }
    for (auto [i, v] : llvm::enumerate(ret.getOperands())) {
      if (v.getDefiningOp() && concats.contains(v.getDefiningOp()))
        continue;
      results.push_back(v);
      if (oldOutNames)
        outNames.push_back(oldOutNames[i]);
    }
    if (results.size() != 1)
      return f.emitError("kiln-kv-layout: besides the present keys and "
                         "values the graph must return only the logits");
    // Dead repeat chains go first, so the concats' remaining users show.
    SmallVector<Operation *> dead;
    bool changed = true;
    while (changed) {
      changed = false;
      for (Operation &op : llvm::make_early_inc_range(llvm::reverse(entry)))
        if (isa<ReshapeOp, BroadcastOp>(op) && op.use_empty()) {
          op.erase();
          changed = true;
        }
    }
    b.setInsertionPoint(ret);
    Value logits = results[0];
    auto lt = tensorType(logits);
    if (lt.getRank() != 3 || lt.getDimSize(0) != 1 || lt.getDimSize(1) != seq)
      return f.emitError("kiln-kv-layout: logits must be [1, ")
             << seq << ", vocab], got " << lt;
    int64_t vocab = lt.getDimSize(2);
    if (seq > 1) {
      // The last real token's row: index step[1] - 1 of the chunk.
      auto one = RankedTensorType::get({1}, i64);
      Value n = SliceOp::create(b, loc, one, step, ArrayRef<int64_t>{1},
                                ArrayRef<int64_t>{1});
      Value last = SubOp::create(
          b, loc, one, n,
          ConstantOp::create(b, loc, one, DenseElementsAttr::get(one, int64_t(1))));
      logits = GatherOp::create(b, loc,
                                RankedTensorType::get({1, 1, vocab},
                                                      lt.getElementType()),
                                logits, last, b.getI64IntegerAttr(1));
    }
    logits = ReshapeOp::create(
        b, loc, RankedTensorType::get({1, vocab}, lt.getElementType()), logits);
    func::ReturnOp::create(b, ret.getLoc(), logits);
    ret.erase();
    for (Operation *c : concats) {
      if (!c->use_empty())
        return c->emitError("kiln-kv-layout: this past + new concat has a use "
                            "besides attention and the present output: ")
               << *(*c->getUsers().begin());
      c->erase();
    }
    // Past inputs: nothing may read the placeholder anymore.
    SmallVector<unsigned> pastSorted(pastArgs.begin(), pastArgs.end());
    llvm::sort(pastSorted);
    for (unsigned i : pastSorted)
      if (!entry.getArgument(i).use_empty())
        return f.emitError("kiln-kv-layout: past input ")
               << i << " is used besides its concat: "
               << *(*entry.getArgument(i).getUsers().begin());
    llvm::BitVector erase(f.getNumArguments());
    for (unsigned i : pastSorted)
      erase.set(i);
    if (failed(f.eraseArguments(erase)))
      return f.emitError("kiln-kv-layout: cannot drop the past inputs");
    f.setType(FunctionType::get(f.getContext(), entry.getArgumentTypes(),
                                {logits.getType()}));
    SmallVector<Attribute> inNames = {b.getStringAttr("tokens"),
                                      b.getStringAttr("positions"),
                                      b.getStringAttr("block_table"),
                                      b.getStringAttr("step")};
    f->setAttr("kiln.input_names", b.getArrayAttr(inNames));
    f->setAttr("kiln.output_names", b.getArrayAttr({b.getStringAttr("logits")}));
    return true;
  }
};

} // namespace
