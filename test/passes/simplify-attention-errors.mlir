// kiln-simplify-attention's errors: sinks without a window, a window for a
// model without a KV cache.
// RUN: not kiln-opt %s -kiln-simplify-attention="sinks=4" 2>&1 | FileCheck %s --check-prefix=SINKS
// SINKS: kiln-simplify-attention: window must be >= 0, and sinks need a window
// RUN: not kiln-opt %s -kiln-simplify-attention="window=8" 2>&1 | FileCheck %s --check-prefix=NOCACHE
// NOCACHE: an attention window needs the LLM form (a KV cache), and this model has none
func.func @main(%x: tensor<2xf32>) -> tensor<2xf32> {
  return %x : tensor<2xf32>
}
