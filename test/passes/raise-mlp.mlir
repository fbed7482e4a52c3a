// RUN: kiln-opt %s --kiln-raise-attention --split-input-file | FileCheck %s

// kiln-raise-attention, the gated MLP (SwiGLU).

// The gated MLP as the exporters write SiLU: (g * sigmoid(g)) * u, in
// either operand order, becomes kiln.swiglu; a broadcast operand does not.
// CHECK-LABEL: func.func @swiglu
// CHECK: %[[A:.+]] = kiln.swiglu %arg0, %arg1
// CHECK: %[[B:.+]] = kiln.swiglu %arg0, %arg1
// CHECK: %[[C:.+]] = kiln.mul
// CHECK: return %[[A]], %[[B]], %[[C]]
func.func @swiglu(%g: tensor<1x4x8xf32>, %u: tensor<1x4x8xf32>, %w: tensor<8xf32>) -> (tensor<1x4x8xf32>, tensor<1x4x8xf32>, tensor<1x4x8xf32>) {
  %s = kiln.sigmoid %g : tensor<1x4x8xf32> -> tensor<1x4x8xf32>
  %silu = kiln.mul %g, %s : (tensor<1x4x8xf32>, tensor<1x4x8xf32>) -> tensor<1x4x8xf32>
  %a = kiln.mul %silu, %u : (tensor<1x4x8xf32>, tensor<1x4x8xf32>) -> tensor<1x4x8xf32>
  %silu2 = kiln.mul %s, %g : (tensor<1x4x8xf32>, tensor<1x4x8xf32>) -> tensor<1x4x8xf32>
  %b = kiln.mul %u, %silu2 : (tensor<1x4x8xf32>, tensor<1x4x8xf32>) -> tensor<1x4x8xf32>
  %c = kiln.mul %silu, %w : (tensor<1x4x8xf32>, tensor<8xf32>) -> tensor<1x4x8xf32>
  return %a, %b, %c : tensor<1x4x8xf32>, tensor<1x4x8xf32>, tensor<1x4x8xf32>
}
