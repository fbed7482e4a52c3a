//===- OnnxImporter.cpp - ONNX model to the kiln dialect ------------------===//
//
// Walks the ONNX graph in order, giving every value a static shape. Values
// known at compile time (initializers, Constant nodes, shape arithmetic) are
// kept as HostTensors and folded on the host; the rest become kiln ops.
// Large constants become `kiln.weight` ops whose bytes stay in the model
// file (mmap-ed) and go to the artifact without passing through the IR.
//
//===----------------------------------------------------------------------===//
#include "compiler/import/OnnxImporter.h"
#include "dialects/kiln/KilnDialect.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/IR/Builders.h"
#include "mlir/IR/BuiltinAttributes.h"
#include "mlir/IR/Diagnostics.h"
#include "llvm/ADT/StringSet.h"
#include "llvm/Support/MemoryBuffer.h"
#include "llvm/Support/Path.h"

#include <onnx/defs/parser.h>
#include <onnx/onnx_pb.h>

#include <cmath>
#include <functional>
#include <numeric>
#include <optional>

using namespace mlir;

namespace kiln {
namespace {

/// Constants at most this large stay in the IR as attributes; larger ones
/// become weights.
constexpr int64_t kMaxInlineElements = 64;
/// Host folding stops at this many elements: beyond it the work belongs in
/// generated code.
constexpr int64_t kMaxFoldElements = 1 << 16;

using Shape = std::vector<int64_t>;

struct Val {
  Value value;                     // null until materialized
  std::optional<HostTensor> host;  // set when known at compile time
  /// Shared by copies of a host value, so it is materialized once.
  std::shared_ptr<Value> slot;
  std::string name;                // initializer name, for weights
  int32_t dtype = kFloat;
  Shape shape;
  int64_t numel() const {
    return std::accumulate(shape.begin(), shape.end(), int64_t(1),
                           std::multiplies<int64_t>());
  }
};

Shape strides(const Shape &shape) {
  Shape s(shape.size(), 1);
  for (int64_t i = static_cast<int64_t>(shape.size()) - 2; i >= 0; --i)
    s[i] = s[i + 1] * shape[i + 1];
  return s;
}

int64_t product(const Shape &shape) {
  return std::accumulate(shape.begin(), shape.end(), int64_t(1),
                         std::multiplies<int64_t>());
}

std::optional<Shape> broadcastShapes(const std::vector<const Shape *> &shapes) {
  size_t rank = 0;
  for (const Shape *s : shapes)
    rank = std::max(rank, s->size());
  Shape out(rank, 1);
  for (const Shape *s : shapes) {
    size_t off = rank - s->size();
    for (size_t i = 0; i < s->size(); ++i) {
      int64_t d = (*s)[i];
      int64_t &o = out[off + i];
      if (d == o || d == 1)
        continue;
      if (o == 1)
        o = d;
      else
        return std::nullopt;
    }
  }
  return out;
}

/// Flat index into a tensor of `shape` broadcast to `outShape`, for the
/// out element at `outIndex` (already unravelled).
int64_t broadcastIndex(const Shape &shape, const Shape &outIndex) {
  size_t off = outIndex.size() - shape.size();
  int64_t idx = 0;
  for (size_t i = 0; i < shape.size(); ++i)
    idx = idx * shape[i] + (shape[i] == 1 ? 0 : outIndex[off + i]);
  return idx;
}

void unravel(int64_t flat, const Shape &shape, Shape &index) {
  index.resize(shape.size());
  for (int64_t i = static_cast<int64_t>(shape.size()) - 1; i >= 0; --i) {
    index[i] = shape[i] ? flat % shape[i] : 0;
    flat = shape[i] ? flat / shape[i] : 0;
  }
}

std::string shapeStr(const Shape &s) {
  std::string r = "[";
  for (size_t i = 0; i < s.size(); ++i)
    r += (i ? "," : "") + std::to_string(s[i]);
  return r + "]";
}

class Importer {
public:
  Importer(MLIRContext &ctx, WeightStore &store, const OnnxImportOptions &opts,
           std::string baseDir, std::string modelName)
      : ctx(ctx), store(store), opts(opts), baseDir(std::move(baseDir)),
        modelName(std::move(modelName)), b(&ctx) {}

  OwningOpRef<ModuleOp> run(std::shared_ptr<onnx::ModelProto> model);

private:
  // Types.
  Type elementType(int32_t dtype) {
    switch (dtype) {
    case kFloat: return b.getF32Type();
    case kDouble: return b.getF64Type();
    case kFloat16: return b.getF16Type();
    case kBool: return b.getI1Type();
    case kInt8: return b.getIntegerType(8);
    case kInt16: return b.getIntegerType(16);
    case kInt32: return b.getIntegerType(32);
    case kInt64: return b.getIntegerType(64);
    default: return {};
    }
  }
  RankedTensorType tensorType(const Shape &shape, int32_t dtype) {
    return RankedTensorType::get(shape, elementType(dtype));
  }
  static std::string dtypeName(int32_t d) {
    return onnx::TensorProto_DataType_Name(
        static_cast<onnx::TensorProto_DataType>(d));
  }

  // Diagnostics.
  Location nodeLoc(const onnx::NodeProto &n) {
    std::string name = n.name().empty() && n.output_size() ? n.output(0)
                                                            : n.name();
    return NameLoc::get(StringAttr::get(&ctx, name),
                        FileLineColLoc::get(&ctx, modelName, 0, 0));
  }
  InFlightDiagnostic err(const onnx::NodeProto &n) {
    std::string name = n.name().empty() && n.output_size() ? n.output(0)
                                                            : n.name();
    return emitError(nodeLoc(n)) << "node '" << name << "' (" << n.op_type()
                                 << "): ";
  }

  // Tensors from the model.
  FailureOr<HostTensor> decodeTensor(const onnx::TensorProto &t,
                                     llvm::function_ref<InFlightDiagnostic()> e);
  FailureOr<Val> graphInput(const onnx::ValueInfoProto &vi);

  // Values.
  Val hostVal(HostTensor t) {
    Val v;
    v.dtype = t.dtype;
    v.shape = t.shape;
    v.host = std::move(t);
    v.slot = std::make_shared<Value>();
    return v;
  }
  Val opVal(Value value, int32_t dtype, Shape shape) {
    Val v;
    v.value = value;
    v.dtype = dtype;
    v.shape = std::move(shape);
    return v;
  }
  Value materialize(Val &v, Location loc);
  const Val *input(const onnx::NodeProto &n, int i) {
    if (i >= n.input_size() || n.input(i).empty())
      return nullptr;
    auto it = values.find(n.input(i));
    return it == values.end() ? nullptr : &it->second;
  }
  Val &inputRef(const onnx::NodeProto &n, int i) {
    return values.find(n.input(i))->second;
  }
  FailureOr<std::vector<int64_t>> constInts(const onnx::NodeProto &n, int i,
                                            const char *what);

  // Attributes.
  const onnx::AttributeProto *attr(const onnx::NodeProto &n, StringRef name) {
    for (const auto &a : n.attribute())
      if (a.name() == name)
        return &a;
    return nullptr;
  }
  int64_t attrInt(const onnx::NodeProto &n, StringRef name, int64_t def) {
    const auto *a = attr(n, name);
    return a ? a->i() : def;
  }
  float attrFloat(const onnx::NodeProto &n, StringRef name, float def) {
    const auto *a = attr(n, name);
    return a ? a->f() : def;
  }
  std::optional<std::vector<int64_t>> attrInts(const onnx::NodeProto &n,
                                               StringRef name) {
    const auto *a = attr(n, name);
    if (!a)
      return std::nullopt;
    return std::vector<int64_t>(a->ints().begin(), a->ints().end());
  }
  std::string attrString(const onnx::NodeProto &n, StringRef name,
                         std::string def) {
    const auto *a = attr(n, name);
    return a ? a->s() : def;
  }

  LogicalResult importNode(const onnx::NodeProto &n);
  /// Maps a possibly negative ONNX axis into [0, rank); an error otherwise.
  LogicalResult normalizeAxis(const onnx::NodeProto &n, int64_t &axis,
                              int64_t rank) {
    if (axis < -rank || axis >= rank)
      return err(n) << "axis " << axis << " out of range for rank " << rank;
    if (axis < 0)
      axis += rank;
    return success();
  }
  LogicalResult define(const onnx::NodeProto &n, int i, Val v) {
    // Empty compile-time values (e.g. an empty axes list) are fine; empty
    // run-time tensors are not supported yet.
    if (!v.host && llvm::is_contained(v.shape, 0))
      return err(n) << "output " << i << " is an empty tensor "
                    << shapeStr(v.shape) << ", which Kiln does not support yet";
    if (i < n.output_size() && !n.output(i).empty())
      values[n.output(i)] = std::move(v);
    return success();
  }

  // Op families.
  LogicalResult unary(const onnx::NodeProto &n, StringRef kind);
  LogicalResult binary(const onnx::NodeProto &n, StringRef kind);
  LogicalResult variadic(const onnx::NodeProto &n, StringRef kind);
  LogicalResult reshapeTo(const onnx::NodeProto &n, const Val &in, Shape shape,
                          int out = 0);
  LogicalResult matmul(const onnx::NodeProto &n);
  LogicalResult gemm(const onnx::NodeProto &n);
  LogicalResult reduce(const onnx::NodeProto &n, StringRef kind);
  LogicalResult softmax(const onnx::NodeProto &n, bool log);
  LogicalResult layerNorm(const onnx::NodeProto &n);
  LogicalResult rmsNormalization(const onnx::NodeProto &n);
  LogicalResult simplifiedLayerNorm(const onnx::NodeProto &n, bool skip);
  LogicalResult rotaryEmbedding(const onnx::NodeProto &n);
  FailureOr<Value> rope(const onnx::NodeProto &n, Val &x, Val &cosC,
                        Val &sinC, const Val *pos, int64_t rot,
                        bool interleaved);
  LogicalResult contribRotaryEmbedding(const onnx::NodeProto &n);
  LogicalResult groupQueryAttention(const onnx::NodeProto &n);
  LogicalResult matMulNBits(const onnx::NodeProto &n);
  /// [b, s, heads * d] -> [b, heads, s, d] and back.
  Value splitHeads(Location loc, Value x, int32_t dtype, int64_t batch,
                   int64_t seq, int64_t heads, int64_t dim);
  Value mergeHeads(Location loc, Value x, int32_t dtype, int64_t batch,
                   int64_t seq, int64_t heads, int64_t dim);
  LogicalResult attention(const onnx::NodeProto &n);
  LogicalResult slice(const onnx::NodeProto &n);
  LogicalResult split(const onnx::NodeProto &n);
  LogicalResult gather(const onnx::NodeProto &n);
  LogicalResult concat(const onnx::NodeProto &n);
  LogicalResult constant(const onnx::NodeProto &n);
  LogicalResult composedReduce(const onnx::NodeProto &n, StringRef kind);
  LogicalResult argReduce(const onnx::NodeProto &n, bool isMax);
  LogicalResult gatherElements(const onnx::NodeProto &n);
  LogicalResult activation(const onnx::NodeProto &n, StringRef kind);
  /// Reduce axes of a Reduce* node (attribute or input by opset), sorted,
  /// non-negative; empty with noop means "return the input".
  FailureOr<std::vector<int64_t>> reduceAxes(const onnx::NodeProto &n,
                                             StringRef kind, int64_t rank,
                                             bool &noop);
  /// A rank-0 constant of `dtype`, materialized.
  Value scalar(int32_t dtype, double v, Location loc) {
    Val s = hostVal(HostTensor::fromDoubles(dtype, {}, {v}));
    return materialize(s, loc);
  }

  /// Emits a slice (host or kiln) with full per-dim starts/steps.
  Val sliceVal(Val &in, const Shape &starts, const Shape &steps,
               const Shape &outShape, Location loc);
  /// Builds `Op(operands) -> type` for a kiln op class.
  template <typename OpTy, typename... Args>
  Value make(Location loc, RankedTensorType t, Args &&...args) {
    return OpTy::create(b, loc, t, std::forward<Args>(args)...).getResult();
  }

  MLIRContext &ctx;
  WeightStore &store;
  const OnnxImportOptions &opts;
  std::string baseDir, modelName;
  OpBuilder b;
  std::map<std::string, Val> values;
  int64_t opset = 1;
  int64_t constCounter = 0;
};

//===----------------------------------------------------------------------===//
// Tensors and values
//===----------------------------------------------------------------------===//

FailureOr<HostTensor>
Importer::decodeTensor(const onnx::TensorProto &t,
                       llvm::function_ref<InFlightDiagnostic()> e) {
  int32_t dtype = t.data_type();
  size_t es = dtypeSize(dtype);
  if (!es)
    return e() << "tensor '" << t.name() << "' has unsupported dtype "
               << dtypeName(dtype);
  HostTensor h;
  h.dtype = dtype;
  for (int64_t d : t.dims()) {
    if (d < 0)
      return e() << "tensor '" << t.name() << "' has a negative dim";
    h.shape.push_back(d);
  }
  int64_t n = h.numel();
  size_t want = static_cast<size_t>(n) * es;
  if (t.data_location() == onnx::TensorProto::EXTERNAL) {
    std::string location;
    int64_t offset = 0, length = -1;
    for (const auto &kv : t.external_data()) {
      if (kv.key() == "location")
        location = kv.value();
      else if (kv.key() == "offset")
        offset = std::stoll(kv.value());
      else if (kv.key() == "length")
        length = std::stoll(kv.value());
    }
    if (location.empty() || location.find("..") != std::string::npos)
      return e() << "tensor '" << t.name()
                 << "' has a bad external data location '" << location << "'";
    llvm::SmallString<256> path(baseDir);
    llvm::sys::path::append(path, location);
    if (length < 0)
      length = static_cast<int64_t>(want);
    if (static_cast<size_t>(length) != want)
      return e() << "tensor '" << t.name() << "' external data has " << length
                 << " bytes, its shape needs " << want;
    auto file = llvm::MemoryBuffer::getFile(path, /*IsText=*/false,
                                            /*RequiresNullTerminator=*/false);
    if (!file)
      return e() << "cannot read external data '" << path.str()
                 << "': " << file.getError().message();
    if (static_cast<uint64_t>(offset) + want > (*file)->getBufferSize())
      return e() << "tensor '" << t.name() << "' external data [" << offset
                 << ", +" << want << ") is past the end of '" << path.str()
                 << "'";
    std::shared_ptr<const llvm::MemoryBuffer> buf(std::move(*file));
    h.data = buf->getBufferStart() + offset;
    h.size = want;
    store.keepAlive(buf);
    return h;
  }
  if (t.has_raw_data()) {
    if (t.raw_data().size() != want)
      return e() << "tensor '" << t.name() << "' has " << t.raw_data().size()
                 << " bytes of data, its shape needs " << want;
    h.data = t.raw_data().data(); // the ModelProto outlives the compile
    h.size = want;
    return h;
  }
  auto check = [&](int count) -> LogicalResult {
    if (count != n)
      return e() << "tensor '" << t.name() << "' has " << count
                 << " values, its shape needs " << n;
    return success();
  };
  switch (dtype) {
  case kFloat: {
    if (failed(check(t.float_data_size())))
      return failure();
    std::vector<char> bytes(want);
    std::memcpy(bytes.data(), t.float_data().data(), want);
    return HostTensor::fromBytes(dtype, h.shape, std::move(bytes));
  }
  case kDouble: {
    if (failed(check(t.double_data_size())))
      return failure();
    std::vector<char> bytes(want);
    std::memcpy(bytes.data(), t.double_data().data(), want);
    return HostTensor::fromBytes(dtype, h.shape, std::move(bytes));
  }
  case kInt64:
    if (failed(check(t.int64_data_size())))
      return failure();
    return HostTensor::fromInts(
        dtype, h.shape, std::vector<int64_t>(t.int64_data().begin(),
                                             t.int64_data().end()));
  case kFloat16: {
    if (failed(check(t.int32_data_size())))
      return failure();
    std::vector<char> bytes(want);
    for (int64_t i = 0; i < n; ++i) {
      uint16_t bits = static_cast<uint16_t>(t.int32_data(i));
      std::memcpy(bytes.data() + 2 * i, &bits, 2);
    }
    return HostTensor::fromBytes(dtype, h.shape, std::move(bytes));
  }
  default:
    if (failed(check(t.int32_data_size())))
      return failure();
    return HostTensor::fromInts(
        dtype, h.shape, std::vector<int64_t>(t.int32_data().begin(),
                                             t.int32_data().end()));
  }
}

Value Importer::materialize(Val &v, Location loc) {
  if (v.value)
    return v.value;
  if (*v.slot)
    return v.value = *v.slot;
  const HostTensor &h = *v.host;
  RankedTensorType type = tensorType(h.shape, h.dtype);
  int64_t n = h.numel();
  bool splat = n > 0;
  for (int64_t i = 1; splat && i < n; ++i)
    splat = isFloatDType(h.dtype) ? h.getF(i) == h.getF(0)
                                  : h.getI(i) == h.getI(0);
  if (n <= kMaxInlineElements || splat ||
      (h.owned && n <= opts.maxInlineFolded)) {
    DenseElementsAttr attr;
    Type et = type.getElementType();
    if (h.dtype == kBool) {
      SmallVector<bool> bits;
      for (int64_t i = 0; i < (splat ? 1 : n); ++i)
        bits.push_back(h.getI(i));
      attr = DenseElementsAttr::get(type, bits);
    } else if (splat) {
      Attribute s = isFloatDType(h.dtype)
                        ? Attribute(b.getFloatAttr(et, h.getF(0)))
                        : Attribute(b.getIntegerAttr(et, h.getI(0)));
      attr = DenseElementsAttr::get(type, s);
    } else {
      attr = DenseElementsAttr::getFromRawBuffer(type, h.bytes());
    }
    v.value = *v.slot = ConstantOp::create(b, loc, type, attr).getResult();
    return v.value;
  }
  // A name another import already registered with the same bytes (the
  // LLM form imports a model twice) is shared; otherwise names are unique.
  std::string name = v.name;
  auto same = [&](llvm::StringRef n) {
    ArrayRef<char> had = store.lookup(n);
    return had.size() == h.size && !std::memcmp(had.data(), h.data, h.size);
  };
  if (!name.empty() && store.contains(name) && same(name)) {
    v.value = *v.slot =
        WeightOp::create(b, loc, type, b.getStringAttr(name)).getResult();
    return v.value;
  }
  if (name.empty() || store.contains(name))
    do
      name = "__const" + std::to_string(constCounter++);
    while (store.contains(name));
  if (h.owned)
    store.addOwned(name, std::vector<char>(h.data, h.data + h.size));
  else
    store.addView(name, h.bytes());
  v.value = *v.slot =
      WeightOp::create(b, loc, type, b.getStringAttr(name)).getResult();
  return v.value;
}

FailureOr<std::vector<int64_t>>
Importer::constInts(const onnx::NodeProto &n, int i, const char *what) {
  const Val *v = input(n, i);
  if (!v)
    return failure();
  if (!v->host)
    return err(n) << "input '" << n.input(i) << "' (" << what
                  << ") must be a compile-time constant; if it is graph input "
                     "'" << n.input(i) << "', bind it with --const-input";
  return v->host->toInts();
}

FailureOr<Val> Importer::graphInput(const onnx::ValueInfoProto &vi) {
  auto e = [&]() {
    return emitError(FileLineColLoc::get(&ctx, modelName, 0, 0))
           << "graph input '" << vi.name() << "': ";
  };
  if (!vi.type().has_tensor_type())
    return e() << "is not a tensor";
  const auto &tt = vi.type().tensor_type();
  if (!dtypeSize(tt.elem_type()) || tt.elem_type() == kUInt8)
    return e() << "has unsupported dtype " << dtypeName(tt.elem_type());
  if (!tt.has_shape())
    return e() << "has no shape";
  Shape shape;
  for (int i = 0; i < tt.shape().dim_size(); ++i) {
    const auto &d = tt.shape().dim(i);
    if (d.has_dim_value()) {
      if (d.dim_value() < 0)
        return e() << "dim " << i << " is " << d.dim_value();
      shape.push_back(d.dim_value());
      continue;
    }
    auto it = opts.dims.find(d.dim_param());
    if (it == opts.dims.end())
      return e() << "dim " << i << " is symbolic ('" << d.dim_param()
                 << "'); bind it with --dim " << d.dim_param() << "=N";
    shape.push_back(it->second);
  }
  // Byte sizes must stay far from int64 overflow in every later phase.
  double bytes = static_cast<double>(dtypeSize(tt.elem_type()));
  for (int64_t d : shape)
    bytes *= static_cast<double>(d);
  if (bytes > static_cast<double>(int64_t(1) << 44))
    return e() << "is " << shapeStr(shape) << ", over 16 TiB";
  Val v;
  v.dtype = tt.elem_type();
  v.shape = shape;
  return v;
}

//===----------------------------------------------------------------------===//
// Host folding helpers
//===----------------------------------------------------------------------===//

/// Elementwise map over broadcast host inputs.
HostTensor hostMap(const std::vector<const HostTensor *> &ins, int32_t outDType,
                   const Shape &outShape,
                   const std::function<double(const std::vector<double> &)> &ff,
                   const std::function<int64_t(const std::vector<int64_t> &)> &fi,
                   bool useFloat) {
  int64_t n = product(outShape);
  Shape idx;
  std::vector<double> fo;
  std::vector<int64_t> io;
  std::vector<double> fa(ins.size());
  std::vector<int64_t> ia(ins.size());
  for (int64_t k = 0; k < n; ++k) {
    unravel(k, outShape, idx);
    for (size_t j = 0; j < ins.size(); ++j) {
      int64_t src = broadcastIndex(ins[j]->shape, idx);
      if (useFloat)
        fa[j] = ins[j]->getF(src);
      else
        ia[j] = ins[j]->getI(src);
    }
    if (useFloat)
      fo.push_back(ff(fa));
    else
      io.push_back(fi(ia));
  }
  return useFloat ? HostTensor::fromDoubles(outDType, outShape, fo)
                  : HostTensor::fromInts(outDType, outShape, io);
}

/// Gathers elements of `in` at flat indices `src`.
HostTensor hostTake(const HostTensor &in, const Shape &outShape,
                    const std::vector<int64_t> &src) {
  size_t es = dtypeSize(in.dtype);
  std::vector<char> bytes(src.size() * es);
  for (size_t i = 0; i < src.size(); ++i)
    std::memcpy(bytes.data() + i * es, in.data + src[i] * es, es);
  return HostTensor::fromBytes(in.dtype, outShape, std::move(bytes));
}

//===----------------------------------------------------------------------===//
// Op families
//===----------------------------------------------------------------------===//

LogicalResult Importer::unary(const onnx::NodeProto &n, StringRef kind) {
  const Val *x = input(n, 0);
  if (!x)
    return err(n) << "missing input";
  Val in = *x;
  Location loc = nodeLoc(n);
  int32_t outType = kind == "Cast" ? static_cast<int32_t>(attrInt(n, "to", 0))
                                   : in.dtype;
  if (kind == "Cast" && (!dtypeSize(outType) || outType == kUInt8))
    return err(n) << "cast to unsupported dtype " << dtypeName(outType);
  if (kind == "Not" && in.dtype != kBool)
    return err(n) << "needs a bool input";
  bool fl = isFloatDType(in.dtype);
  // Fold on the host when the input is known (shape arithmetic).
  if (in.host && in.numel() <= kMaxFoldElements &&
      (kind == "Cast" || kind == "Neg" || kind == "Not" || kind == "Abs" ||
       kind == "Identity")) {
    bool useFloat = fl || isFloatDType(outType);
    auto ff = [&](const std::vector<double> &a) -> double {
      if (kind == "Neg") return -a[0];
      if (kind == "Abs") return std::fabs(a[0]);
      return a[0];
    };
    auto fi = [&](const std::vector<int64_t> &a) -> int64_t {
      if (kind == "Neg") return -a[0];
      if (kind == "Abs") return a[0] < 0 ? -a[0] : a[0];
      if (kind == "Not") return !a[0];
      return a[0];
    };
    return define(n, 0,
                  hostVal(hostMap({&*in.host}, outType, in.shape, ff, fi,
                                  useFloat)));
  }
  if (kind == "Identity" || kind == "Dropout")
    return define(n, 0, in);
  Value v = materialize(inputRef(n, 0), loc);
  RankedTensorType t = tensorType(in.shape, outType);
  Value r;
  if (kind == "Neg") r = make<NegOp>(loc, t, v);
  else if (kind == "Abs") r = make<AbsOp>(loc, t, v);
  else if (kind == "Exp") r = make<ExpOp>(loc, t, v);
  else if (kind == "Log") r = make<LogOp>(loc, t, v);
  else if (kind == "Tanh") r = make<TanhOp>(loc, t, v);
  else if (kind == "Erf") r = make<ErfOp>(loc, t, v);
  else if (kind == "Sigmoid") r = make<SigmoidOp>(loc, t, v);
  else if (kind == "Relu") r = make<ReluOp>(loc, t, v);
  else if (kind == "Sqrt") r = make<SqrtOp>(loc, t, v);
  else if (kind == "Reciprocal") r = make<ReciprocalOp>(loc, t, v);
  else if (kind == "Not") r = make<NotOp>(loc, t, v);
  else if (kind == "Floor") r = make<FloorOp>(loc, t, v);
  else if (kind == "Ceil") r = make<CeilOp>(loc, t, v);
  else if (kind == "Round") r = make<RoundOp>(loc, t, v);
  else if (kind == "Sin") r = make<SinOp>(loc, t, v);
  else if (kind == "Cos") r = make<CosOp>(loc, t, v);
  else if (kind == "Sign") r = make<SignOp>(loc, t, v);
  else if (kind == "Softplus") r = make<SoftplusOp>(loc, t, v);
  else if (kind == "Cast") r = make<CastOp>(loc, t, v);
  else if (kind == "LeakyRelu")
    r = make<LeakyReluOp>(loc, t, v, b.getF32FloatAttr(attrFloat(n, "alpha", 0.01f)));
  else if (kind == "Elu")
    r = make<EluOp>(loc, t, v, b.getF32FloatAttr(attrFloat(n, "alpha", 1.0f)));
  else if (kind == "Gelu")
    r = make<GeluOp>(loc, t, v,
                     b.getBoolAttr(attrString(n, "approximate", "none") == "tanh"));
  else if (kind == "Clip") {
    FloatAttr lo, hi;
    if (opset < 11) {
      if (attr(n, "min")) lo = b.getF64FloatAttr(attrFloat(n, "min", 0));
      if (attr(n, "max")) hi = b.getF64FloatAttr(attrFloat(n, "max", 0));
    } else {
      for (int i : {1, 2}) {
        const Val *bound = input(n, i);
        if (!bound)
          continue;
        if (!bound->host)
          return constInts(n, i, i == 1 ? "min" : "max");
        if (bound->numel() != 1)
          return err(n) << "bound '" << n.input(i) << "' is not a scalar";
        FloatAttr a = b.getF64FloatAttr(bound->host->getF(0));
        (i == 1 ? lo : hi) = a;
      }
    }
    r = ClipOp::create(b, loc, t, v, lo, hi).getResult();
  } else {
    return err(n) << "unsupported unary kind";
  }
  if (!fl && kind != "Neg" && kind != "Abs" && kind != "Relu" &&
      kind != "Sign" && kind != "Cast" && kind != "Not" && kind != "Clip")
    return err(n) << "needs a float input, got " << dtypeName(in.dtype);
  return define(n, 0, opVal(r, outType, in.shape));
}

LogicalResult Importer::binary(const onnx::NodeProto &n, StringRef kind) {
  bool isWhere = kind == "Where";
  int arity = isWhere ? 3 : 2;
  std::vector<Val> ins;
  for (int i = 0; i < arity; ++i) {
    const Val *v = input(n, i);
    if (!v)
      return err(n) << "missing input " << i;
    ins.push_back(*v);
  }
  Location loc = nodeLoc(n);
  std::vector<const Shape *> shapes;
  for (auto &v : ins)
    shapes.push_back(&v.shape);
  auto outShape = broadcastShapes(shapes);
  if (!outShape) {
    auto d = err(n) << "shapes do not broadcast:";
    for (auto &v : ins)
      d << " " << shapeStr(v.shape);
    return d;
  }
  Val &lhs = ins[isWhere ? 1 : 0];
  Val &rhs = ins[isWhere ? 2 : 1];
  if (kind == "Pow" && lhs.dtype != rhs.dtype) {
    // The exponent takes the base's type (ONNX allows them to differ).
    if (rhs.host) {
      std::vector<double> vals;
      for (int64_t i = 0; i < rhs.numel(); ++i)
        vals.push_back(rhs.host->getF(i));
      rhs = hostVal(HostTensor::fromDoubles(lhs.dtype, rhs.shape, vals));
    } else {
      rhs = opVal(make<CastOp>(loc, tensorType(rhs.shape, lhs.dtype), rhs.value),
                  lhs.dtype, rhs.shape);
    }
  }
  if (lhs.dtype != rhs.dtype)
    return err(n) << "operand dtypes differ: " << dtypeName(lhs.dtype)
                  << " vs " << dtypeName(rhs.dtype);
  if (isWhere && ins[0].dtype != kBool)
    return err(n) << "condition must be bool";
  bool cmp = kind == "Equal" || kind == "Less" || kind == "LessOrEqual" ||
             kind == "Greater" || kind == "GreaterOrEqual";
  bool logic = kind == "And" || kind == "Or" || kind == "Xor";
  if (logic && lhs.dtype != kBool)
    return err(n) << "needs bool inputs";
  int32_t outDType = cmp ? kBool : lhs.dtype;
  bool fl = isFloatDType(lhs.dtype);

  bool allHost = llvm::all_of(ins, [](const Val &v) { return bool(v.host); });
  bool divByZero = false;
  if (allHost && product(*outShape) <= kMaxFoldElements &&
      kind != "Pow" && kind != "Mod") {
    auto ff = [&](const std::vector<double> &a) -> double {
      if (isWhere) return a[0] ? a[1] : a[2];
      double x = a[0], y = a[1];
      if (kind == "Add") return x + y;
      if (kind == "Sub") return x - y;
      if (kind == "Mul") return x * y;
      if (kind == "Div") return x / y;
      if (kind == "Max") return std::max(x, y);
      if (kind == "Min") return std::min(x, y);
      if (kind == "Equal") return x == y;
      if (kind == "Less") return x < y;
      if (kind == "LessOrEqual") return x <= y;
      if (kind == "Greater") return x > y;
      return x >= y;
    };
    auto fi = [&](const std::vector<int64_t> &a) -> int64_t {
      if (isWhere) return a[0] ? a[1] : a[2];
      int64_t x = a[0], y = a[1];
      if (kind == "Add") return x + y;
      if (kind == "Sub") return x - y;
      if (kind == "Mul") return x * y;
      if (kind == "Div") {
        if (y == 0) { divByZero = true; return 0; }
        return x / y;
      }
      if (kind == "Max") return std::max(x, y);
      if (kind == "Min") return std::min(x, y);
      if (kind == "And") return x && y;
      if (kind == "Or") return x || y;
      if (kind == "Xor") return (x != 0) != (y != 0);
      if (kind == "Equal") return x == y;
      if (kind == "Less") return x < y;
      if (kind == "LessOrEqual") return x <= y;
      if (kind == "Greater") return x > y;
      return x >= y;
    };
    std::vector<const HostTensor *> hs;
    for (auto &v : ins)
      hs.push_back(&*v.host);
    if (isWhere) {
      // Evaluate with the data operands' kind, reading the condition as int.
      HostTensor r = hostMap(hs, outDType, *outShape, ff, fi, fl);
      return define(n, 0, hostVal(std::move(r)));
    }
    HostTensor r = hostMap(hs, outDType, *outShape, ff, fi, fl);
    if (divByZero)
      return err(n) << "integer division by zero in constant folding";
    return define(n, 0, hostVal(std::move(r)));
  }

  SmallVector<Value> operands;
  for (Val &v : ins)
    operands.push_back(materialize(v, loc));
  RankedTensorType t = tensorType(*outShape, outDType);
  Value l = operands[isWhere ? 1 : 0], r = operands[isWhere ? 2 : 1];
  Value res;
  if (isWhere) res = make<WhereOp>(loc, t, operands[0], l, r);
  else if (kind == "Add") res = make<AddOp>(loc, t, l, r);
  else if (kind == "Sub") res = make<SubOp>(loc, t, l, r);
  else if (kind == "Mul") res = make<MulOp>(loc, t, l, r);
  else if (kind == "Div") res = make<DivOp>(loc, t, l, r);
  else if (kind == "Pow") res = make<PowOp>(loc, t, l, r);
  else if (kind == "Max") res = make<MaxOp>(loc, t, l, r);
  else if (kind == "Min") res = make<MinOp>(loc, t, l, r);
  else if (kind == "Mod") {
    bool fmod = attrInt(n, "fmod", 0);
    if (fl && !fmod)
      return err(n) << "float Mod needs fmod=1";
    res = fmod ? make<FModOp>(loc, t, l, r) : make<ModOp>(loc, t, l, r);
  }
  else if (kind == "And") res = make<AndOp>(loc, t, l, r);
  else if (kind == "Or") res = make<OrOp>(loc, t, l, r);
  else if (kind == "Xor") res = make<XorOp>(loc, t, l, r);
  else if (kind == "Equal") res = make<EqualOp>(loc, t, l, r);
  else if (kind == "Less") res = make<LessOp>(loc, t, l, r);
  else if (kind == "LessOrEqual") res = make<LessEqualOp>(loc, t, l, r);
  else if (kind == "Greater") res = make<GreaterOp>(loc, t, l, r);
  else if (kind == "GreaterOrEqual") res = make<GreaterEqualOp>(loc, t, l, r);
  else return err(n) << "unsupported binary kind";
  return define(n, 0, opVal(res, outDType, *outShape));
}

/// Max/Min/Sum/Mean over any number of inputs, as a chain of binary ops.
LogicalResult Importer::variadic(const onnx::NodeProto &n, StringRef kind) {
  if (n.input_size() == 0)
    return err(n) << "needs at least one input";
  Location loc = nodeLoc(n);
  Val acc = *input(n, 0);
  for (int i = 1; i < n.input_size(); ++i) {
    Val rhs = *input(n, i);
    if (rhs.dtype != acc.dtype)
      return err(n) << "operand dtypes differ";
    auto s = broadcastShapes({&acc.shape, &rhs.shape});
    if (!s)
      return err(n) << "shapes do not broadcast: " << shapeStr(acc.shape)
                    << " " << shapeStr(rhs.shape);
    RankedTensorType t = tensorType(*s, acc.dtype);
    Value l = materialize(acc, loc), r = materialize(rhs, loc);
    Value v = kind == "Max"   ? make<MaxOp>(loc, t, l, r)
              : kind == "Min" ? make<MinOp>(loc, t, l, r)
                              : make<AddOp>(loc, t, l, r);
    acc = opVal(v, acc.dtype, *s);
  }
  if (kind == "Mean" && n.input_size() > 1) {
    if (!isFloatDType(acc.dtype))
      return err(n) << "needs float inputs";
    Val count = hostVal(HostTensor::fromDoubles(acc.dtype, {},
                                                {double(n.input_size())}));
    Value c = materialize(count, loc);
    acc = opVal(make<DivOp>(loc, tensorType(acc.shape, acc.dtype),
                            materialize(acc, loc), c),
                acc.dtype, acc.shape);
  }
  return define(n, 0, acc);
}

LogicalResult Importer::reshapeTo(const onnx::NodeProto &n, const Val &in,
                                  Shape shape, int out) {
  if (product(shape) != in.numel())
    return err(n) << "cannot reshape " << shapeStr(in.shape) << " to "
                  << shapeStr(shape);
  if (in.host) {
    HostTensor h = *in.host;
    h.shape = shape;
    return define(n, out, hostVal(h));
  }
  Val copy = in;
  Value v = make<ReshapeOp>(nodeLoc(n), tensorType(shape, in.dtype),
                            materialize(copy, nodeLoc(n)));
  return define(n, out, opVal(v, in.dtype, shape));
}

LogicalResult Importer::matmul(const onnx::NodeProto &n) {
  const Val *a = input(n, 0), *c = input(n, 1);
  if (!a || !c)
    return err(n) << "needs two inputs";
  Location loc = nodeLoc(n);
  Val lhs = *a, rhs = *c;
  if (lhs.dtype != rhs.dtype)
    return err(n) << "operand dtypes differ";
  if (lhs.shape.empty() || rhs.shape.empty())
    return err(n) << "operands must have rank >= 1";
  bool lhsVec = lhs.shape.size() == 1, rhsVec = rhs.shape.size() == 1;
  Shape ls = lhsVec ? Shape{1, lhs.shape[0]} : lhs.shape;
  Shape rs = rhsVec ? Shape{rhs.shape[0], 1} : rhs.shape;
  if (ls.back() != rs[rs.size() - 2])
    return err(n) << "contraction dims differ: " << shapeStr(lhs.shape)
                  << " x " << shapeStr(rhs.shape);
  Shape lb(ls.begin(), ls.end() - 2), rb(rs.begin(), rs.end() - 2);
  auto batch = broadcastShapes({&lb, &rb});
  if (!batch)
    return err(n) << "batch dims do not broadcast: " << shapeStr(lhs.shape)
                  << " x " << shapeStr(rhs.shape);
  Value l = materialize(lhs, loc), r = materialize(rhs, loc);
  if (lhsVec)
    l = make<ReshapeOp>(loc, tensorType(ls, lhs.dtype), l);
  if (rhsVec)
    r = make<ReshapeOp>(loc, tensorType(rs, rhs.dtype), r);
  Shape os = *batch;
  os.push_back(ls[ls.size() - 2]);
  os.push_back(rs.back());
  Value v = make<MatMulOp>(loc, tensorType(os, lhs.dtype), l, r);
  Shape fs(os.begin(), os.end() - 2);
  if (!lhsVec)
    fs.push_back(os[os.size() - 2]);
  if (!rhsVec)
    fs.push_back(os.back());
  if (fs != os)
    v = make<ReshapeOp>(loc, tensorType(fs, lhs.dtype), v);
  return define(n, 0, opVal(v, lhs.dtype, fs));
}

LogicalResult Importer::gemm(const onnx::NodeProto &n) {
  const Val *a = input(n, 0), *bb = input(n, 1), *c = input(n, 2);
  if (!a || !bb)
    return err(n) << "needs inputs A and B";
  Location loc = nodeLoc(n);
  Val A = *a, B = *bb;
  if (A.shape.size() != 2 || B.shape.size() != 2)
    return err(n) << "A and B must be 2-D";
  if (B.dtype != A.dtype || (c && c->dtype != A.dtype))
    return err(n) << "A, B and C must have one dtype";
  int32_t dt = A.dtype;
  Value av = materialize(A, loc), bv = materialize(B, loc);
  Shape as = A.shape, bs = B.shape;
  if (attrInt(n, "transA", 0)) {
    std::swap(as[0], as[1]);
    av = make<TransposeOp>(loc, tensorType(as, dt), av, ArrayRef<int64_t>{1, 0});
  }
  if (attrInt(n, "transB", 0)) {
    std::swap(bs[0], bs[1]);
    bv = make<TransposeOp>(loc, tensorType(bs, dt), bv, ArrayRef<int64_t>{1, 0});
  }
  if (as[1] != bs[0])
    return err(n) << "contraction dims differ: " << shapeStr(as) << " x "
                  << shapeStr(bs);
  Shape os = {as[0], bs[1]};
  RankedTensorType t = tensorType(os, dt);
  Value y = make<MatMulOp>(loc, t, av, bv);
  float alpha = attrFloat(n, "alpha", 1.0f), beta = attrFloat(n, "beta", 1.0f);
  auto scalar = [&](double v) {
    Val s = hostVal(HostTensor::fromDoubles(dt, {}, {v}));
    return materialize(s, loc);
  };
  if (alpha != 1.0f)
    y = make<MulOp>(loc, t, y, scalar(alpha));
  if (c) {
    Val C = *c;
    if (!broadcastShapes({&os, &C.shape}) ||
        *broadcastShapes({&os, &C.shape}) != os)
      return err(n) << "C " << shapeStr(C.shape) << " does not broadcast to "
                    << shapeStr(os);
    Value cv = materialize(C, loc);
    if (beta != 1.0f)
      cv = make<MulOp>(loc, tensorType(C.shape, dt), cv, scalar(beta));
    y = make<AddOp>(loc, t, y, cv);
  }
  return define(n, 0, opVal(y, dt, os));
}

LogicalResult Importer::reduce(const onnx::NodeProto &n, StringRef kind) {
  const Val *x = input(n, 0);
  if (!x)
    return err(n) << "missing input";
  Val in = *x;
  int64_t rank = in.shape.size();
  bool keep = attrInt(n, "keepdims", 1), noop = false;
  auto axesOr = reduceAxes(n, kind, rank, noop);
  if (failed(axesOr))
    return failure();
  if (noop)
    return define(n, 0, in);
  std::vector<int64_t> axes = *axesOr;
  Shape os;
  for (int64_t i = 0; i < rank; ++i) {
    bool r = llvm::is_contained(axes, i);
    if (!r)
      os.push_back(in.shape[i]);
    else if (keep)
      os.push_back(1);
  }
  // Integer reductions of compile-time values (a bound attention mask's
  // length) fold on the host, so shape-like chains stay constant.
  if (in.host && !isFloatDType(in.dtype) && in.numel() > 0 &&
      in.numel() <= kMaxFoldElements &&
      (kind == "ReduceSum" || kind == "ReduceMax" || kind == "ReduceMin")) {
    Shape st = strides(in.shape), kept(rank);
    for (int64_t i = 0; i < rank; ++i)
      kept[i] = llvm::is_contained(axes, i) ? 1 : in.shape[i];
    Shape ks = strides(kept);
    int64_t outN = 1;
    for (int64_t d : kept)
      outN *= d;
    std::vector<int64_t> acc(outN);
    std::vector<bool> seen(outN, false);
    for (int64_t e = 0; e < in.numel(); ++e) {
      int64_t o = 0;
      for (int64_t i = 0; i < rank; ++i)
        if (kept[i] != 1 || !llvm::is_contained(axes, i))
          o += (e / st[i] % in.shape[i]) * ks[i];
      int64_t x = in.host->getI(e);
      if (!seen[o])
        acc[o] = x;
      else if (kind == "ReduceSum")
        acc[o] += x;
      else if (kind == "ReduceMax")
        acc[o] = std::max(acc[o], x);
      else
        acc[o] = std::min(acc[o], x);
      seen[o] = true;
    }
    return define(n, 0, hostVal(HostTensor::fromInts(in.dtype, os, acc)));
  }
  Location loc = nodeLoc(n);
  Value v = materialize(in, loc);
  RankedTensorType t = tensorType(os, in.dtype);
  auto axesAttr = b.getDenseI64ArrayAttr(axes);
  auto keepAttr = b.getBoolAttr(keep);
  Value r;
  if (kind == "ReduceSum") r = make<ReduceSumOp>(loc, t, v, axesAttr, keepAttr);
  else if (kind == "ReduceMean") r = make<ReduceMeanOp>(loc, t, v, axesAttr, keepAttr);
  else if (kind == "ReduceMax") r = make<ReduceMaxOp>(loc, t, v, axesAttr, keepAttr);
  else if (kind == "ReduceMin") r = make<ReduceMinOp>(loc, t, v, axesAttr, keepAttr);
  else r = make<ReduceProdOp>(loc, t, v, axesAttr, keepAttr);
  if (in.numel() == 0)
    return err(n) << "reduction over an empty tensor is not supported";
  return define(n, 0, opVal(r, in.dtype, os));
}

FailureOr<std::vector<int64_t>>
Importer::reduceAxes(const onnx::NodeProto &n, StringRef kind, int64_t rank,
                     bool &noop) {
  // Axes moved from attribute to input: ReduceSum at 13, the rest at 18.
  bool axesInput = kind == "ReduceSum" ? opset >= 13 : opset >= 18;
  std::vector<int64_t> axes;
  if (axesInput) {
    if (input(n, 1)) {
      auto v = constInts(n, 1, "axes");
      if (failed(v))
        return failure();
      axes = *v;
    }
  } else if (auto a = attrInts(n, "axes")) {
    axes = *a;
  }
  noop = false;
  if (axes.empty()) {
    if (attrInt(n, "noop_with_empty_axes", 0)) {
      noop = true;
      return axes;
    }
    for (int64_t i = 0; i < rank; ++i)
      axes.push_back(i);
  }
  for (int64_t &a : axes) {
    if (failed(normalizeAxis(n, a, rank)))
      return failure();
  }
  llvm::sort(axes);
  axes.erase(std::unique(axes.begin(), axes.end()), axes.end());
  return axes;
}

/// ReduceL1/L2/SumSquare/LogSum/LogSumExp as kiln primitives.
LogicalResult Importer::composedReduce(const onnx::NodeProto &n, StringRef kind) {
  const Val *x = input(n, 0);
  if (!x)
    return err(n) << "missing input";
  Val in = *x;
  if (!isFloatDType(in.dtype) && kind != "ReduceL1" && kind != "ReduceSumSquare")
    return err(n) << "needs a float input";
  int64_t rank = in.shape.size();
  bool keep = attrInt(n, "keepdims", 1), noop = false;
  auto axesOr = reduceAxes(n, kind, rank, noop);
  if (failed(axesOr))
    return failure();
  if (noop)
    return define(n, 0, in);
  std::vector<int64_t> axes = *axesOr;
  Location loc = nodeLoc(n);
  Value v = materialize(in, loc);
  RankedTensorType t = tensorType(in.shape, in.dtype);
  Shape ks = in.shape, os;
  for (int64_t i = 0; i < rank; ++i) {
    bool r = llvm::is_contained(axes, i);
    if (r)
      ks[i] = 1;
    if (!r || keep)
      os.push_back(r ? 1 : in.shape[i]);
  }
  RankedTensorType ot = tensorType(os, in.dtype);
  auto axesAttr = b.getDenseI64ArrayAttr(axes);
  auto sum = [&](Value x, RankedTensorType type, bool keepDims) {
    return make<ReduceSumOp>(loc, type, x, axesAttr, b.getBoolAttr(keepDims));
  };
  Value r;
  if (kind == "ReduceL1") {
    r = sum(make<AbsOp>(loc, t, v), ot, keep);
  } else if (kind == "ReduceSumSquare" || kind == "ReduceL2") {
    r = sum(make<MulOp>(loc, t, v, v), ot, keep);
    if (kind == "ReduceL2")
      r = make<SqrtOp>(loc, ot, r);
  } else if (kind == "ReduceLogSum") {
    r = make<LogOp>(loc, ot, sum(v, ot, keep));
  } else {
    // log(sum(exp(x - max))) + max, the overflow-free form.
    RankedTensorType kt = tensorType(ks, in.dtype);
    Value mx = make<ReduceMaxOp>(loc, kt, v, axesAttr, b.getBoolAttr(true));
    Value e = make<ExpOp>(loc, t, make<SubOp>(loc, t, v, mx));
    Value l = make<LogOp>(loc, kt, sum(e, kt, true));
    r = make<AddOp>(loc, kt, l, mx);
    if (ks != os)
      r = make<ReshapeOp>(loc, ot, r);
  }
  return define(n, 0, opVal(r, in.dtype, os));
}

LogicalResult Importer::argReduce(const onnx::NodeProto &n, bool isMax) {
  const Val *x = input(n, 0);
  if (!x)
    return err(n) << "missing input";
  Val in = *x;
  int64_t rank = in.shape.size();
  int64_t axis = attrInt(n, "axis", 0);
  if (failed(normalizeAxis(n, axis, rank)))
    return failure();
  bool keep = attrInt(n, "keepdims", 1);
  Shape os;
  for (int64_t i = 0; i < rank; ++i)
    if (i != axis || keep)
      os.push_back(i == axis ? 1 : in.shape[i]);
  Location loc = nodeLoc(n);
  RankedTensorType t = tensorType(os, kInt64);
  Value v = materialize(in, loc);
  auto a = b.getI64IntegerAttr(axis);
  auto k = b.getBoolAttr(keep);
  auto last = b.getBoolAttr(attrInt(n, "select_last_index", 0));
  Value r = isMax ? make<ArgMaxOp>(loc, t, v, a, k, last)
                  : make<ArgMinOp>(loc, t, v, a, k, last);
  return define(n, 0, opVal(r, kInt64, os));
}

LogicalResult Importer::gatherElements(const onnx::NodeProto &n) {
  const Val *x = input(n, 0), *ix = input(n, 1);
  if (!x || !ix)
    return err(n) << "needs data and indices";
  Val in = *x, idx = *ix;
  int64_t rank = in.shape.size();
  if (static_cast<int64_t>(idx.shape.size()) != rank)
    return err(n) << "indices rank differs from data rank";
  if (idx.dtype != kInt64 && idx.dtype != kInt32)
    return err(n) << "indices must be int32 or int64";
  int64_t axis = attrInt(n, "axis", 0);
  if (failed(normalizeAxis(n, axis, rank)))
    return failure();
  if (idx.host)
    for (int64_t i = 0; i < idx.numel(); ++i) {
      int64_t k = idx.host->getI(i);
      if (k < -in.shape[axis] || k >= in.shape[axis])
        return err(n) << "index " << k << " out of range for dim "
                      << in.shape[axis];
    }
  Location loc = nodeLoc(n);
  Value v = make<GatherElementsOp>(loc, tensorType(idx.shape, in.dtype),
                                   materialize(in, loc), materialize(idx, loc),
                                   b.getI64IntegerAttr(axis));
  return define(n, 0, opVal(v, in.dtype, idx.shape));
}

/// Activations that are short compositions of kiln primitives.
LogicalResult Importer::activation(const onnx::NodeProto &n, StringRef kind) {
  const Val *x = input(n, 0);
  if (!x)
    return err(n) << "missing input";
  Val in = *x;
  if (!isFloatDType(in.dtype))
    return err(n) << "needs a float input";
  Location loc = nodeLoc(n);
  int32_t dt = in.dtype;
  RankedTensorType t = tensorType(in.shape, dt);
  Value v = materialize(in, loc);
  auto c = [&](double d) { return scalar(dt, d, loc); };
  RankedTensorType bt = tensorType(in.shape, kBool);
  Value r;
  if (kind == "Selu") {
    float alpha = attrFloat(n, "alpha", 1.67326319217681884765625f);
    float gamma = attrFloat(n, "gamma", 1.05070102214813232421875f);
    Value elu = make<EluOp>(loc, t, v, b.getF32FloatAttr(alpha));
    r = make<MulOp>(loc, t, elu, c(gamma));
  } else if (kind == "HardSigmoid" || kind == "HardSwish") {
    float alpha = kind == "HardSwish" ? 1.0f / 6 : attrFloat(n, "alpha", 0.2f);
    float beta = kind == "HardSwish" ? 0.5f : attrFloat(n, "beta", 0.5f);
    Value lin = make<AddOp>(loc, t, make<MulOp>(loc, t, v, c(alpha)), c(beta));
    r = ClipOp::create(b, loc, t, lin, b.getF64FloatAttr(0.0),
                       b.getF64FloatAttr(1.0))
            .getResult();
    if (kind == "HardSwish")
      r = make<MulOp>(loc, t, v, r);
  } else if (kind == "ThresholdedRelu") {
    float alpha = attrFloat(n, "alpha", 1.0f);
    Value above = make<GreaterOp>(loc, bt, v, c(alpha));
    r = make<WhereOp>(loc, t, above, v, c(0));
  } else if (kind == "Softsign") {
    r = make<DivOp>(loc, t, v, make<AddOp>(loc, t, make<AbsOp>(loc, t, v), c(1)));
  } else { // PRelu: x < 0 ? slope * x : x, slope broadcast
    const Val *sl = input(n, 1);
    if (!sl || sl->dtype != dt)
      return err(n) << "needs a slope of the input's dtype";
    Val slope = *sl;
    auto os = broadcastShapes({&in.shape, &slope.shape});
    if (!os || *os != in.shape)
      return err(n) << "slope " << shapeStr(slope.shape)
                    << " does not broadcast to " << shapeStr(in.shape);
    Value neg = make<LessOp>(loc, bt, v, c(0));
    Value scaled = make<MulOp>(loc, t, v, materialize(slope, loc));
    r = make<WhereOp>(loc, t, neg, scaled, v);
  }
  return define(n, 0, opVal(r, dt, in.shape));
}

LogicalResult Importer::softmax(const onnx::NodeProto &n, bool log) {
  const Val *x = input(n, 0);
  if (!x)
    return err(n) << "missing input";
  Val in = *x;
  int64_t rank = in.shape.size();
  if (!isFloatDType(in.dtype))
    return err(n) << "needs a float input";
  int64_t axis = attrInt(n, "axis", opset < 13 ? 1 : -1);
  if (failed(normalizeAxis(n, axis, rank)))
    return failure();
  Location loc = nodeLoc(n);
  Value v = materialize(in, loc);
  Shape work = in.shape;
  int64_t workAxis = axis;
  if (opset < 13) {
    // Before opset 13 the input is coerced to 2-D at `axis`.
    int64_t outer = 1, inner = 1;
    for (int64_t i = 0; i < rank; ++i)
      (i < axis ? outer : inner) *= in.shape[i];
    work = {outer, inner};
    workAxis = 1;
    v = make<ReshapeOp>(loc, tensorType(work, in.dtype), v);
  }
  RankedTensorType t = tensorType(work, in.dtype);
  Value r = log ? make<LogSoftmaxOp>(loc, t, v, b.getI64IntegerAttr(workAxis))
                : make<SoftmaxOp>(loc, t, v, b.getI64IntegerAttr(workAxis));
  if (work != in.shape)
    r = make<ReshapeOp>(loc, tensorType(in.shape, in.dtype), r);
  return define(n, 0, opVal(r, in.dtype, in.shape));
}

/// ONNX RMSNormalization (opset 23) over the last axis: kiln.rms_norm.
LogicalResult Importer::rmsNormalization(const onnx::NodeProto &n) {
  const Val *x = input(n, 0), *s = input(n, 1);
  if (!x || !s)
    return err(n) << "needs X and scale";
  Val in = *x, scale = *s;
  int64_t rank = in.shape.size();
  int64_t axis = attrInt(n, "axis", -1);
  if (failed(normalizeAxis(n, axis, rank)))
    return failure();
  if (axis != rank - 1)
    return err(n) << "normalizing over more than the last axis (axis "
                  << axis << ") is not supported yet";
  if (!isFloatDType(in.dtype) || scale.dtype != in.dtype)
    return err(n) << "needs a float X and a scale of its dtype";
  if (scale.shape != Shape{in.shape.back()})
    return err(n) << "scale must be [" << in.shape.back() << "], got "
                  << shapeStr(scale.shape);
  Location loc = nodeLoc(n);
  Value y = RmsNormOp::create(b, loc, tensorType(in.shape, in.dtype),
                              materialize(in, loc), materialize(scale, loc),
                              b.getF32FloatAttr(attrFloat(n, "epsilon", 1e-5f)));
  return define(n, 0, opVal(y, in.dtype, in.shape));
}

/// onnxruntime's contrib RMSNorm forms (as onnxruntime-genai writes them):
/// SimplifiedLayerNormalization(X, scale) and
/// SkipSimplifiedLayerNormalization(input, skip, gamma, bias?), whose
/// output 3 is the residual sum input + skip + bias.
LogicalResult Importer::simplifiedLayerNorm(const onnx::NodeProto &n,
                                            bool skip) {
  int scaleIndex = skip ? 2 : 1;
  const Val *xp = input(n, 0), *sp = input(n, scaleIndex);
  if (!xp || !sp || (skip && !input(n, 1)))
    return err(n) << (skip ? "needs input, skip and gamma" : "needs X and scale");
  Val x = *xp, scale = *sp;
  int64_t rank = x.shape.size();
  int64_t axis = attrInt(n, "axis", -1);
  if (failed(normalizeAxis(n, axis, rank)))
    return failure();
  if (axis != rank - 1)
    return err(n) << "only the last axis is supported";
  if (!isFloatDType(x.dtype) || scale.dtype != x.dtype ||
      scale.shape != Shape{x.shape.back()})
    return err(n) << "needs a float input and a [" << x.shape.back()
                  << "] scale of its dtype";
  Location loc = nodeLoc(n);
  RankedTensorType t = tensorType(x.shape, x.dtype);
  Value in = materialize(x, loc);
  if (skip) {
    for (int i : {1, 3}) {
      const Val *p = input(n, i);
      if (!p)
        continue;
      Val add = *p;
      if (add.dtype != x.dtype || !broadcastShapes({&x.shape, &add.shape}) ||
          *broadcastShapes({&x.shape, &add.shape}) != x.shape)
        return err(n) << "skip/bias " << shapeStr(add.shape)
                      << " does not broadcast to " << shapeStr(x.shape);
      in = AddOp::create(b, loc, t, in, materialize(add, loc));
    }
  }
  Value y = RmsNormOp::create(b, loc, t, in, materialize(scale, loc),
                              b.getF32FloatAttr(attrFloat(n, "epsilon", 1e-5f)));
  for (int i = 1; i < n.output_size(); ++i)
    if (!n.output(i).empty() && !(skip && i == 3))
      return err(n) << "output " << i << " (statistics) is not supported";
  if (failed(define(n, 0, opVal(y, x.dtype, x.shape))))
    return failure();
  if (skip && n.output_size() > 3 && !n.output(3).empty())
    return define(n, 3, opVal(in, x.dtype, x.shape));
  return success();
}

/// ONNX RotaryEmbedding (opset 23) on [batch, heads, seq, head_dim]:
/// rotate-half (or interleaved pairs) over the first rotary_embedding_dim
/// lanes with cos/sin rows at position_ids.
LogicalResult Importer::rotaryEmbedding(const onnx::NodeProto &n) {
  const Val *xp = input(n, 0), *cp = input(n, 1), *sp = input(n, 2);
  const Val *pp = input(n, 3);
  if (!xp || !cp || !sp)
    return err(n) << "needs X, cos_cache and sin_cache";
  Val x = *xp, cosC = *cp, sinC = *sp;
  if (!isFloatDType(x.dtype) || cosC.dtype != x.dtype || sinC.dtype != x.dtype)
    return err(n) << "X and the caches must share a float dtype";
  if (x.shape.size() == 3) {
    // [batch, seq, hidden] with num_heads: split, rotate, merge.
    int64_t heads = attrInt(n, "num_heads", 0);
    int64_t batch = x.shape[0], seq = x.shape[1], hidden = x.shape[2];
    if (heads <= 0 || hidden % heads)
      return err(n) << "3-D input needs num_heads dividing " << hidden;
    int64_t dim = hidden / heads;
    int64_t rot3 = attrInt(n, "rotary_embedding_dim", 0);
    if (rot3 == 0)
      rot3 = dim;
    if (rot3 <= 0 || rot3 > dim || rot3 % 2)
      return err(n) << "rotary_embedding_dim " << rot3 << " does not fit "
                    << "head_dim " << dim;
    Location loc = nodeLoc(n);
    Val x4 = opVal(splitHeads(loc, materialize(x, loc), x.dtype, batch, seq,
                              heads, dim),
                   x.dtype, {batch, heads, seq, dim});
    FailureOr<Value> out = rope(n, x4, cosC, sinC, pp, rot3,
                                attrInt(n, "interleaved", 0) != 0);
    if (failed(out))
      return failure();
    return define(n, 0,
                  opVal(mergeHeads(loc, *out, x.dtype, batch, seq, heads, dim),
                        x.dtype, x.shape));
  }
  if (x.shape.size() != 4)
    return err(n) << "input must be [batch, heads, seq, head_dim] or "
                     "[batch, seq, hidden], got " << shapeStr(x.shape);
  int64_t batch = x.shape[0], heads = x.shape[1], seq = x.shape[2];
  int64_t dim = x.shape[3];
  int64_t rot = attrInt(n, "rotary_embedding_dim", 0);
  if (rot == 0)
    rot = dim;
  if (rot <= 0 || rot > dim || rot % 2)
    return err(n) << "rotary_embedding_dim " << rot << " does not fit "
                  << "head_dim " << dim;
  bool interleaved = attrInt(n, "interleaved", 0) != 0;
  FailureOr<Value> out = rope(n, x, cosC, sinC, pp, rot, interleaved);
  if (failed(out))
    return failure();
  return define(n, 0, opVal(*out, x.dtype, x.shape));
}

/// Rotary embedding of a 4-D [batch, heads, seq, head_dim] `x` over its
/// first `rot` lanes (rotate-half, or interleaved pairs), cos/sin rows at
/// `pos` ([batch, seq]) or given per position ([batch, seq, rot / 2]).
FailureOr<Value> Importer::rope(const onnx::NodeProto &n, Val &x, Val &cosC,
                                Val &sinC, const Val *pp, int64_t rot,
                                bool interleaved) {
  int64_t batch = x.shape[0], heads = x.shape[1], seq = x.shape[2];
  int64_t dim = x.shape[3];
  int64_t half = rot / 2;

  Location loc = nodeLoc(n);
  auto t = [&](Shape sh) { return tensorType(sh, x.dtype); };
  // cos/sin rows: [batch, seq, half] -> [batch, 1, seq, half(, 1)].
  auto rows = [&](Val &cache) -> FailureOr<Value> {
    Value c = materialize(cache, loc);
    if (pp) {
      Val pos = *pp;
      if (cache.shape.size() != 2 || cache.shape[1] != half ||
          pos.shape != Shape{batch, seq})
        return err(n) << "caches must be [max_position, " << half
                      << "] and position_ids [" << batch << ", " << seq << "]";
      c = GatherOp::create(b, loc, t({batch, seq, half}), c,
                           materialize(pos, loc), b.getI64IntegerAttr(0));
    } else if (cache.shape != Shape{batch, seq, half}) {
      return err(n) << "without position_ids the caches must be ["
                    << batch << ", " << seq << ", " << half << "]";
    }
    Shape shape = interleaved ? Shape{batch, 1, seq, half, 1}
                              : Shape{batch, 1, seq, half};
    return ReshapeOp::create(b, loc, t(shape), c).getResult();
  };
  auto cosV = rows(cosC), sinV = rows(sinC);
  if (failed(cosV) || failed(sinV))
    return failure();
  Value xv = materialize(x, loc);
  auto slice = [&](Value v, Shape start, Shape size) {
    Shape steps(start.size(), 1);
    return SliceOp::create(b, loc, t(size), v, start, steps).getResult();
  };
  Value xr = rot < dim ? slice(xv, {0, 0, 0, 0}, {batch, heads, seq, rot}) : xv;
  Shape lane = interleaved ? Shape{batch, heads, seq, half, 1}
                           : Shape{batch, heads, seq, half};
  Value x1, x2;
  if (interleaved) {
    Value pairs = ReshapeOp::create(b, loc, t({batch, heads, seq, half, 2}), xr);
    x1 = slice(pairs, {0, 0, 0, 0, 0}, lane);
    x2 = slice(pairs, {0, 0, 0, 0, 1}, lane);
  } else {
    x1 = slice(xr, {0, 0, 0, 0}, lane);
    x2 = slice(xr, {0, 0, 0, half}, lane);
  }
  auto mul = [&](Value a, Value c) {
    return MulOp::create(b, loc, t(lane), a, c).getResult();
  };
  Value r1 = SubOp::create(b, loc, t(lane), mul(x1, *cosV), mul(x2, *sinV));
  Value r2 = AddOp::create(b, loc, t(lane), mul(x2, *cosV), mul(x1, *sinV));
  Value out;
  if (interleaved) {
    Value both = ConcatOp::create(b, loc, t({batch, heads, seq, half, 2}),
                                  ValueRange{r1, r2}, b.getI64IntegerAttr(4));
    out = ReshapeOp::create(b, loc, t({batch, heads, seq, rot}), both);
  } else {
    out = ConcatOp::create(b, loc, t({batch, heads, seq, rot}),
                           ValueRange{r1, r2}, b.getI64IntegerAttr(3));
  }
  if (rot < dim)
    out = ConcatOp::create(
        b, loc, t(x.shape),
        ValueRange{out, slice(xv, {0, 0, 0, rot}, {batch, heads, seq, dim - rot})},
        b.getI64IntegerAttr(3));
  return out;
}

Value Importer::splitHeads(Location loc, Value x, int32_t dtype,
                           int64_t batch, int64_t seq, int64_t heads,
                           int64_t dim) {
  Value r = make<ReshapeOp>(loc, tensorType({batch, seq, heads, dim}, dtype), x);
  return make<TransposeOp>(loc, tensorType({batch, heads, seq, dim}, dtype), r,
                           ArrayRef<int64_t>{0, 2, 1, 3});
}

Value Importer::mergeHeads(Location loc, Value x, int32_t dtype,
                           int64_t batch, int64_t seq, int64_t heads,
                           int64_t dim) {
  Value t = make<TransposeOp>(loc, tensorType({batch, seq, heads, dim}, dtype),
                              x, ArrayRef<int64_t>{0, 2, 1, 3});
  return make<ReshapeOp>(loc, tensorType({batch, seq, heads * dim}, dtype), t);
}

/// onnxruntime's contrib RotaryEmbedding(input, position_ids, cos_cache,
/// sin_cache): input [batch, seq, hidden] (heads from num_heads, or from
/// the cache width) or [batch, heads, seq, head_dim].
LogicalResult Importer::contribRotaryEmbedding(const onnx::NodeProto &n) {
  const Val *xp = input(n, 0), *pp = input(n, 1), *cp = input(n, 2),
            *sp = input(n, 3);
  if (!xp || !pp || !cp || !sp)
    return err(n) << "needs input, position_ids, cos_cache and sin_cache";
  if (attrFloat(n, "scale", 1.0f) != 1.0f ||
      attrInt(n, "is_packed_batching", 0) != 0)
    return err(n) << "scale != 1 and packed batching are not supported";
  Val x = *xp, cosC = *cp, sinC = *sp;
  if (cosC.shape.size() != 2)
    return err(n) << "cos_cache must be [max_position, rotary_dim / 2]";
  if (pp->shape.size() != 2)
    return err(n) << "position_ids must be [batch, seq] (the offset form "
                     "is not supported)";
  if (!isFloatDType(x.dtype))
    return err(n) << "needs a float input";
  int64_t rot = attrInt(n, "rotary_embedding_dim", 0);
  if (rot == 0)
    rot = 2 * cosC.shape[1];
  bool interleaved = attrInt(n, "interleaved", 0) != 0;
  Location loc = nodeLoc(n);
  if (x.shape.size() == 4) {
    if (rot > x.shape[3])
      return err(n) << "rotary dim " << rot << " exceeds head_dim";
    FailureOr<Value> out = rope(n, x, cosC, sinC, pp, rot, interleaved);
    if (failed(out))
      return failure();
    return define(n, 0, opVal(*out, x.dtype, x.shape));
  }
  if (x.shape.size() != 3)
    return err(n) << "input must be 3-D or 4-D, got " << shapeStr(x.shape);
  int64_t batch = x.shape[0], seq = x.shape[1], hidden = x.shape[2];
  int64_t heads = attrInt(n, "num_heads", 0);
  if (heads <= 0)
    heads = hidden / rot;
  if (heads <= 0 || hidden % heads || rot > hidden / heads)
    return err(n) << "hidden size " << hidden << " does not split into "
                  << heads << " heads of at least " << rot << " lanes";
  int64_t dim = hidden / heads;
  Value split = splitHeads(loc, materialize(x, loc), x.dtype, batch, seq,
                           heads, dim);
  Val x4 = opVal(split, x.dtype, {batch, heads, seq, dim});
  FailureOr<Value> out = rope(n, x4, cosC, sinC, pp, rot, interleaved);
  if (failed(out))
    return failure();
  Value merged = mergeHeads(loc, *out, x.dtype, batch, seq, heads, dim);
  return define(n, 0, opVal(merged, x.dtype, x.shape));
}

/// onnxruntime's contrib GroupQueryAttention as onnxruntime-genai writes
/// it: query [batch, seq, heads * d], key/value [batch, seq, kv_heads * d],
/// past_key/past_value [batch, kv_heads, past, d] (present = past + new),
/// seqlens_k / total_sequence_length from the attention mask. Batch 1
/// without padding: seqlens_k must be known at compile time and equal
/// past + seq - 1 (kiln-compile --llm binds the mask to ones).
LogicalResult Importer::groupQueryAttention(const onnx::NodeProto &n) {
  const Val *qp = input(n, 0), *kp = input(n, 1), *vp = input(n, 2);
  const Val *pk = input(n, 3), *pv = input(n, 4), *sl = input(n, 5),
            *tl = input(n, 6);
  if (!qp || !kp || !vp)
    return err(n) << "packed QKV is not supported yet: needs query, key and "
                     "value";
  for (int i = 7; i < n.input_size(); ++i)
    if (!n.input(i).empty())
      return err(n) << "input " << i
                    << " (cos/sin caches, position ids, attention bias, "
                       "head sink) is not supported yet";
  if (attrInt(n, "do_rotary", 0) != 0)
    return err(n) << "do_rotary=1 is not supported yet (rotary embedding "
                     "as separate RotaryEmbedding nodes is)";
  if (attrInt(n, "smooth_softmax", 0) != 0)
    return err(n) << "smooth_softmax is not supported yet";
  // Soft-capping of the scaled scores (Gemma 2's attention): 0 is none.
  float softcap = std::max(0.0f, attrFloat(n, "softcap", 0.0f));
  int64_t heads = attrInt(n, "num_heads", 0);
  int64_t kvHeads = attrInt(n, "kv_num_heads", 0);
  Val q = *qp, k = *kp, v = *vp;
  if (heads <= 0 || kvHeads <= 0 || heads % kvHeads)
    return err(n) << "num_heads " << heads << " must be a positive multiple "
                  << "of kv_num_heads " << kvHeads;
  if (q.shape.size() != 3 || k.shape.size() != 3 || v.shape.size() != 3)
    return err(n) << "query, key and value must be [batch, seq, hidden]";
  if (!isFloatDType(q.dtype) || k.dtype != q.dtype || v.dtype != q.dtype)
    return err(n) << "query, key and value must share a float dtype";
  int64_t batch = q.shape[0], seq = q.shape[1];
  if (q.shape[2] % heads)
    return err(n) << "query width " << q.shape[2] << " is not a multiple of "
                  << heads << " heads";
  int64_t dim = q.shape[2] / heads;
  if (k.shape != Shape{batch, seq, kvHeads * dim} || v.shape != k.shape)
    return err(n) << "key/value must be [" << batch << ", " << seq << ", "
                  << kvHeads * dim << "]";
  if ((pk == nullptr) != (pv == nullptr))
    return err(n) << "past_key and past_value come together";
  int64_t past = 0;
  if (pk) {
    if (pk->shape != Shape{batch, kvHeads, pk->shape[2], dim} ||
        pv->shape != pk->shape)
      return err(n) << "past_key/past_value must be [" << batch << ", "
                    << kvHeads << ", past, " << dim << "]";
    past = pk->shape[2];
  }
  // No padding: every sequence holds past + seq tokens.
  if (!sl || !sl->host || !tl || !tl->host)
    return err(n) << "seqlens_k and total_sequence_length must be known at "
                     "compile time (batch 1 without padding: bind "
                     "attention_mask, as kiln-compile --llm does)";
  for (int64_t len : sl->host->toInts())
    if (len != past + seq - 1)
      return err(n) << "seqlens_k is " << len << ", not past + seq - 1 = "
                    << past + seq - 1 << " (padded batches are not supported)";
  if (tl->host->numel() != 1 || tl->host->getI(0) != past + seq)
    return err(n) << "total_sequence_length must be past + seq = "
                  << past + seq;
  Location loc = nodeLoc(n);
  Value q4 = splitHeads(loc, materialize(q, loc), q.dtype, batch, seq, heads, dim);
  Value k4 = splitHeads(loc, materialize(k, loc), q.dtype, batch, seq, kvHeads, dim);
  Value v4 = splitHeads(loc, materialize(v, loc), q.dtype, batch, seq, kvHeads, dim);
  Shape kvShape = {batch, kvHeads, past + seq, dim};
  auto withPast = [&](Value cur, const Val *p) -> Value {
    if (!p)
      return cur;
    Val pastVal = *p;
    return ConcatOp::create(b, loc, tensorType(kvShape, q.dtype),
                            ValueRange{materialize(pastVal, loc), cur},
                            b.getI64IntegerAttr(2));
  };
  Value kt = withPast(k4, pk), vt = withPast(v4, pv);
  float scale = attrFloat(n, "scale", 0.0f);
  if (scale == 0.0f)
    scale = 1.0f / std::sqrt(static_cast<float>(dim));
  int64_t localWindow = attrInt(n, "local_window_size", -1);
  Value y = AttentionOp::create(
      b, loc, tensorType({batch, heads, seq, dim}, q.dtype), q4, kt, vt,
      Value(), b.getF32FloatAttr(scale), b.getBoolAttr(true),
      b.getI64IntegerAttr(localWindow >= 0 ? localWindow : 0),
      b.getI64IntegerAttr(0), b.getF32FloatAttr(softcap));
  Value out = mergeHeads(loc, y, q.dtype, batch, seq, heads, dim);
  if (failed(define(n, 0, opVal(out, q.dtype, {batch, seq, heads * dim}))))
    return failure();
  if (n.output_size() > 1 && !n.output(1).empty() &&
      failed(define(n, 1, opVal(kt, q.dtype, kvShape))))
    return failure();
  if (n.output_size() > 2 && !n.output(2).empty() &&
      failed(define(n, 2, opVal(vt, q.dtype, kvShape))))
    return failure();
  return success();
}

/// onnxruntime's contrib MatMulNBits: A [..., K] times a block-quantized
/// B [N, K] (4 or 8 bits, blocks of block_size along K; value (q - zp) *
/// scale, zero points packed uint8 or float, default the middle of the
/// range). The weight is dequantized to f32 at compile time, exactly the
/// values onnxruntime computes with.
LogicalResult Importer::matMulNBits(const onnx::NodeProto &n) {
  const Val *ap = input(n, 0), *bp = input(n, 1), *sp = input(n, 2),
            *zp = input(n, 3), *gp = input(n, 4), *biasP = input(n, 5);
  if (!ap || !bp || !sp)
    return err(n) << "needs A, B and scales";
  if (gp)
    return err(n) << "g_idx (act-order) is not supported";
  int64_t K = attrInt(n, "K", 0), N = attrInt(n, "N", 0);
  int64_t bits = attrInt(n, "bits", 4), block = attrInt(n, "block_size", 0);
  if (bits != 4 && bits != 8)
    return err(n) << "bits=" << bits << " is not supported (4 or 8)";
  if (K <= 0 || N <= 0 || block < 16 || (block & (block - 1)))
    return err(n) << "K, N must be positive and block_size a power of two "
                     ">= 16";
  Val a = *ap;
  if (a.dtype != kFloat || a.shape.empty() || a.shape.back() != K)
    return err(n) << "A must be f32 [..., " << K << "], got "
                  << shapeStr(a.shape);
  int64_t blocks = (K + block - 1) / block, blob = block * bits / 8;
  if (!bp->host || !sp->host || (zp && !zp->host) || (biasP && !biasP->host))
    return err(n) << "B, scales, zero_points and bias must be initializers";
  const HostTensor &B = *bp->host, &S = *sp->host;
  if (B.dtype != kUInt8 || B.numel() != N * blocks * blob)
    return err(n) << "B must be uint8 [" << N << ", " << blocks << ", "
                  << blob << "]";
  if (S.numel() != N * blocks || !isFloatDType(S.dtype))
    return err(n) << "scales must hold " << N * blocks << " floats";
  bool floatZp = zp && isFloatDType(zp->dtype);
  int64_t zpRow = bits == 4 ? (blocks + 1) / 2 : blocks;
  if (zp && !floatZp &&
      (zp->dtype != kUInt8 || zp->host->numel() != N * zpRow))
    return err(n) << "zero_points must be uint8 [" << N * zpRow << "]";
  if (zp && floatZp && zp->host->numel() != N * blocks)
    return err(n) << "float zero_points must hold " << N * blocks << " values";
  if (biasP && (biasP->dtype != kFloat || biasP->shape != Shape{N}))
    return err(n) << "bias must be f32 [" << N << "]";
  const auto *bytes = reinterpret_cast<const uint8_t *>(B.data);
  std::vector<double> w(static_cast<size_t>(K * N));
  double mid = bits == 4 ? 8 : 128;
  for (int64_t row = 0; row < N; ++row)
    for (int64_t blk = 0; blk < blocks; ++blk) {
      double scale = S.getF(row * blocks + blk);
      double zero = mid;
      if (zp && floatZp) {
        zero = zp->host->getF(row * blocks + blk);
      } else if (zp) {
        int64_t z = zp->host->getI(row * zpRow + (bits == 4 ? blk / 2 : blk));
        zero = bits == 4 ? ((z >> (4 * (blk % 2))) & 0xF) : z;
      }
      const uint8_t *q = bytes + (row * blocks + blk) * blob;
      for (int64_t i = 0; i < block && blk * block + i < K; ++i) {
        int64_t raw = bits == 4 ? (q[i / 2] >> (4 * (i % 2))) & 0xF : q[i];
        double value = (raw - zero) * scale;
        w[(blk * block + i) * N + row] = static_cast<float>(value);
      }
    }
  Location loc = nodeLoc(n);
  Val weight = hostVal(HostTensor::fromDoubles(kFloat, {K, N}, w));
  weight.name = n.input(1) + ".dequantized";
  Shape os = a.shape;
  os.back() = N;
  Value lhs = materialize(a, loc);
  int64_t rows = a.numel() / K;
  Value flat = make<ReshapeOp>(loc, tensorType({rows, K}, kFloat), lhs);
  Value y = make<MatMulOp>(loc, tensorType({rows, N}, kFloat), flat,
                           materialize(weight, loc));
  if (biasP) {
    Val bias = *biasP;
    y = AddOp::create(b, loc, tensorType({rows, N}, kFloat), y,
                      materialize(bias, loc));
  }
  y = make<ReshapeOp>(loc, tensorType(os, kFloat), y);
  return define(n, 0, opVal(y, kFloat, os));
}

/// ONNX Attention (opset 23) on 4-D [batch, heads, seq, head_dim] inputs:
/// past keys/values are concatenated (present_key/value), kv_num_heads <
/// q_num_heads is grouped-query attention, is_causal aligns the causal mask
/// with the last key (the new tokens follow the past).
LogicalResult Importer::attention(const onnx::NodeProto &n) {
  const Val *qp = input(n, 0), *kp = input(n, 1), *vp = input(n, 2);
  const Val *mp = input(n, 3), *pk = input(n, 4), *pv = input(n, 5);
  if (!qp || !kp || !vp)
    return err(n) << "needs Q, K and V";
  if (n.output_size() > 3 && !n.output(3).empty())
    return err(n) << "the qk_matmul_output output is not supported";
  // Soft-capping before the mask, as the ONNX reference (only a positive
  // softcap caps).
  float softcap = std::max(0.0f, attrFloat(n, "softcap", 0.0f));
  Val q = *qp, k = *kp, v = *vp;
  if (!isFloatDType(q.dtype) || k.dtype != q.dtype || v.dtype != q.dtype)
    return err(n) << "Q, K and V must share a float dtype";
  // 3-D [batch, seq, heads * d] inputs (q_num_heads / kv_num_heads): split
  // into 4-D heads; the output is merged back.
  bool threeD = q.shape.size() == 3;
  int64_t qHeads3 = 0, vDim3 = 0;
  if (threeD) {
    int64_t qh = attrInt(n, "q_num_heads", 0), kvh = attrInt(n, "kv_num_heads", 0);
    if (k.shape.size() != 3 || v.shape.size() != 3 || qh <= 0 || kvh <= 0 ||
        q.shape[2] % qh || k.shape[2] % kvh || v.shape[2] % kvh)
      return err(n) << "3-D Q, K, V need q_num_heads and kv_num_heads that "
                       "divide their widths";
    Location loc3 = nodeLoc(n);
    int64_t b3 = q.shape[0];
    auto split = [&](Val &t, int64_t heads) {
      int64_t d = t.shape[2] / heads;
      return opVal(splitHeads(loc3, materialize(t, loc3), t.dtype, b3,
                              t.shape[1], heads, d),
                   t.dtype, {b3, heads, t.shape[1], d});
    };
    qHeads3 = qh;
    vDim3 = v.shape[2] / kvh;
    q = split(q, qh);
    k = split(k, kvh);
    v = split(v, kvh);
  }
  if (q.shape.size() != 4 || k.shape.size() != 4 || v.shape.size() != 4)
    return err(n) << "Q, K, V must be 4-D [batch, heads, seq, head_dim] or "
                     "3-D [batch, seq, hidden]";
  if ((pk == nullptr) != (pv == nullptr))
    return err(n) << "past_key and past_value come together";
  Location loc = nodeLoc(n);
  auto withPast = [&](Val &cur, const Val *past) -> Val {
    if (!past)
      return cur;
    Val p = *past;
    Shape shape = cur.shape;
    shape[2] += p.shape[2];
    Value c = ConcatOp::create(b, loc, tensorType(shape, cur.dtype),
                               ValueRange{materialize(p, loc),
                                          materialize(cur, loc)},
                               b.getI64IntegerAttr(2));
    return opVal(c, cur.dtype, shape);
  };
  Val kt = withPast(k, pk), vt = withPast(v, pv);
  if (pk && (pk->shape.size() != 4 || pk->shape[1] != k.shape[1] ||
             pk->shape[3] != k.shape[3]))
    return err(n) << "past_key " << shapeStr(pk->shape)
                  << " does not match K " << shapeStr(k.shape);
  int64_t dim = q.shape[3];
  float scale = attrFloat(n, "scale", 1.0f / std::sqrt(static_cast<float>(dim)));
  Value mask;
  if (mp) {
    Val m = *mp;
    if (m.dtype == kBool) {
      // A boolean mask keeps the keys where it is true: 0 there, -inf
      // elsewhere, added to the scores.
      RankedTensorType mt = tensorType(m.shape, q.dtype);
      Value zero = ConstantOp::create(
          b, loc, mt, DenseElementsAttr::get(mt, b.getF32FloatAttr(0.0f)));
      Value ninf = ConstantOp::create(
          b, loc, mt,
          DenseElementsAttr::get(
              mt, b.getF32FloatAttr(-std::numeric_limits<float>::infinity())));
      mask = WhereOp::create(b, loc, mt, materialize(m, loc), zero, ninf);
    } else if (m.dtype == q.dtype) {
      mask = materialize(m, loc);
    } else {
      return err(n) << "the mask must be bool or Q's float dtype";
    }
  }
  Shape out = {q.shape[0], q.shape[1], q.shape[2], v.shape[3]};
  Value y = AttentionOp::create(
      b, loc, tensorType(out, q.dtype), materialize(q, loc),
      materialize(kt, loc), materialize(vt, loc), mask,
      b.getF32FloatAttr(scale), b.getBoolAttr(attrInt(n, "is_causal", 0) != 0),
      b.getI64IntegerAttr(0), b.getI64IntegerAttr(0),
      b.getF32FloatAttr(softcap));
  if (threeD) {
    Value merged = mergeHeads(loc, y, q.dtype, out[0], out[2], qHeads3, vDim3);
    if (failed(define(n, 0, opVal(merged, q.dtype,
                                   {out[0], out[2], qHeads3 * vDim3}))))
      return failure();
  } else if (failed(define(n, 0, opVal(y, q.dtype, out)))) {
    return failure();
  }
  if (n.output_size() > 1 && !n.output(1).empty() &&
      failed(define(n, 1, kt)))
    return failure();
  if (n.output_size() > 2 && !n.output(2).empty() &&
      failed(define(n, 2, vt)))
    return failure();
  return success();
}

LogicalResult Importer::layerNorm(const onnx::NodeProto &n) {
  const Val *x = input(n, 0), *s = input(n, 1), *bias = input(n, 2);
  if (!x || !s)
    return err(n) << "needs X and Scale";
  Val in = *x, scale = *s;
  int64_t rank = in.shape.size();
  int64_t axis = attrInt(n, "axis", -1);
  if (failed(normalizeAxis(n, axis, rank)))
    return failure();
  if (!isFloatDType(in.dtype))
    return err(n) << "needs a float input";
  if (scale.dtype != in.dtype || (bias && bias->dtype != in.dtype))
    return err(n) << "scale and bias must have the input's dtype";
  Shape normalized(in.shape.begin() + axis, in.shape.end());
  for (const Val *p : {static_cast<const Val *>(&scale), bias}) {
    if (!p)
      continue;
    auto s = broadcastShapes({&normalized, &p->shape});
    if (!s || *s != normalized)
      return err(n) << "scale/bias " << shapeStr(p->shape)
                    << " do not broadcast to the normalized dims "
                    << shapeStr(normalized);
  }
  float eps = attrFloat(n, "epsilon", 1e-5f);
  Location loc = nodeLoc(n);
  Value xv = materialize(in, loc), sv = materialize(scale, loc);
  Value bv;
  if (bias) {
    Val bb = *bias;
    bv = materialize(bb, loc);
  }
  RankedTensorType t = tensorType(in.shape, in.dtype);
  Value y = LayerNormOp::create(b, loc, t, xv, sv, bv, b.getI64IntegerAttr(axis),
                                b.getF32FloatAttr(eps))
                .getResult();
  if (failed(define(n, 0, opVal(y, in.dtype, in.shape))))
    return failure();
  if (n.output_size() < 2)
    return success();
  // Mean and InvStdDev outputs, computed with primitives.
  Shape ks = in.shape;
  std::vector<int64_t> axes;
  for (int64_t i = axis; i < rank; ++i) {
    ks[i] = 1;
    axes.push_back(i);
  }
  RankedTensorType kt = tensorType(ks, in.dtype);
  auto axesAttr = b.getDenseI64ArrayAttr(axes);
  Value mean = make<ReduceMeanOp>(loc, kt, xv, axesAttr, b.getBoolAttr(true));
  if (failed(define(n, 1, opVal(mean, in.dtype, ks))))
    return failure();
  if (n.output_size() < 3)
    return success();
  Value d = make<SubOp>(loc, t, xv, mean);
  Value var = make<ReduceMeanOp>(loc, kt, make<MulOp>(loc, t, d, d), axesAttr,
                                 b.getBoolAttr(true));
  Val epsVal = hostVal(HostTensor::fromDoubles(in.dtype, {}, {eps}));
  Value inv = make<ReciprocalOp>(
      loc, kt,
      make<SqrtOp>(loc, kt, make<AddOp>(loc, kt, var, materialize(epsVal, loc))));
  return define(n, 2, opVal(inv, in.dtype, ks));
}

Val Importer::sliceVal(Val &in, const Shape &starts, const Shape &steps,
                       const Shape &outShape, Location loc) {
  if (in.host && product(outShape) <= kMaxFoldElements) {
    std::vector<int64_t> src;
    Shape idx, st = strides(in.shape);
    for (int64_t k = 0; k < product(outShape); ++k) {
      unravel(k, outShape, idx);
      int64_t off = 0;
      for (size_t d = 0; d < idx.size(); ++d)
        off += (starts[d] + idx[d] * steps[d]) * st[d];
      src.push_back(off);
    }
    return hostVal(hostTake(*in.host, outShape, src));
  }
  Value v = make<SliceOp>(loc, tensorType(outShape, in.dtype),
                          materialize(in, loc), b.getDenseI64ArrayAttr(starts),
                          b.getDenseI64ArrayAttr(steps));
  return opVal(v, in.dtype, outShape);
}

LogicalResult Importer::slice(const onnx::NodeProto &n) {
  const Val *x = input(n, 0);
  if (!x)
    return err(n) << "missing input";
  Val in = *x;
  int64_t rank = in.shape.size();
  std::vector<int64_t> starts, ends, axes, steps;
  if (opset < 10) {
    starts = attrInts(n, "starts").value_or(std::vector<int64_t>{});
    ends = attrInts(n, "ends").value_or(std::vector<int64_t>{});
    axes = attrInts(n, "axes").value_or(std::vector<int64_t>{});
  } else {
    auto s = constInts(n, 1, "starts"), e = constInts(n, 2, "ends");
    if (failed(s) || failed(e))
      return err(n) << "needs constant starts and ends";
    starts = *s;
    ends = *e;
    if (input(n, 3)) {
      auto a = constInts(n, 3, "axes");
      if (failed(a))
        return failure();
      axes = *a;
    }
    if (input(n, 4)) {
      auto st = constInts(n, 4, "steps");
      if (failed(st))
        return failure();
      steps = *st;
    }
  }
  if (axes.empty())
    for (size_t i = 0; i < starts.size(); ++i)
      axes.push_back(i);
  if (steps.empty())
    steps.assign(starts.size(), 1);
  if (ends.size() != starts.size() || axes.size() != starts.size() ||
      steps.size() != starts.size())
    return err(n) << "starts, ends, axes and steps differ in length";
  Shape fullStarts(rank, 0), fullSteps(rank, 1), outShape = in.shape;
  for (size_t i = 0; i < axes.size(); ++i) {
    int64_t a = axes[i];
    if (failed(normalizeAxis(n, a, rank)))
      return failure();
    int64_t dim = in.shape[a], step = steps[i];
    if (step == 0)
      return err(n) << "step is 0";
    int64_t s = starts[i], e = ends[i];
    if (s < 0) s += dim;
    if (e < 0) e += dim;
    int64_t len;
    if (step > 0) {
      s = std::clamp<int64_t>(s, 0, dim);
      e = std::clamp<int64_t>(e, 0, dim);
      len = e > s ? (e - s + step - 1) / step : 0;
    } else {
      s = std::clamp<int64_t>(s, -1, dim - 1);
      e = std::clamp<int64_t>(e, -1, dim - 1);
      len = s > e ? (s - e + (-step) - 1) / (-step) : 0;
    }
    fullStarts[a] = len ? s : 0;
    fullSteps[a] = step;
    outShape[a] = len;
  }
  // An empty slice is known at compile time whatever its input: Concat
  // drops it (Phi-3's `x[..., rotary_dim:]` when all dims rotate); any
  // other use reports the empty tensor.
  if (product(outShape) == 0)
    return define(n, 0, hostVal(HostTensor::fromBytes(in.dtype, outShape, {})));
  return define(n, 0, sliceVal(in, fullStarts, fullSteps, outShape, nodeLoc(n)));
}

LogicalResult Importer::split(const onnx::NodeProto &n) {
  const Val *x = input(n, 0);
  if (!x)
    return err(n) << "missing input";
  Val in = *x;
  int64_t rank = in.shape.size();
  int64_t axis = attrInt(n, "axis", 0);
  if (failed(normalizeAxis(n, axis, rank)))
    return failure();
  int64_t dim = in.shape[axis];
  int outs = n.output_size();
  std::vector<int64_t> sizes;
  if (opset < 13) {
    sizes = attrInts(n, "split").value_or(std::vector<int64_t>{});
  } else if (input(n, 1)) {
    auto s = constInts(n, 1, "split");
    if (failed(s))
      return failure();
    sizes = *s;
  }
  if (sizes.empty()) {
    int64_t parts = attrInt(n, "num_outputs", outs);
    if (parts <= 0)
      return err(n) << "needs at least one output";
    int64_t chunk = (dim + parts - 1) / parts;
    for (int64_t i = 0; i < parts; ++i)
      sizes.push_back(std::min(chunk, dim - i * chunk));
  }
  if (static_cast<int>(sizes.size()) != outs)
    return err(n) << sizes.size() << " split sizes for " << outs << " outputs";
  int64_t total = 0;
  for (int64_t s : sizes)
    total += s;
  if (total != dim)
    return err(n) << "split sizes sum to " << total << ", dim is " << dim;
  int64_t offset = 0;
  for (int i = 0; i < outs; ++i) {
    Shape starts(rank, 0), steps(rank, 1), os = in.shape;
    starts[axis] = offset;
    os[axis] = sizes[i];
    offset += sizes[i];
    if (sizes[i] == 0)
      return err(n) << "output " << i << " is empty, not supported yet";
    if (failed(define(n, i, sliceVal(in, starts, steps, os, nodeLoc(n)))))
      return failure();
  }
  return success();
}

LogicalResult Importer::gather(const onnx::NodeProto &n) {
  const Val *x = input(n, 0), *ix = input(n, 1);
  if (!x || !ix)
    return err(n) << "needs data and indices";
  Val in = *x, idx = *ix;
  if (idx.dtype != kInt64 && idx.dtype != kInt32)
    return err(n) << "indices must be int32 or int64";
  int64_t rank = in.shape.size();
  int64_t axis = attrInt(n, "axis", 0);
  if (failed(normalizeAxis(n, axis, rank)))
    return failure();
  Shape os(in.shape.begin(), in.shape.begin() + axis);
  os.insert(os.end(), idx.shape.begin(), idx.shape.end());
  os.insert(os.end(), in.shape.begin() + axis + 1, in.shape.end());
  int64_t dim = in.shape[axis];
  if (idx.host) {
    for (int64_t i = 0; i < idx.numel(); ++i) {
      int64_t k = idx.host->getI(i);
      if (k < -dim || k >= dim)
        return err(n) << "index " << k << " out of range for dim " << dim;
    }
  }
  if (in.host && idx.host && product(os) <= kMaxFoldElements) {
    Shape st = strides(in.shape), oi;
    int64_t ir = idx.shape.size();
    std::vector<int64_t> src;
    for (int64_t k = 0; k < product(os); ++k) {
      unravel(k, os, oi);
      int64_t flatIdx = 0;
      for (int64_t j = 0; j < ir; ++j)
        flatIdx = flatIdx * idx.shape[j] + oi[axis + j];
      int64_t g = idx.host->getI(flatIdx);
      if (g < 0)
        g += dim;
      int64_t off = g * st[axis];
      for (int64_t d = 0; d < axis; ++d)
        off += oi[d] * st[d];
      for (int64_t d = axis + 1; d < rank; ++d)
        off += oi[d - 1 + ir] * st[d];
      src.push_back(off);
    }
    return define(n, 0, hostVal(hostTake(*in.host, os, src)));
  }
  Location loc = nodeLoc(n);
  Value v = make<GatherOp>(loc, tensorType(os, in.dtype), materialize(in, loc),
                           materialize(idx, loc), b.getI64IntegerAttr(axis));
  return define(n, 0, opVal(v, in.dtype, os));
}

LogicalResult Importer::concat(const onnx::NodeProto &n) {
  std::vector<Val> ins;
  for (int i = 0; i < n.input_size(); ++i)
    if (const Val *v = input(n, i))
      ins.push_back(*v);
  if (ins.empty())
    return err(n) << "needs inputs";
  int64_t rank = ins[0].shape.size();
  int64_t axis = attrInt(n, "axis", 0);
  if (failed(normalizeAxis(n, axis, rank)))
    return failure();
  Shape os = ins[0].shape;
  os[axis] = 0;
  for (auto &v : ins) {
    if (static_cast<int64_t>(v.shape.size()) != rank || v.dtype != ins[0].dtype)
      return err(n) << "inputs differ in rank or dtype";
    for (int64_t d = 0; d < rank; ++d)
      if (d != axis && v.shape[d] != ins[0].shape[d])
        return err(n) << "input shapes differ off the axis: "
                      << shapeStr(v.shape) << " vs " << shapeStr(ins[0].shape);
    os[axis] += v.shape[axis];
  }
  // Empty pieces contribute nothing.
  std::vector<Val> parts;
  for (auto &v : ins)
    if (v.numel() > 0)
      parts.push_back(v);
  if (parts.empty())
    return err(n) << "all inputs are empty";
  bool allHost = llvm::all_of(parts, [](const Val &v) { return bool(v.host); });
  if (allHost && product(os) <= kMaxFoldElements) {
    size_t es = dtypeSize(ins[0].dtype);
    int64_t outer = product(Shape(os.begin(), os.begin() + axis));
    int64_t inner = product(Shape(os.begin() + axis + 1, os.end()));
    std::vector<char> bytes;
    for (int64_t o = 0; o < outer; ++o)
      for (auto &v : parts) {
        size_t chunk = v.shape[axis] * inner * es;
        const char *p = v.host->data + o * chunk;
        bytes.insert(bytes.end(), p, p + chunk);
      }
    return define(n, 0,
                  hostVal(HostTensor::fromBytes(ins[0].dtype, os, std::move(bytes))));
  }
  Location loc = nodeLoc(n);
  if (parts.size() == 1)
    return define(n, 0, parts[0]);
  SmallVector<Value> vs;
  for (auto &v : parts)
    vs.push_back(materialize(v, loc));
  Value r = make<ConcatOp>(loc, tensorType(os, ins[0].dtype), vs,
                           b.getI64IntegerAttr(axis));
  return define(n, 0, opVal(r, ins[0].dtype, os));
}

LogicalResult Importer::constant(const onnx::NodeProto &n) {
  if (n.attribute_size() != 1)
    return err(n) << "needs exactly one value attribute";
  const auto &a = n.attribute(0);
  auto e = [&]() { return err(n); };
  if (a.name() == "value") {
    auto t = decodeTensor(a.t(), e);
    if (failed(t))
      return failure();
    return define(n, 0, hostVal(*t));
  }
  if (a.name() == "value_float")
    return define(n, 0, hostVal(HostTensor::fromDoubles(kFloat, {}, {a.f()})));
  if (a.name() == "value_int")
    return define(n, 0, hostVal(HostTensor::fromInts(kInt64, {}, {a.i()})));
  if (a.name() == "value_floats") {
    std::vector<double> v(a.floats().begin(), a.floats().end());
    return define(n, 0,
                  hostVal(HostTensor::fromDoubles(kFloat, {int64_t(v.size())}, v)));
  }
  if (a.name() == "value_ints") {
    std::vector<int64_t> v(a.ints().begin(), a.ints().end());
    return define(n, 0,
                  hostVal(HostTensor::fromInts(kInt64, {int64_t(v.size())}, v)));
  }
  return err(n) << "unsupported attribute '" << a.name() << "'";
}

//===----------------------------------------------------------------------===//
// Nodes
//===----------------------------------------------------------------------===//

LogicalResult Importer::importNode(const onnx::NodeProto &n) {
  const std::string &op = n.op_type();
  // onnxruntime registers SimplifiedLayerNormalization in the default
  // domain, its Skip form in com.microsoft.
  if (op == "SimplifiedLayerNormalization" ||
      (n.domain() == "com.microsoft" &&
       op == "SkipSimplifiedLayerNormalization"))
    return simplifiedLayerNorm(n, op == "SkipSimplifiedLayerNormalization");
  if (n.domain() == "com.microsoft") {
    for (int i = 0; i < n.input_size(); ++i)
      if (!n.input(i).empty() && !values.count(n.input(i)))
        return err(n) << "input '" << n.input(i) << "' is not defined before it";
    if (op == "RotaryEmbedding")
      return contribRotaryEmbedding(n);
    if (op == "GroupQueryAttention")
      return groupQueryAttention(n);
    if (op == "MatMulNBits")
      return matMulNBits(n);
  }
  // uint8 tensors are read on the host only (MatMulNBits' packed blocks).
  for (int i = 0; i < n.input_size(); ++i)
    if (const Val *v = input(n, i); v && v->dtype == kUInt8)
      return err(n) << "input '" << n.input(i) << "' is uint8, which is "
                    << "supported only as MatMulNBits' packed weights";
  if (!n.domain().empty() && n.domain() != "ai.onnx")
    return err(n) << "unsupported op '" << op << "' (domain '" << n.domain()
                  << "')";
  for (int i = 0; i < n.input_size(); ++i)
    if (!n.input(i).empty() && !values.count(n.input(i)))
      return err(n) << "input '" << n.input(i) << "' is not defined before it";

  static const llvm::StringSet<llvm::MallocAllocator> unaryOps = {
      "Neg", "Abs", "Exp", "Log", "Tanh", "Erf", "Sigmoid", "Relu", "Sqrt",
      "Reciprocal", "Not", "Floor", "Ceil", "Sin", "Cos", "Sign", "Softplus",
      "Cast", "LeakyRelu", "Elu", "Gelu", "Clip", "Identity", "Round"};
  static const llvm::StringSet<llvm::MallocAllocator> binaryOps = {
      "Add", "Sub", "Mul", "Div", "Pow", "And", "Or", "Xor", "Equal", "Less",
      "LessOrEqual", "Greater", "GreaterOrEqual", "Where", "Mod"};
  if (unaryOps.contains(op))
    return unary(n, op);
  if (op == "Dropout") {
    if (n.output_size() > 1 && !n.output(1).empty())
      return err(n) << "the mask output is not supported";
    // Inference only: a training_mode that is not a constant false would
    // drop values at random.
    if (const Val *training = input(n, 2))
      if (!training->host || training->host->getI(0) != 0)
        return err(n) << "training mode is not supported (training_mode "
                         "must be a constant false)";
    return unary(n, "Identity");
  }
  if (binaryOps.contains(op))
    return binary(n, op);
  if (op == "Max" || op == "Min" || op == "Sum" || op == "Mean") {
    if (n.input_size() == 2)
      return op == "Sum" ? binary(n, "Add") : op == "Mean" ? variadic(n, op)
                                                           : binary(n, op);
    return variadic(n, op);
  }
  if (op == "MatMul")
    return matmul(n);
  if (op == "Gemm")
    return gemm(n);
  if (op == "ReduceSum" || op == "ReduceMean" || op == "ReduceMax" ||
      op == "ReduceMin" || op == "ReduceProd")
    return reduce(n, op);
  if (op == "Softmax" || op == "LogSoftmax")
    return softmax(n, op == "LogSoftmax");
  if (op == "LayerNormalization")
    return layerNorm(n);
  if (op == "RMSNormalization")
    return rmsNormalization(n);
  if (op == "RotaryEmbedding")
    return rotaryEmbedding(n);
  if (op == "Attention")
    return attention(n);
  if (op == "Slice")
    return slice(n);
  if (op == "Split")
    return split(n);
  if (op == "Gather")
    return gather(n);
  if (op == "Concat")
    return concat(n);
  if (op == "Constant")
    return constant(n);

  if (op == "ReduceL1" || op == "ReduceL2" || op == "ReduceSumSquare" ||
      op == "ReduceLogSum" || op == "ReduceLogSumExp")
    return composedReduce(n, op);
  if (op == "ArgMax" || op == "ArgMin")
    return argReduce(n, op == "ArgMax");
  if (op == "GatherElements")
    return gatherElements(n);
  if (op == "Selu" || op == "HardSigmoid" || op == "ThresholdedRelu" ||
      op == "HardSwish" || op == "Softsign" || op == "PRelu")
    return activation(n, op);
  if (op == "CastLike") {
    const Val *target = input(n, 1);
    if (!target)
      return err(n) << "needs a target_type input";
    onnx::NodeProto cast = n;
    cast.set_op_type("Cast");
    cast.clear_attribute();
    auto *to = cast.add_attribute();
    to->set_name("to");
    to->set_type(onnx::AttributeProto::INT);
    to->set_i(target->dtype);
    cast.mutable_input()->RemoveLast();
    return unary(cast, "Cast");
  }

  const Val *x0 = input(n, 0);
  if (op == "Shape" || op == "Size") {
    if (!x0)
      return err(n) << "missing input";
    Shape s = x0->shape;
    if (op == "Size")
      return define(n, 0, hostVal(HostTensor::fromInts(kInt64, {}, {x0->numel()})));
    int64_t rank = s.size();
    int64_t start = attrInt(n, "start", 0), end = attrInt(n, "end", rank);
    if (start < 0) start += rank;
    if (end < 0) end += rank;
    start = std::clamp<int64_t>(start, 0, rank);
    end = std::clamp<int64_t>(end, start, rank);
    std::vector<int64_t> v(s.begin() + start, s.begin() + end);
    return define(n, 0,
                  hostVal(HostTensor::fromInts(kInt64, {int64_t(v.size())}, v)));
  }
  if (op == "Reshape") {
    auto shape = constInts(n, 1, "shape");
    if (!x0 || failed(shape))
      return err(n) << "needs data and a constant shape";
    Shape s = *shape;
    bool allowZero = attrInt(n, "allowzero", 0);
    int64_t infer = -1, known = 1;
    for (size_t i = 0; i < s.size(); ++i) {
      if (s[i] == 0 && !allowZero) {
        if (i >= x0->shape.size())
          return err(n) << "shape entry 0 at " << i << " has no input dim";
        s[i] = x0->shape[i];
      }
      if (s[i] == -1) {
        if (infer >= 0)
          return err(n) << "shape has two -1 entries";
        infer = i;
      } else if (s[i] < 0) {
        return err(n) << "shape entry " << s[i] << " is negative";
      } else {
        known *= s[i];
      }
    }
    if (infer >= 0) {
      if (known == 0 || x0->numel() % known)
        return err(n) << "cannot infer -1 reshaping " << shapeStr(x0->shape)
                      << " to " << shapeStr(*shape);
      s[infer] = x0->numel() / known;
    }
    return reshapeTo(n, *x0, s);
  }
  if (op == "Flatten") {
    if (!x0)
      return err(n) << "missing input";
    int64_t rank = x0->shape.size();
    int64_t axis = attrInt(n, "axis", 1);
    if (axis < -rank || axis > rank)
      return err(n) << "axis " << axis << " out of range for rank " << rank;
    if (axis < 0)
      axis += rank;
    int64_t outer = product(Shape(x0->shape.begin(), x0->shape.begin() + axis));
    return reshapeTo(n, *x0, {outer, x0->numel() / std::max<int64_t>(outer, 1)});
  }
  if (op == "Unsqueeze" || op == "Squeeze") {
    if (!x0)
      return err(n) << "missing input";
    std::vector<int64_t> axes;
    if (opset < 13) {
      axes = attrInts(n, "axes").value_or(std::vector<int64_t>{});
    } else if (input(n, 1)) {
      auto a = constInts(n, 1, "axes");
      if (failed(a))
        return failure();
      axes = *a;
    }
    Shape s = x0->shape;
    if (op == "Unsqueeze") {
      int64_t outRank = s.size() + axes.size();
      for (int64_t &a : axes)
        if (a < 0)
          a += outRank;
      llvm::sort(axes);
      for (int64_t a : axes) {
        if (a < 0 || a > static_cast<int64_t>(s.size()))
          return err(n) << "axis out of range";
        s.insert(s.begin() + a, 1);
      }
    } else {
      int64_t rank = s.size();
      Shape out;
      for (int64_t &a : axes)
        if (a < 0)
          a += rank;
      for (int64_t i = 0; i < rank; ++i) {
        bool drop = axes.empty() ? s[i] == 1 : llvm::is_contained(axes, i);
        if (drop && s[i] != 1)
          return err(n) << "cannot squeeze dim " << i << " of size " << s[i];
        if (!drop)
          out.push_back(s[i]);
      }
      s = out;
    }
    return reshapeTo(n, *x0, s);
  }
  if (op == "Transpose") {
    if (!x0)
      return err(n) << "missing input";
    Val in = *x0;
    int64_t rank = in.shape.size();
    std::vector<int64_t> perm;
    if (auto p = attrInts(n, "perm"))
      perm = *p;
    else
      for (int64_t i = rank - 1; i >= 0; --i)
        perm.push_back(i);
    if (static_cast<int64_t>(perm.size()) != rank)
      return err(n) << "perm length differs from rank";
    Shape os;
    for (int64_t p : perm) {
      if (p < 0 || p >= rank)
        return err(n) << "perm entry " << p << " out of range";
      os.push_back(in.shape[p]);
    }
    Location loc = nodeLoc(n);
    Value v = make<TransposeOp>(loc, tensorType(os, in.dtype),
                                materialize(in, loc), b.getDenseI64ArrayAttr(perm));
    return define(n, 0, opVal(v, in.dtype, os));
  }
  if (op == "Expand") {
    auto shape = constInts(n, 1, "shape");
    if (!x0 || failed(shape))
      return err(n) << "needs data and a constant shape";
    Shape target = *shape;
    auto os = broadcastShapes({&x0->shape, &target});
    if (!os)
      return err(n) << "cannot expand " << shapeStr(x0->shape) << " to "
                    << shapeStr(target);
    Val in = *x0;
    if (*os == in.shape)
      return define(n, 0, in);
    if (in.host && product(*os) <= kMaxFoldElements) {
      std::vector<int64_t> src;
      Shape idx;
      for (int64_t k = 0; k < product(*os); ++k) {
        unravel(k, *os, idx);
        src.push_back(broadcastIndex(in.shape, idx));
      }
      return define(n, 0, hostVal(hostTake(*in.host, *os, src)));
    }
    Location loc = nodeLoc(n);
    Value v = make<BroadcastOp>(loc, tensorType(*os, in.dtype),
                                materialize(in, loc));
    return define(n, 0, opVal(v, in.dtype, *os));
  }
  if (op == "ConstantOfShape") {
    auto shape = constInts(n, 0, "shape");
    if (failed(shape))
      return err(n) << "needs a constant shape";
    int32_t dtype = kFloat;
    double fv = 0;
    int64_t iv = 0;
    if (const auto *a = attr(n, "value")) {
      auto t = decodeTensor(a->t(), [&]() { return err(n); });
      if (failed(t))
        return failure();
      if (t->numel() != 1)
        return err(n) << "value must hold one element";
      dtype = t->dtype;
      fv = t->getF(0);
      iv = t->getI(0);
    }
    Shape s = *shape;
    if (product(s) == 0)
      return err(n) << "produces an empty tensor, not supported yet";
    int64_t count = product(s);
    HostTensor h = isFloatDType(dtype)
                       ? HostTensor::fromDoubles(dtype, s, std::vector<double>(count, fv))
                       : HostTensor::fromInts(dtype, s, std::vector<int64_t>(count, iv));
    return define(n, 0, hostVal(std::move(h)));
  }
  if (op == "Range") {
    const Val *st = input(n, 0), *li = input(n, 1), *de = input(n, 2);
    if (!st || !li || !de)
      return err(n) << "needs start, limit and delta";
    const char *names[] = {"start", "limit", "delta"};
    for (int i = 0; i < 3; ++i)
      if (failed(constInts(n, i, names[i])))
        return failure();
    int32_t dt = st->dtype;
    if (isFloatDType(dt)) {
      double s = st->host->getF(0), l = li->host->getF(0), d = de->host->getF(0);
      if (d == 0)
        return err(n) << "delta is 0";
      int64_t cnt = std::max<int64_t>(std::ceil((l - s) / d), 0);
      std::vector<double> v;
      for (int64_t i = 0; i < cnt; ++i)
        v.push_back(s + i * d);
      return define(n, 0, hostVal(HostTensor::fromDoubles(dt, {cnt}, v)));
    }
    int64_t s = st->host->getI(0), l = li->host->getI(0), d = de->host->getI(0);
    if (d == 0)
      return err(n) << "delta is 0";
    int64_t cnt = std::max<int64_t>((l - s + d + (d > 0 ? -1 : 1)) / d, 0);
    std::vector<int64_t> v;
    for (int64_t i = 0; i < cnt; ++i)
      v.push_back(s + i * d);
    return define(n, 0, hostVal(HostTensor::fromInts(dt, {cnt}, v)));
  }
  if (op == "Trilu") {
    if (!x0)
      return err(n) << "missing input";
    if (x0->shape.size() < 2)
      return err(n) << "needs rank >= 2";
    int64_t k = 0;
    if (input(n, 1)) {
      auto kv = constInts(n, 1, "k");
      if (failed(kv))
        return failure();
      k = (*kv)[0];
    }
    Val in = *x0;
    Location loc = nodeLoc(n);
    Value v = make<TriluOp>(loc, tensorType(in.shape, in.dtype),
                            materialize(in, loc),
                            b.getBoolAttr(attrInt(n, "upper", 1)),
                            b.getI64IntegerAttr(k));
    return define(n, 0, opVal(v, in.dtype, in.shape));
  }
  return err(n) << "unsupported op '" << op << "' (opset " << opset << ")";
}

OwningOpRef<ModuleOp> Importer::run(std::shared_ptr<onnx::ModelProto> model) {
  store.keepAlive(model);
  for (const auto &o : model->opset_import())
    if (o.domain().empty() || o.domain() == "ai.onnx")
      opset = o.version();
  const onnx::GraphProto &g = model->graph();
  Location fileLoc = FileLineColLoc::get(&ctx, modelName, 0, 0);
  OwningOpRef<ModuleOp> module = ModuleOp::create(fileLoc);

  // Initializers first: graph inputs of the same name are overridable
  // defaults, which an ahead-of-time compiler treats as constants.
  for (const auto &t : g.initializer()) {
    auto h = decodeTensor(t, [&]() {
      return emitError(fileLoc) << "initializer '" << t.name() << "': ";
    });
    if (failed(h))
      return nullptr;
    values[t.name()] = hostVal(*h);
    values[t.name()].name = t.name();
  }
  SmallVector<Type> argTypes;
  SmallVector<std::string> argNames;
  SmallVector<Val *> argVals;
  for (const auto &vi : g.input()) {
    if (values.count(vi.name()))
      continue;
    auto v = graphInput(vi);
    if (failed(v))
      return nullptr;
    auto bound = opts.constInputs.find(vi.name());
    if (bound != opts.constInputs.end()) {
      if (bound->second.dtype != v->dtype || bound->second.shape != v->shape) {
        emitError(fileLoc) << "--const-input " << vi.name() << ": "
                           << dtypeName(bound->second.dtype)
                           << shapeStr(bound->second.shape) << " given, graph "
                           << "input is " << dtypeName(v->dtype)
                           << shapeStr(v->shape);
        return nullptr;
      }
      values[vi.name()] = hostVal(bound->second);
      continue;
    }
    argTypes.push_back(tensorType(v->shape, v->dtype));
    argNames.push_back(vi.name());
    values[vi.name()] = *v;
    argVals.push_back(&values[vi.name()]);
  }
  for (const auto &entry : opts.constInputs) {
    const std::string &name = entry.first;
    if (!llvm::any_of(g.input(), [&](const auto &vi) { return vi.name() == name; })) {
      emitError(fileLoc) << "--const-input " << name
                         << ": the graph has no input of that name";
      return nullptr;
    }
  }

  auto func = func::FuncOp::create(fileLoc, "main",
                                   b.getFunctionType(argTypes, {}));
  module->push_back(func);
  Block *entry = func.addEntryBlock();
  for (auto [i, v] : llvm::enumerate(argVals))
    v->value = entry->getArgument(i);
  b.setInsertionPointToStart(entry);

  for (const auto &n : g.node())
    if (failed(importNode(n)))
      return nullptr;
  // Checked after the nodes: an empty input that a node needs as a
  // compile-time constant gets that (more useful) error first.
  for (auto [i, arg] : llvm::enumerate(entry->getArguments()))
    if (!arg.use_empty() &&
        llvm::is_contained(cast<RankedTensorType>(arg.getType()).getShape(), 0)) {
      emitError(fileLoc) << "graph input '" << argNames[i]
                         << "' is empty; empty run-time tensors are not "
                            "supported (bind it with --const-input if it is "
                            "a constant)";
      return nullptr;
    }

  SmallVector<Value> results;
  SmallVector<Type> resultTypes;
  SmallVector<Attribute> outNames, inNames;
  for (const auto &o : g.output()) {
    auto it = values.find(o.name());
    if (it == values.end()) {
      emitError(fileLoc) << "graph output '" << o.name()
                         << "' is produced by no node";
      return nullptr;
    }
    if (it->second.dtype == kUInt8) {
      emitError(fileLoc) << "graph output '" << o.name()
                         << "' is uint8, which is supported only as "
                            "MatMulNBits' packed weights";
      return nullptr;
    }
    Value v = materialize(it->second, fileLoc);
    results.push_back(v);
    resultTypes.push_back(v.getType());
    outNames.push_back(b.getStringAttr(o.name()));
  }
  for (const auto &name : argNames)
    inNames.push_back(b.getStringAttr(name));
  func::ReturnOp::create(b, fileLoc, results);
  func.setType(b.getFunctionType(argTypes, resultTypes));
  func->setAttr("kiln.input_names", b.getArrayAttr(inNames));
  func->setAttr("kiln.output_names", b.getArrayAttr(outNames));
  (*module)->setAttr("kiln.source", b.getStringAttr(modelName));
  return module;
}

OwningOpRef<ModuleOp> importModel(std::shared_ptr<onnx::ModelProto> model,
                                  MLIRContext &context, WeightStore &weights,
                                  const OnnxImportOptions &options,
                                  std::string baseDir, std::string name) {
  context.loadDialect<KilnDialect, func::FuncDialect>();
  Importer imp(context, weights, options, std::move(baseDir), std::move(name));
  return imp.run(std::move(model));
}

} // namespace

/// A binary .onnx file's model, or null with the error emitted.
static std::shared_ptr<onnx::ModelProto> parseModelFile(StringRef path,
                                                        Location loc) {
  auto file = llvm::MemoryBuffer::getFile(path, /*IsText=*/false,
                                          /*RequiresNullTerminator=*/false);
  if (!file) {
    emitError(loc) << "cannot read '" << path
                   << "': " << file.getError().message();
    return nullptr;
  }
  auto model = std::make_shared<onnx::ModelProto>();
  llvm::StringRef data = (*file)->getBuffer();
  if (data.size() > INT32_MAX ||
      !model->ParseFromArray(data.data(), static_cast<int>(data.size()))) {
    emitError(loc) << "'" << path << "' is not a valid ONNX model (protobuf "
                   << "parse failed; truncated or not .onnx?)";
    return nullptr;
  }
  if (!model->has_graph()) {
    emitError(loc) << "'" << path << "' has no graph";
    return nullptr;
  }
  return model;
}

OwningOpRef<ModuleOp> importOnnxFile(StringRef path, MLIRContext &context,
                                     WeightStore &weights,
                                     const OnnxImportOptions &options) {
  Location loc = FileLineColLoc::get(&context, path, 0, 0);
  std::shared_ptr<onnx::ModelProto> model = parseModelFile(path, loc);
  if (!model)
    return nullptr;
  std::string dir = llvm::sys::path::parent_path(path).str();
  return importModel(std::move(model), context, weights, options,
                     dir.empty() ? "." : dir,
                     llvm::sys::path::filename(path).str());
}

OwningOpRef<ModuleOp> importOnnxDecoderFile(StringRef path,
                                            MLIRContext &context,
                                            WeightStore &weights,
                                            const OnnxImportOptions &options,
                                            int64_t prefillChunk,
                                            int64_t maxContext,
                                            ArrayRef<int64_t> smallerPrefillChunks) {
  Location loc = FileLineColLoc::get(&context, path, 0, 0);
  std::shared_ptr<onnx::ModelProto> model = parseModelFile(path, loc);
  if (!model)
    return nullptr;
  // The sequence dim is the token ids' dim 1, the past length the first
  // past input's dim 2 (HF: past_key_values.N.key [batch, heads, past, d]).
  std::string seqDim, pastDim;
  for (const onnx::ValueInfoProto &in : model->graph().input()) {
    const auto &dims = in.type().tensor_type().shape().dim();
    if (seqDim.empty() && dims.size() == 2 && dims[1].has_dim_param())
      seqDim = dims[1].dim_param();
    if (pastDim.empty() && llvm::StringRef(in.name()).contains("past") &&
        dims.size() == 4 && dims[2].has_dim_param())
      pastDim = dims[2].dim_param();
  }
  if (seqDim.empty() || pastDim.empty()) {
    emitError(loc) << "'" << path << "' is not a decoder with a KV cache: "
                   << "expected token ids [batch, seq] and past_key_values "
                   << "inputs [batch, heads, past_seq, head_dim] with "
                   << "symbolic seq and past_seq dims";
    return nullptr;
  }
  std::string dir = llvm::sys::path::parent_path(path).str();
  OwningOpRef<ModuleOp> result;
  std::vector<std::pair<std::string, int64_t>> steps = {{"prefill", prefillChunk},
                                                        {"decode", 1}};
  for (int64_t n : smallerPrefillChunks) {
    if (n <= 1 || n >= prefillChunk) {
      emitError(loc) << "a smaller prefill chunk must be in [2, " << prefillChunk
                     << "), not " << n;
      return nullptr;
    }
    steps.emplace_back("prefill_" + std::to_string(n), n);
  }
  for (const auto &[name, seq] : steps) {
    OnnxImportOptions o = options;
    o.dims[seqDim] = seq;
    // The largest past this function can see: kiln-kv-layout replaces every
    // use of it, and a sliding window shorter than the context shows in the
    // folded mask.
    int64_t past = std::max<int64_t>(1, maxContext - seq);
    o.dims[pastDim] = past;
    // Batch 1 has no padding: an attention_mask input is all ones over
    // past + new, which folds into the causal mask kiln-kv-layout reads.
    for (const onnx::ValueInfoProto &in : model->graph().input())
      if (in.name() == "attention_mask" && !o.constInputs.count(in.name())) {
        const auto &dims = in.type().tensor_type().shape().dim();
        if (dims.size() == 2 && dims[1].has_dim_param())
          o.dims[dims[1].dim_param()] = past + seq;
        std::vector<int64_t> ones(past + seq, 1);
        std::vector<char> bytes(ones.size() * sizeof(int64_t));
        std::memcpy(bytes.data(), ones.data(), bytes.size());
        o.constInputs[in.name()] = HostTensor::fromBytes(
            kInt64, {1, past + seq}, std::move(bytes));
      }
    o.maxInlineFolded = std::max<int64_t>(o.maxInlineFolded, 1 << 16);
    OwningOpRef<ModuleOp> m = importModel(model, context, weights, o,
                                          dir.empty() ? "." : dir,
                                          llvm::sys::path::filename(path).str());
    if (!m)
      return nullptr;
    auto fn = *m->getOps<func::FuncOp>().begin();
    fn.setName(name);
    if (!result) {
      result = std::move(m);
    } else {
      fn->remove();
      result->push_back(fn);
    }
  }
  return result;
}

OwningOpRef<ModuleOp> importOnnxText(StringRef text, MLIRContext &context,
                                     WeightStore &weights,
                                     const OnnxImportOptions &options) {
  auto model = std::make_shared<onnx::ModelProto>();
  std::string owned = text.str();
  onnx::OnnxParser parser(owned.c_str());
  auto status = parser.Parse(*model);
  if (!status.IsOK()) {
    emitError(UnknownLoc::get(&context))
        << "textual ONNX does not parse: " << status.ErrorMessage();
    return nullptr;
  }
  return importModel(std::move(model), context, weights, options, ".",
                     "<text>");
}

} // namespace kiln
