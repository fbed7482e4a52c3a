// RUN: kiln-opt %s --kiln-raise-attention --split-input-file | FileCheck %s

// GPT-2/BERT shape: scores scaled by a constant, an additive mask, softmax
// over keys, times v. kT comes from the exporter's transpose.
// CHECK-LABEL: func.func @attention
// CHECK-SAME: (%[[Q:.+]]: tensor<1x4x16x8xf32>, %[[KT:.+]]: tensor<1x4x8x16xf32>, %[[V:.+]]: tensor<1x4x16x8xf32>, %[[M:.+]]: tensor<1x1x16x16xf32>)
// CHECK: %[[K:.+]] = kiln.transpose %[[KT]] {perm = array<i64: 0, 1, 3, 2>}
// CHECK: %[[A:.+]] = kiln.attention %[[Q]], %[[K]], %[[V]] mask %[[M]] {scale = 2.500000e-01 : f32}
// CHECK-NOT: kiln.softmax
// CHECK: return %[[A]]
func.func @attention(%q: tensor<1x4x16x8xf32>, %kT: tensor<1x4x8x16xf32>, %v: tensor<1x4x16x8xf32>, %mask: tensor<1x1x16x16xf32>) -> tensor<1x4x16x8xf32> {
  %c = kiln.constant dense<0.25> : tensor<f32>
  %s = kiln.matmul %q, %kT : (tensor<1x4x16x8xf32>, tensor<1x4x8x16xf32>) -> tensor<1x4x16x16xf32>
  %t = kiln.mul %s, %c : (tensor<1x4x16x16xf32>, tensor<f32>) -> tensor<1x4x16x16xf32>
  %u = kiln.add %t, %mask : (tensor<1x4x16x16xf32>, tensor<1x1x16x16xf32>) -> tensor<1x4x16x16xf32>
  %p = kiln.softmax %u {axis = 3 : i64} : tensor<1x4x16x16xf32> -> tensor<1x4x16x16xf32>
  %o = kiln.matmul %p, %v : (tensor<1x4x16x16xf32>, tensor<1x4x16x8xf32>) -> tensor<1x4x16x8xf32>
  return %o : tensor<1x4x16x8xf32>
}

// -----

// Division by sqrt(d), no mask.
// CHECK-LABEL: func.func @divided
// CHECK: kiln.attention %{{.+}}, %{{.+}}, %{{.+}} {scale = 1.250000e-01 : f32}
func.func @divided(%q: tensor<1x2x4x8xf32>, %kT: tensor<1x2x8x4xf32>, %v: tensor<1x2x4x8xf32>) -> tensor<1x2x4x8xf32> {
  %c = kiln.constant dense<8.0> : tensor<f32>
  %s = kiln.matmul %q, %kT : (tensor<1x2x4x8xf32>, tensor<1x2x8x4xf32>) -> tensor<1x2x4x4xf32>
  %t = kiln.div %s, %c : (tensor<1x2x4x4xf32>, tensor<f32>) -> tensor<1x2x4x4xf32>
  %p = kiln.softmax %t {axis = 3 : i64} : tensor<1x2x4x4xf32> -> tensor<1x2x4x4xf32>
  %o = kiln.matmul %p, %v : (tensor<1x2x4x4xf32>, tensor<1x2x4x8xf32>) -> tensor<1x2x4x8xf32>
  return %o : tensor<1x2x4x8xf32>
}

// -----

// Scores used twice (returned as well): not raised.
// CHECK-LABEL: func.func @shared_scores
// CHECK-NOT: kiln.attention
// CHECK: kiln.softmax
func.func @shared_scores(%q: tensor<1x2x4x8xf32>, %kT: tensor<1x2x8x4xf32>, %v: tensor<1x2x4x8xf32>) -> (tensor<1x2x4x8xf32>, tensor<1x2x4x4xf32>) {
  %s = kiln.matmul %q, %kT : (tensor<1x2x4x8xf32>, tensor<1x2x8x4xf32>) -> tensor<1x2x4x4xf32>
  %p = kiln.softmax %s {axis = 3 : i64} : tensor<1x2x4x4xf32> -> tensor<1x2x4x4xf32>
  %o = kiln.matmul %p, %v : (tensor<1x2x4x4xf32>, tensor<1x2x4x8xf32>) -> tensor<1x2x4x8xf32>
  return %o, %s : tensor<1x2x4x8xf32>, tensor<1x2x4x4xf32>
}
