// RUN: kiln-opt %s --kiln-raise-attention --split-input-file | FileCheck %s

// kiln-raise-attention, rotate-half RoPE as HF's exporters write it.

// RoPE as HF Llama's export writes it: x * cos + concat(-x[8:], x[:8]) * sin
// with full-width cos/sin rows broadcast over the heads.
// CHECK-LABEL: func.func @rope_hf
// CHECK: %[[R:.+]] = kiln.rope %arg0, %arg1, %arg2 : (tensor<1x4x3x16xf32>, tensor<1x1x3x16xf32>, tensor<1x1x3x16xf32>) -> tensor<1x4x3x16xf32>
// CHECK: return %[[R]]
func.func @rope_hf(%x: tensor<1x4x3x16xf32>, %cos: tensor<1x1x3x16xf32>, %sin: tensor<1x1x3x16xf32>) -> tensor<1x4x3x16xf32> {
  %a = kiln.mul %x, %cos : (tensor<1x4x3x16xf32>, tensor<1x1x3x16xf32>) -> tensor<1x4x3x16xf32>
  %lo = kiln.slice %x {starts = array<i64: 0, 0, 0, 0>, steps = array<i64: 1, 1, 1, 1>} : tensor<1x4x3x16xf32> -> tensor<1x4x3x8xf32>
  %hi = kiln.slice %x {starts = array<i64: 0, 0, 0, 8>, steps = array<i64: 1, 1, 1, 1>} : tensor<1x4x3x16xf32> -> tensor<1x4x3x8xf32>
  %n = kiln.neg %hi : tensor<1x4x3x8xf32> -> tensor<1x4x3x8xf32>
  %c = kiln.concat %n, %lo {axis = 3 : i64} : (tensor<1x4x3x8xf32>, tensor<1x4x3x8xf32>) -> tensor<1x4x3x16xf32>
  %b = kiln.mul %c, %sin : (tensor<1x4x3x16xf32>, tensor<1x1x3x16xf32>) -> tensor<1x4x3x16xf32>
  %y = kiln.add %a, %b : (tensor<1x4x3x16xf32>, tensor<1x4x3x16xf32>) -> tensor<1x4x3x16xf32>
  return %y : tensor<1x4x3x16xf32>
}

// -----

// Halves swapped the other way round are not rotate_half.
// CHECK-LABEL: func.func @not_rope
// CHECK-NOT: kiln.rope
func.func @not_rope(%x: tensor<1x4x3x16xf32>, %cos: tensor<1x1x3x16xf32>, %sin: tensor<1x1x3x16xf32>) -> tensor<1x4x3x16xf32> {
  %a = kiln.mul %x, %cos : (tensor<1x4x3x16xf32>, tensor<1x1x3x16xf32>) -> tensor<1x4x3x16xf32>
  %lo = kiln.slice %x {starts = array<i64: 0, 0, 0, 0>, steps = array<i64: 1, 1, 1, 1>} : tensor<1x4x3x16xf32> -> tensor<1x4x3x8xf32>
  %hi = kiln.slice %x {starts = array<i64: 0, 0, 0, 8>, steps = array<i64: 1, 1, 1, 1>} : tensor<1x4x3x16xf32> -> tensor<1x4x3x8xf32>
  %n = kiln.neg %lo : tensor<1x4x3x8xf32> -> tensor<1x4x3x8xf32>
  %c = kiln.concat %n, %hi {axis = 3 : i64} : (tensor<1x4x3x8xf32>, tensor<1x4x3x8xf32>) -> tensor<1x4x3x16xf32>
  %b = kiln.mul %c, %sin : (tensor<1x4x3x16xf32>, tensor<1x1x3x16xf32>) -> tensor<1x4x3x16xf32>
  %y = kiln.add %a, %b : (tensor<1x4x3x16xf32>, tensor<1x4x3x16xf32>) -> tensor<1x4x3x16xf32>
  return %y : tensor<1x4x3x16xf32>
}
