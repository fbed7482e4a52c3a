//===- KilnDialect.td - The kiln dialect -------------------*- tablegen -*-===//
#ifndef KILN_DIALECT_TD
#define KILN_DIALECT_TD

include "mlir/IR/OpBase.td"

def Kiln_Dialect : Dialect {
  let name = "kiln";
  let summary = "Tensor-level operations of model graphs compiled by Kiln";
  let description = [{
    The `kiln` dialect is what every frontend (ONNX, GGUF) produces and what
    the graph and LLM passes rewrite. Ops work on ranked tensors whose
    dimensions may be symbolic (`?`); broadcasting follows numpy rules, so
    operands of elementwise ops may have different shapes. Weights are not
    stored in attributes: `kiln.weight` names a blob that the compiler keeps
    outside the IR and serializes straight into the artifact.
  }];
  let cppNamespace = "::kiln";
}

class Kiln_Op<string mnemonic, list<Trait> traits = []>
    : Op<Kiln_Dialect, mnemonic, traits>;

#endif // KILN_DIALECT_TD
