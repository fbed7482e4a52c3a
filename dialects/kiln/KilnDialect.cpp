//===- KilnDialect.cpp - The kiln dialect ---------------------------------===//
#include "dialects/kiln/KilnDialect.h"

#include "mlir/IR/Builders.h"
#include "mlir/IR/OpImplementation.h"

using namespace mlir;
using namespace kiln;

#include "dialects/kiln/KilnDialect.cpp.inc"

void KilnDialect::initialize() {
  addOperations<
#define GET_OP_LIST
#include "dialects/kiln/KilnOps.cpp.inc"
      >();
}

/// Static element count, or -1 when a dim is symbolic.
static int64_t staticNumElements(ShapedType type) {
  return type.hasStaticShape() ? type.getNumElements() : -1;
}

LogicalResult MatMulOp::verify() {
  auto lhs = cast<RankedTensorType>(getLhs().getType());
  auto rhs = cast<RankedTensorType>(getRhs().getType());
  if (lhs.getRank() < 2 || rhs.getRank() < 2)
    return emitOpError("operands must have rank >= 2");
  int64_t k0 = lhs.getShape().back();
  int64_t k1 = rhs.getShape()[rhs.getRank() - 2];
  if (!ShapedType::isDynamic(k0) && !ShapedType::isDynamic(k1) && k0 != k1)
    return emitOpError("contraction dims differ: ") << k0 << " vs " << k1;
  return success();
}

LogicalResult ReshapeOp::verify() {
  int64_t in = staticNumElements(cast<ShapedType>(getInput().getType()));
  int64_t out = staticNumElements(cast<ShapedType>(getResult().getType()));
  if (in >= 0 && out >= 0 && in != out)
    return emitOpError("element count changes from ") << in << " to " << out;
  return success();
}

LogicalResult TransposeOp::verify() {
  auto type = cast<RankedTensorType>(getInput().getType());
  ArrayRef<int64_t> perm = getPerm();
  if (static_cast<int64_t>(perm.size()) != type.getRank())
    return emitOpError("perm has ") << perm.size() << " entries for rank "
                                    << type.getRank();
  llvm::SmallVector<bool> seen(perm.size(), false);
  for (int64_t p : perm) {
    if (p < 0 || p >= type.getRank() || seen[p])
      return emitOpError("perm is not a permutation");
    seen[p] = true;
  }
  return success();
}

OpFoldResult ConstantOp::fold(FoldAdaptor) { return getValue(); }

ParseResult ConstantOp::parse(OpAsmParser &parser, OperationState &result) {
  ElementsAttr value;
  if (parser.parseOptionalAttrDict(result.attributes) ||
      parser.parseAttribute(value, "value", result.attributes))
    return failure();
  result.addTypes(value.getType());
  return success();
}

void ConstantOp::print(OpAsmPrinter &p) {
  p.printOptionalAttrDict((*this)->getAttrs(), {"value"});
  p << " " << getValue();
}

LogicalResult ConstantOp::verify() {
  if (getValue().getType() != getType())
    return emitOpError("value type ") << getValue().getType()
                                      << " differs from result type "
                                      << getType();
  return success();
}

#define GET_OP_CLASSES
#include "dialects/kiln/KilnOps.cpp.inc"
