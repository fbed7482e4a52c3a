// RUN: kiln-opt %s --kiln-raise-attention --split-input-file | FileCheck %s

// kiln-raise-attention, RMSNorm chains (HF Llama in TorchScript and dynamo exports, x / sqrt, negatives).

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

// torch's dynamo exporter (opset 18): pow(x, 2), reduce_mean, + eps,
// sqrt, reciprocal, then the weight on the left.
// CHECK-LABEL: func.func @rms_norm_dynamo
// CHECK: %[[R:.+]] = kiln.rms_norm %arg0, %arg1 {epsilon = 9.99999997E-7 : f32}
// CHECK-NEXT: return %[[R]]
func.func @rms_norm_dynamo(%x: tensor<1x4x64xf32>, %w: tensor<64xf32>) -> tensor<1x4x64xf32> {
  %two = kiln.constant dense<2.0> : tensor<f32>
  %eps = kiln.constant dense<1.0e-6> : tensor<f32>
  %p = kiln.pow %x, %two : (tensor<1x4x64xf32>, tensor<f32>) -> tensor<1x4x64xf32>
  %m = kiln.reduce_mean %p {axes = array<i64: 2>, keepdims = true} : tensor<1x4x64xf32> -> tensor<1x4x1xf32>
  %a = kiln.add %m, %eps : (tensor<1x4x1xf32>, tensor<f32>) -> tensor<1x4x1xf32>
  %s = kiln.sqrt %a : tensor<1x4x1xf32> -> tensor<1x4x1xf32>
  %r = kiln.reciprocal %s : tensor<1x4x1xf32> -> tensor<1x4x1xf32>
  %n = kiln.mul %x, %r : (tensor<1x4x64xf32>, tensor<1x4x1xf32>) -> tensor<1x4x64xf32>
  %y = kiln.mul %w, %n : (tensor<64xf32>, tensor<1x4x64xf32>) -> tensor<1x4x64xf32>
  return %y : tensor<1x4x64xf32>
}
