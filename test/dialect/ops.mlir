// Round trip of kiln ops through the parser and printer.
// RUN: kiln-opt %s | kiln-opt | FileCheck %s

// CHECK-LABEL: func.func @elementwise
func.func @elementwise(%a: tensor<4x1xf32>, %b: tensor<3xf32>) -> tensor<4x3xi1> {
  // CHECK: kiln.add %{{.*}}, %{{.*}} : (tensor<4x1xf32>, tensor<3xf32>) -> tensor<4x3xf32>
  %0 = kiln.add %a, %b : (tensor<4x1xf32>, tensor<3xf32>) -> tensor<4x3xf32>
  // CHECK: kiln.gelu %{{.*}} {tanh_approximation = true}
  %1 = kiln.gelu %0 {tanh_approximation = true} : tensor<4x3xf32> -> tensor<4x3xf32>
  // CHECK: kiln.greater
  %2 = kiln.greater %1, %b : (tensor<4x3xf32>, tensor<3xf32>) -> tensor<4x3xi1>
  return %2 : tensor<4x3xi1>
}

// CHECK-LABEL: func.func @values
func.func @values() -> tensor<64x64xf32> {
  // CHECK: kiln.weight "layers.0.w" : tensor<64x64xf32>
  %w = kiln.weight "layers.0.w" : tensor<64x64xf32>
  // CHECK: kiln.constant dense<2.000000e+00> : tensor<f32>
  %c = kiln.constant dense<2.0> : tensor<f32>
  %0 = kiln.mul %w, %c : (tensor<64x64xf32>, tensor<f32>) -> tensor<64x64xf32>
  return %0 : tensor<64x64xf32>
}

// CHECK-LABEL: func.func @symbolic
func.func @symbolic(%x: tensor<?x8xf32>, %s: tensor<8xf32>) -> tensor<?x8xf32> {
  // CHECK: kiln.layer_norm %{{.*}}, %{{.*}} {axis = 1 : i64, epsilon = 9.99999974E-6 : f32} : (tensor<?x8xf32>, tensor<8xf32>) -> tensor<?x8xf32>
  %0 = kiln.layer_norm %x, %s {axis = 1 : i64, epsilon = 1.0e-5 : f32} : (tensor<?x8xf32>, tensor<8xf32>) -> tensor<?x8xf32>
  return %0 : tensor<?x8xf32>
}

// CHECK-LABEL: func.func @llm_ops
func.func @llm_ops(%q: tensor<1x4x3x8xf32>, %k: tensor<1x2x5x8xf32>, %w: tensor<8xf32>) -> tensor<1x4x3x8xf32> {
  // CHECK: kiln.attention %{{.+}}, %{{.+}}, %{{.+}} {causal = true, scale = 3.500000e-01 : f32, sinks = 1 : i64, window = 3 : i64}
  %0 = kiln.attention %q, %k, %k {scale = 0.35 : f32, causal = true, window = 3 : i64, sinks = 1 : i64} : (tensor<1x4x3x8xf32>, tensor<1x2x5x8xf32>, tensor<1x2x5x8xf32>) -> tensor<1x4x3x8xf32>
  // CHECK: kiln.rms_norm
  %1 = kiln.rms_norm %0, %w {epsilon = 1.0e-6 : f32} : (tensor<1x4x3x8xf32>, tensor<8xf32>) -> tensor<1x4x3x8xf32>
  return %1 : tensor<1x4x3x8xf32>
}
