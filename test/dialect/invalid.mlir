// Verifier errors of kiln ops.
// RUN: kiln-opt %s -split-input-file -verify-diagnostics

func.func @matmul_k(%a: tensor<2x3xf32>, %b: tensor<4x5xf32>) -> tensor<2x5xf32> {
  // expected-error @+1 {{contraction dims differ: 3 vs 4}}
  %0 = kiln.matmul %a, %b : (tensor<2x3xf32>, tensor<4x5xf32>) -> tensor<2x5xf32>
  return %0 : tensor<2x5xf32>
}

// -----

func.func @reshape_count(%a: tensor<2x3xf32>) -> tensor<7xf32> {
  // expected-error @+1 {{element count changes from 6 to 7}}
  %0 = kiln.reshape %a : tensor<2x3xf32> -> tensor<7xf32>
  return %0 : tensor<7xf32>
}

// -----

func.func @transpose_perm(%a: tensor<2x3xf32>) -> tensor<3x2xf32> {
  // expected-error @+1 {{perm is not a permutation}}
  %0 = kiln.transpose %a {perm = array<i64: 1, 1>} : tensor<2x3xf32> -> tensor<3x2xf32>
  return %0 : tensor<3x2xf32>
}

// -----

func.func @matmul_rank(%a: tensor<3xf32>, %b: tensor<3x5xf32>) -> tensor<5xf32> {
  // expected-error @+1 {{operands must have rank >= 2}}
  %0 = kiln.matmul %a, %b : (tensor<3xf32>, tensor<3x5xf32>) -> tensor<5xf32>
  return %0 : tensor<5xf32>
}

// -----

func.func @attention_heads(%q: tensor<1x3x4x8xf32>, %k: tensor<1x2x4x8xf32>) -> tensor<1x3x4x8xf32> {
  // expected-error @+1 {{query heads (3) are not a multiple of key/value heads (2)}}
  %0 = kiln.attention %q, %k, %k {scale = 1.0 : f32} : (tensor<1x3x4x8xf32>, tensor<1x2x4x8xf32>, tensor<1x2x4x8xf32>) -> tensor<1x3x4x8xf32>
  return %0 : tensor<1x3x4x8xf32>
}

// -----

func.func @kv_store_heads(%k: tensor<1x3x2x8xf32>, %t: tensor<4xi32>, %s: tensor<2xi64>, %c: memref<4x1x2x2x4x8xf32>) {
  // expected-error @+1 {{key/value heads (3) do not match the cache's 2 kv heads}}
  kiln.kv_store %k, %k into %c[%t, %s] {layer = 0 : i64} : tensor<1x3x2x8xf32>, tensor<1x3x2x8xf32>, memref<4x1x2x2x4x8xf32>, tensor<4xi32>, tensor<2xi64>
  return
}

// -----

func.func @kv_store_layer(%k: tensor<1x2x2x8xf32>, %t: tensor<4xi32>, %s: tensor<2xi64>, %c: memref<4x1x2x2x4x8xf32>) {
  // expected-error @+1 {{layer 1 is outside the cache's 1 layers}}
  kiln.kv_store %k, %k into %c[%t, %s] {layer = 1 : i64} : tensor<1x2x2x8xf32>, tensor<1x2x2x8xf32>, memref<4x1x2x2x4x8xf32>, tensor<4xi32>, tensor<2xi64>
  return
}

// -----

func.func @paged_attention_groups(%q: tensor<1x3x2x8xf32>, %t: tensor<4xi32>, %s: tensor<2xi64>, %c: memref<4x1x2x2x4x8xf32>) -> tensor<1x3x2x8xf32> {
  // expected-error @+1 {{query heads (3) do not match the cache's 2 kv heads}}
  %0 = kiln.paged_attention %q over %c[%t, %s] {layer = 0 : i64, scale = 1.0 : f32} : tensor<1x3x2x8xf32>, memref<4x1x2x2x4x8xf32>, tensor<4xi32>, tensor<2xi64> -> tensor<1x3x2x8xf32>
  return %0 : tensor<1x3x2x8xf32>
}

// -----

func.func @paged_attention_step(%q: tensor<1x4x2x8xf32>, %t: tensor<4xi32>, %s: tensor<3xi64>, %c: memref<4x1x2x2x4x8xf32>) -> tensor<1x4x2x8xf32> {
  // expected-error @+1 {{step must be tensor<2xi64> ([pos, n])}}
  %0 = kiln.paged_attention %q over %c[%t, %s] {layer = 0 : i64, scale = 1.0 : f32} : tensor<1x4x2x8xf32>, memref<4x1x2x2x4x8xf32>, tensor<4xi32>, tensor<3xi64> -> tensor<1x4x2x8xf32>
  return %0 : tensor<1x4x2x8xf32>
}

// -----

func.func @paged_attention_cache(%q: tensor<1x4x2x8xf32>, %t: tensor<4xi32>, %s: tensor<2xi64>, %c: memref<4x1x3x2x4x8xf32>) -> tensor<1x4x2x8xf32> {
  // expected-error @+1 {{cache dim 2 must be 2 (keys, values)}}
  %0 = kiln.paged_attention %q over %c[%t, %s] {layer = 0 : i64, scale = 1.0 : f32} : tensor<1x4x2x8xf32>, memref<4x1x3x2x4x8xf32>, tensor<4xi32>, tensor<2xi64> -> tensor<1x4x2x8xf32>
  return %0 : tensor<1x4x2x8xf32>
}

// -----

func.func @paged_attention_rounded(%q: tensor<1x4x2x8xf32>, %t: tensor<4xi32>, %s: tensor<2xi64>, %c: memref<4x1x2x2x4x8xf32>) -> tensor<1x4x2x8xf32> {
  // expected-error @+1 {{rounded_probs needs an f16 cache}}
  %0 = kiln.paged_attention %q over %c[%t, %s] {layer = 0 : i64, scale = 1.0 : f32, rounded_probs} : tensor<1x4x2x8xf32>, memref<4x1x2x2x4x8xf32>, tensor<4xi32>, tensor<2xi64> -> tensor<1x4x2x8xf32>
  return %0 : tensor<1x4x2x8xf32>
}

// -----

func.func @paged_attention_softcap(%q: tensor<1x4x2x8xf32>, %t: tensor<4xi32>, %s: tensor<2xi64>, %c: memref<4x1x2x2x4x8xf32>) -> tensor<1x4x2x8xf32> {
  // expected-error @+1 {{softcap must be >= 0}}
  %0 = kiln.paged_attention %q over %c[%t, %s] {layer = 0 : i64, scale = 1.0 : f32, softcap = -1.0 : f32} : tensor<1x4x2x8xf32>, memref<4x1x2x2x4x8xf32>, tensor<4xi32>, tensor<2xi64> -> tensor<1x4x2x8xf32>
  return %0 : tensor<1x4x2x8xf32>
}

// -----

func.func @attention_softcap(%q: tensor<1x2x3x8xf32>, %k: tensor<1x2x5x8xf32>) -> tensor<1x2x3x8xf32> {
  // expected-error @+1 {{softcap must be >= 0}}
  %0 = kiln.attention %q, %k, %k {scale = 1.0 : f32, softcap = -2.0 : f32} : (tensor<1x2x3x8xf32>, tensor<1x2x5x8xf32>, tensor<1x2x5x8xf32>) -> tensor<1x2x3x8xf32>
  return %0 : tensor<1x2x3x8xf32>
}

// -----

func.func @paged_attention_bf16(%q: tensor<1x4x2x8xf32>, %t: tensor<4xi32>, %s: tensor<2xi64>, %c: memref<4x1x2x2x4x8xbf16>) -> tensor<1x4x2x8xf32> {
  // expected-error @+1 {{cache must be a static f32, f16 or i8 memref}}
  %0 = kiln.paged_attention %q over %c[%t, %s] {layer = 0 : i64, scale = 1.0 : f32} : tensor<1x4x2x8xf32>, memref<4x1x2x2x4x8xbf16>, tensor<4xi32>, tensor<2xi64> -> tensor<1x4x2x8xf32>
  return %0 : tensor<1x4x2x8xf32>
}

// -----

// An i8 cache row of head_dim 8 is 8 codes and one f16 scale (10 bytes).
func.func @paged_attention_int8_row(%q: tensor<1x4x2x8xf32>, %t: tensor<4xi32>, %s: tensor<2xi64>, %c: memref<4x1x2x2x4x8xi8>) -> tensor<1x4x2x8xf32> {
  // expected-error @+1 {{a cache row of 8 'i8' does not hold head_dim 8 (needs 10)}}
  %0 = kiln.paged_attention %q over %c[%t, %s] {layer = 0 : i64, scale = 1.0 : f32} : tensor<1x4x2x8xf32>, memref<4x1x2x2x4x8xi8>, tensor<4xi32>, tensor<2xi64> -> tensor<1x4x2x8xf32>
  return %0 : tensor<1x4x2x8xf32>
}

// -----

func.func @quant_activations(%x: tensor<2x64xf32>, %w: tensor<3x40xi8>) -> tensor<2x3xf32> {
  // expected-error @+1 {{activations must be "f32" or "q8", not "q4"}}
  %0 = kiln.quant_matmul %x, %w {format = "q4_1", activations = "q4"} : (tensor<2x64xf32>, tensor<3x40xi8>) -> tensor<2x3xf32>
  return %0 : tensor<2x3xf32>
}

// -----

func.func @quant_format(%x: tensor<2x64xf32>, %w: tensor<3x40xi8>) -> tensor<2x3xf32> {
  // expected-error @+1 {{unknown quantization format 'iq2_xs' (known: q8_0, q4_0, q4_1, q5_0, q5_1, f16, q2_k, q3_k, q4_k, q5_k, q6_k, iq4_nl, iq4_xs)}}
  %0 = kiln.quant_matmul %x, %w {format = "iq2_xs"} : (tensor<2x64xf32>, tensor<3x40xi8>) -> tensor<2x3xf32>
  return %0 : tensor<2x3xf32>
}

// -----

func.func @quant_k_blocks(%x: tensor<2x64xf32>, %w: tensor<3x40xi8>) -> tensor<2x3xf32> {
  // expected-error @+1 {{K = 64 is not a multiple of 256 (q2_k blocks)}}
  %0 = kiln.quant_matmul %x, %w {format = "q2_k"} : (tensor<2x64xf32>, tensor<3x40xi8>) -> tensor<2x3xf32>
  return %0 : tensor<2x3xf32>
}

// -----

func.func @quant_bytes(%x: tensor<2x64xf32>, %w: tensor<3x40xi8>) -> tensor<2x3xf32> {
  // expected-error @+1 {{weight must be i8 [rows, 68] for K = 64 in q8_0}}
  %0 = kiln.quant_matmul %x, %w {format = "q8_0"} : (tensor<2x64xf32>, tensor<3x40xi8>) -> tensor<2x3xf32>
  return %0 : tensor<2x3xf32>
}

// -----

func.func @quant_k(%x: tensor<2x48xf32>, %w: tensor<3x40xi8>) -> tensor<2x3xf32> {
  // expected-error @+1 {{K = 48 is not a multiple of 32}}
  %0 = kiln.quant_matmul %x, %w {format = "q4_1"} : (tensor<2x48xf32>, tensor<3x40xi8>) -> tensor<2x3xf32>
  return %0 : tensor<2x3xf32>
}

// -----

func.func @rope_width(%x: tensor<1x2x3x16xf32>, %c: tensor<3x8xf32>) -> tensor<1x2x3x16xf32> {
  // expected-error @+1 {{cos and sin must be full width (16) and broadcast to the input}}
  %0 = kiln.rope %x, %c, %c : (tensor<1x2x3x16xf32>, tensor<3x8xf32>, tensor<3x8xf32>) -> tensor<1x2x3x16xf32>
  return %0 : tensor<1x2x3x16xf32>
}

// -----

func.func @table_size(%n: vector<16xi8>) -> vector<16xi8> {
  // expected-error @+1 {{table must hold 16 bytes, not 3}}
  %0 = kiln.table16_i8 %n {table = array<i8: 1, 2, 3>} : vector<16xi8> -> vector<16xi8>
  return %0 : vector<16xi8>
}

// -----

func.func @iq4_xs_k(%x: tensor<2x64xf32>, %w: tensor<3x34xi8>) -> tensor<2x3xf32> {
  // expected-error @+1 {{K = 64 is not a multiple of 256 (iq4_xs blocks)}}
  %0 = kiln.quant_matmul %x, %w {format = "iq4_xs"} : (tensor<2x64xf32>, tensor<3x34xi8>) -> tensor<2x3xf32>
  return %0 : tensor<2x3xf32>
}
