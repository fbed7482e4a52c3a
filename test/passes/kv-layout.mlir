// kiln-kv-layout: past + new concats feeding attention (through the GQA
// repeat) become kv_store + paged_attention over one cache argument; the
// folded causal mask (here with a window of 2) is recognized, the
// soft-cap kept; past inputs
// and present outputs leave the signature; the logits of the last real
// token are returned.
// RUN: kiln-opt %s -split-input-file -kiln-kv-layout="block-size=4 max-context=8" -verify-diagnostics | FileCheck %s

// CHECK-LABEL: func.func @prefill(
// CHECK-SAME: %[[TOK:.+]]: tensor<1x2xi64>, %[[POS:.+]]: tensor<1x2xi64>, %[[TABLE:.+]]: tensor<2xi32>, %[[STEP:.+]]: tensor<2xi64>, %[[CACHE:.+]]: memref<2x1x2x1x4x4xf32>) -> tensor<1x3xf32>
// CHECK-SAME: kiln.input_names = ["tokens", "positions", "block_table", "step"]
// CHECK: kiln.kv_store %[[K:.+]], %[[V:.+]] into %[[CACHE]][%[[TABLE]], %[[STEP]]] {layer = 0 : i64}
// CHECK: kiln.paged_attention %{{.+}} over %[[CACHE]][%[[TABLE]], %[[STEP]]] {layer = 0 : i64, scale = 5.000000e-01 : f32, softcap = 3.000000e+00 : f32, window = 2 : i64}
// CHECK-NOT: kiln.concat
// CHECK: kiln.slice %[[STEP]]
// CHECK: kiln.gather
// CHECK: return %{{.+}} : tensor<1x3xf32>
func.func @prefill(%ids: tensor<1x2xi64>, %pos: tensor<1x2xi64>, %pk: tensor<1x1x1x4xf32>, %pv: tensor<1x1x1x4xf32>) -> (tensor<1x2x3xf32>, tensor<1x1x3x4xf32>, tensor<1x1x3x4xf32>) attributes {kiln.input_names = ["input_ids", "position_ids", "past_key_values.0.key", "past_key_values.0.value"], kiln.output_names = ["logits", "present.0.key", "present.0.value"]} {
  %q = kiln.constant dense<1.0> : tensor<1x2x2x4xf32>
  %k = kiln.constant dense<2.0> : tensor<1x1x2x4xf32>
  %v = kiln.constant dense<3.0> : tensor<1x1x2x4xf32>
  %kc = kiln.concat %pk, %k {axis = 2 : i64} : (tensor<1x1x1x4xf32>, tensor<1x1x2x4xf32>) -> tensor<1x1x3x4xf32>
  %vc = kiln.concat %pv, %v {axis = 2 : i64} : (tensor<1x1x1x4xf32>, tensor<1x1x2x4xf32>) -> tensor<1x1x3x4xf32>
  %k5 = kiln.reshape %kc : tensor<1x1x3x4xf32> -> tensor<1x1x1x3x4xf32>
  %kb = kiln.broadcast %k5 : tensor<1x1x1x3x4xf32> -> tensor<1x1x2x3x4xf32>
  %kr = kiln.reshape %kb : tensor<1x1x2x3x4xf32> -> tensor<1x2x3x4xf32>
  %v5 = kiln.reshape %vc : tensor<1x1x3x4xf32> -> tensor<1x1x1x3x4xf32>
  %vb = kiln.broadcast %v5 : tensor<1x1x1x3x4xf32> -> tensor<1x1x2x3x4xf32>
  %vr = kiln.reshape %vb : tensor<1x1x2x3x4xf32> -> tensor<1x2x3x4xf32>
  // Query 0 at position 1 sees keys 0, 1; query 1 at position 2 sees 1, 2
  // (window 2).
  %mask = kiln.constant dense<[[[[0.0, 0.0, -3.4e38], [-3.4e38, 0.0, 0.0]]]]> : tensor<1x1x2x3xf32>
  %a = kiln.attention %q, %kr, %vr mask %mask {scale = 0.5 : f32, softcap = 3.0 : f32} : (tensor<1x2x2x4xf32>, tensor<1x2x3x4xf32>, tensor<1x2x3x4xf32>, tensor<1x1x2x3xf32>) -> tensor<1x2x2x4xf32>
  %t = kiln.transpose %a {perm = array<i64: 0, 2, 1, 3>} : tensor<1x2x2x4xf32> -> tensor<1x2x2x4xf32>
  %f = kiln.reshape %t : tensor<1x2x2x4xf32> -> tensor<1x2x8xf32>
  %w = kiln.constant dense<0.5> : tensor<8x3xf32>
  %l = kiln.matmul %f, %w : (tensor<1x2x8xf32>, tensor<8x3xf32>) -> tensor<1x2x3xf32>
  return %l, %kc, %vc : tensor<1x2x3xf32>, tensor<1x1x3x4xf32>, tensor<1x1x3x4xf32>
}

// -----

func.func @not_causal(%ids: tensor<1x2xi64>, %pos: tensor<1x2xi64>, %pk: tensor<1x1x1x4xf32>, %pv: tensor<1x1x1x4xf32>) -> (tensor<1x1x2x4xf32>, tensor<1x1x3x4xf32>, tensor<1x1x3x4xf32>) {
  %q = kiln.constant dense<1.0> : tensor<1x1x2x4xf32>
  %k = kiln.constant dense<2.0> : tensor<1x1x2x4xf32>
  %kc = kiln.concat %pk, %k {axis = 2 : i64} : (tensor<1x1x1x4xf32>, tensor<1x1x2x4xf32>) -> tensor<1x1x3x4xf32>
  %vc = kiln.concat %pv, %k {axis = 2 : i64} : (tensor<1x1x1x4xf32>, tensor<1x1x2x4xf32>) -> tensor<1x1x3x4xf32>
  // Query 0 would see the future key 2.
  %mask = kiln.constant dense<[[[[0.0, 0.0, 0.0], [0.0, 0.0, 0.0]]]]> : tensor<1x1x2x3xf32>
  // expected-error @+1 {{kiln-kv-layout: the attention mask is not the causal (or sliding-window) mask of the new tokens over the cache}}
  %a = kiln.attention %q, %kc, %vc mask %mask {scale = 0.5 : f32} : (tensor<1x1x2x4xf32>, tensor<1x1x3x4xf32>, tensor<1x1x3x4xf32>, tensor<1x1x2x3xf32>) -> tensor<1x1x2x4xf32>
  return %a, %kc, %vc : tensor<1x1x2x4xf32>, tensor<1x1x3x4xf32>, tensor<1x1x3x4xf32>
}

// -----

func.func @extra_input(%ids: tensor<1x2xi64>, %pos: tensor<1x2xi64>, %mask_in: tensor<1x3xi64>, %pk: tensor<1x1x1x4xf32>, %pv: tensor<1x1x1x4xf32>) -> (tensor<1x1x2x4xf32>, tensor<1x1x3x4xf32>, tensor<1x1x3x4xf32>) {
  // expected-error @-1 {{kiln-kv-layout: besides the past keys and values the graph must take exactly the token ids and position ids (it takes 3 other inputs)}}
  %q = kiln.constant dense<1.0> : tensor<1x1x2x4xf32>
  %k = kiln.constant dense<2.0> : tensor<1x1x2x4xf32>
  %kc = kiln.concat %pk, %k {axis = 2 : i64} : (tensor<1x1x1x4xf32>, tensor<1x1x2x4xf32>) -> tensor<1x1x3x4xf32>
  %vc = kiln.concat %pv, %k {axis = 2 : i64} : (tensor<1x1x1x4xf32>, tensor<1x1x2x4xf32>) -> tensor<1x1x3x4xf32>
  %a = kiln.attention %q, %kc, %vc {scale = 0.5 : f32, causal = true} : (tensor<1x1x2x4xf32>, tensor<1x1x3x4xf32>, tensor<1x1x3x4xf32>) -> tensor<1x1x2x4xf32>
  return %a, %kc, %vc : tensor<1x1x2x4xf32>, tensor<1x1x3x4xf32>, tensor<1x1x3x4xf32>
}
