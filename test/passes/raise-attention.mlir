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

// -----

// HF Llama RMSNorm: x * rsqrt(mean(x^2) + eps) * w.
// CHECK-LABEL: func.func @rms_norm
// CHECK: %[[N:.+]] = kiln.rms_norm %arg0, %arg1 {epsilon = 9.99999997E-7 : f32}
// CHECK: return %[[N]]
func.func @rms_norm(%x: tensor<2x8x64xf32>, %w: tensor<64xf32>) -> tensor<2x8x64xf32> {
  %two = kiln.constant dense<2.0> : tensor<f32>
  %eps = kiln.constant dense<1.0e-6> : tensor<f32>
  %sq = kiln.pow %x, %two : (tensor<2x8x64xf32>, tensor<f32>) -> tensor<2x8x64xf32>
  %m = kiln.reduce_mean %sq {axes = array<i64: 2>, keepdims = true} : tensor<2x8x64xf32> -> tensor<2x8x1xf32>
  %a = kiln.add %m, %eps : (tensor<2x8x1xf32>, tensor<f32>) -> tensor<2x8x1xf32>
  %r = kiln.sqrt %a : tensor<2x8x1xf32> -> tensor<2x8x1xf32>
  %i = kiln.reciprocal %r : tensor<2x8x1xf32> -> tensor<2x8x1xf32>
  %n = kiln.mul %x, %i : (tensor<2x8x64xf32>, tensor<2x8x1xf32>) -> tensor<2x8x64xf32>
  %y = kiln.mul %w, %n : (tensor<64xf32>, tensor<2x8x64xf32>) -> tensor<2x8x64xf32>
  return %y : tensor<2x8x64xf32>
}

// -----

// The divide form with x*x; a mean over another dim is not RMSNorm.
// CHECK-LABEL: func.func @rms_norm_div
// CHECK: kiln.rms_norm
// CHECK-LABEL: func.func @not_rms_norm
// CHECK-NOT: kiln.rms_norm
func.func @rms_norm_div(%x: tensor<4x32xf32>, %w: tensor<32xf32>) -> tensor<4x32xf32> {
  %eps = kiln.constant dense<1.0e-5> : tensor<f32>
  %sq = kiln.mul %x, %x : (tensor<4x32xf32>, tensor<4x32xf32>) -> tensor<4x32xf32>
  %m = kiln.reduce_mean %sq {axes = array<i64: 1>, keepdims = true} : tensor<4x32xf32> -> tensor<4x1xf32>
  %a = kiln.add %m, %eps : (tensor<4x1xf32>, tensor<f32>) -> tensor<4x1xf32>
  %r = kiln.sqrt %a : tensor<4x1xf32> -> tensor<4x1xf32>
  %n = kiln.div %x, %r : (tensor<4x32xf32>, tensor<4x1xf32>) -> tensor<4x32xf32>
  %y = kiln.mul %n, %w : (tensor<4x32xf32>, tensor<32xf32>) -> tensor<4x32xf32>
  return %y : tensor<4x32xf32>
}
func.func @not_rms_norm(%x: tensor<4x32xf32>, %w: tensor<32xf32>) -> tensor<4x32xf32> {
  %eps = kiln.constant dense<1.0e-5> : tensor<f32>
  %sq = kiln.mul %x, %x : (tensor<4x32xf32>, tensor<4x32xf32>) -> tensor<4x32xf32>
  %m = kiln.reduce_mean %sq {axes = array<i64: 0>, keepdims = true} : tensor<4x32xf32> -> tensor<1x32xf32>
  %a = kiln.add %m, %eps : (tensor<1x32xf32>, tensor<f32>) -> tensor<1x32xf32>
  %r = kiln.sqrt %a : tensor<1x32xf32> -> tensor<1x32xf32>
  %n = kiln.div %x, %r : (tensor<4x32xf32>, tensor<1x32xf32>) -> tensor<4x32xf32>
  %y = kiln.mul %n, %w : (tensor<4x32xf32>, tensor<32xf32>) -> tensor<4x32xf32>
  return %y : tensor<4x32xf32>
}

// -----

// HF Llama's export of x * torch.rsqrt(mean(x^2) + eps) * w:
// x * (1 / sqrt(...)), the weight on the left.
// CHECK-LABEL: func.func @rms_norm_hf_llama
// CHECK: %[[N:.+]] = kiln.rms_norm %arg0, %arg1 {epsilon = 9.99999997E-7 : f32}
// CHECK: return %[[N]]
func.func @rms_norm_hf_llama(%x: tensor<1x4x64xf32>, %w: tensor<64xf32>) -> tensor<1x4x64xf32> {
  %one = kiln.constant dense<1.0> : tensor<f32>
  %two = kiln.constant dense<2.0> : tensor<f32>
  %eps = kiln.constant dense<1.0e-6> : tensor<f32>
  %sq = kiln.pow %x, %two : (tensor<1x4x64xf32>, tensor<f32>) -> tensor<1x4x64xf32>
  %m = kiln.reduce_mean %sq {axes = array<i64: 2>, keepdims = true} : tensor<1x4x64xf32> -> tensor<1x4x1xf32>
  %a = kiln.add %m, %eps : (tensor<1x4x1xf32>, tensor<f32>) -> tensor<1x4x1xf32>
  %r = kiln.sqrt %a : tensor<1x4x1xf32> -> tensor<1x4x1xf32>
  %i = kiln.div %one, %r : (tensor<f32>, tensor<1x4x1xf32>) -> tensor<1x4x1xf32>
  %n = kiln.mul %x, %i : (tensor<1x4x64xf32>, tensor<1x4x1xf32>) -> tensor<1x4x64xf32>
  %y = kiln.mul %w, %n : (tensor<64xf32>, tensor<1x4x64xf32>) -> tensor<1x4x64xf32>
  return %y : tensor<1x4x64xf32>
}

// -----

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

// -----

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
