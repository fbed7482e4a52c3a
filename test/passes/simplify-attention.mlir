// kiln-simplify-attention: the window/sinks policy for layers without a
// window, and the KV budget: when every layer is windowed, the block table
// and the pool shrink to a ring of sinkBlocks + 1 + ceil((W + C - 2) /
// block) blocks (C the tokens of the longest call).
// RUN: kiln-opt %s -split-input-file -kiln-simplify-attention -verify-diagnostics | FileCheck %s --check-prefix=AUTO
// RUN: kiln-opt %s -split-input-file -kiln-simplify-attention="window=8 sinks=4" -verify-diagnostics | FileCheck %s --check-prefix=POLICY
// RUN: kiln-opt %s -split-input-file -kiln-simplify-attention="window=8 sinks=4 ring=false" -verify-diagnostics | FileCheck %s --check-prefix=NORING

// Two layers of a 4-token step over a 16-block cache of blocks of 4; layer
// 0 has a trained window of 6, layer 1 attends to everything.
// AUTO-LABEL: func.func @step(
// AUTO-SAME: tensor<16xi32>, %{{.+}}: tensor<2xi64>, %{{.+}}: memref<16x2x2x1x4x8xf32>)
// AUTO: window = 6
// AUTO-NOT: window
// AUTO: return
// With the policy layer 1 gets window 8 and 4 sinks (layer 0 keeps its 6),
// so every layer is windowed: 1 sink block + 1 + ceil((8 + 4 - 2) / 4) =
// 5 blocks.
// POLICY-LABEL: func.func @step(
// POLICY-SAME: %[[T:[^:]+]]: tensor<5xi32>, %[[S:[^:]+]]: tensor<2xi64>, %[[C:[^:]+]]: memref<5x2x2x1x4x8xf32>)
// POLICY: kiln.kv_store {{.+}} into %[[C]][%[[T]], %[[S]]] {layer = 0 : i64} : {{.+}}, memref<5x2x2x1x4x8xf32>, tensor<5xi32>
// POLICY: kiln.paged_attention {{.+}} over %[[C]][%[[T]], %[[S]]] {layer = 0 : i64, scale = 5.000000e-01 : f32, window = 6 : i64}
// POLICY: kiln.paged_attention {{.+}} {layer = 1 : i64, scale = 5.000000e-01 : f32, sinks = 4 : i64, window = 8 : i64}
// NORING-LABEL: func.func @step(
// NORING-SAME: tensor<16xi32>, %{{.+}}: tensor<2xi64>, %{{.+}}: memref<16x2x2x1x4x8xf32>)
// NORING: sinks = 4 : i64, window = 8 : i64
func.func @step(%q: tensor<1x2x4x8xf32>, %k: tensor<1x1x4x8xf32>, %table: tensor<16xi32>, %step: tensor<2xi64>, %cache: memref<16x2x2x1x4x8xf32>) -> tensor<1x2x4x8xf32> {
  kiln.kv_store %k, %k into %cache[%table, %step] {layer = 0 : i64} : tensor<1x1x4x8xf32>, tensor<1x1x4x8xf32>, memref<16x2x2x1x4x8xf32>, tensor<16xi32>, tensor<2xi64>
  %a = kiln.paged_attention %q over %cache[%table, %step] {layer = 0 : i64, scale = 0.5 : f32, window = 6 : i64} : tensor<1x2x4x8xf32>, memref<16x2x2x1x4x8xf32>, tensor<16xi32>, tensor<2xi64> -> tensor<1x2x4x8xf32>
  kiln.kv_store %k, %k into %cache[%table, %step] {layer = 1 : i64} : tensor<1x1x4x8xf32>, tensor<1x1x4x8xf32>, memref<16x2x2x1x4x8xf32>, tensor<16xi32>, tensor<2xi64>
  %b = kiln.paged_attention %a over %cache[%table, %step] {layer = 1 : i64, scale = 0.5 : f32} : tensor<1x2x4x8xf32>, memref<16x2x2x1x4x8xf32>, tensor<16xi32>, tensor<2xi64> -> tensor<1x2x4x8xf32>
  return %b : tensor<1x2x4x8xf32>
}

// -----

// Every layer windowed by the model (window 8, no sinks), a 1-token step
// and a 4-token step sharing the cache: the longest call (4) sizes the
// ring, 0 + 1 + ceil((8 + 4 - 2) / 4) = 4 blocks, in both functions.
// AUTO-LABEL: func.func @decode(
// AUTO-SAME: tensor<4xi32>, %{{.+}}: tensor<2xi64>, %{{.+}}: memref<4x1x2x1x4x8xf32>)
// AUTO-LABEL: func.func @prefill(
// AUTO-SAME: tensor<4xi32>, %{{.+}}: tensor<2xi64>, %{{.+}}: memref<4x1x2x1x4x8xf32>)
func.func @decode(%q: tensor<1x2x1x8xf32>, %table: tensor<16xi32>, %step: tensor<2xi64>, %cache: memref<16x1x2x1x4x8xf32>) -> tensor<1x2x1x8xf32> {
  %a = kiln.paged_attention %q over %cache[%table, %step] {layer = 0 : i64, scale = 0.5 : f32, window = 8 : i64} : tensor<1x2x1x8xf32>, memref<16x1x2x1x4x8xf32>, tensor<16xi32>, tensor<2xi64> -> tensor<1x2x1x8xf32>
  return %a : tensor<1x2x1x8xf32>
}
func.func @prefill(%q: tensor<1x2x4x8xf32>, %table: tensor<16xi32>, %step: tensor<2xi64>, %cache: memref<16x1x2x1x4x8xf32>) -> tensor<1x2x4x8xf32> {
  %a = kiln.paged_attention %q over %cache[%table, %step] {layer = 0 : i64, scale = 0.5 : f32, window = 8 : i64} : tensor<1x2x4x8xf32>, memref<16x1x2x1x4x8xf32>, tensor<16xi32>, tensor<2xi64> -> tensor<1x2x4x8xf32>
  return %a : tensor<1x2x4x8xf32>
}

// -----

// A window as large as the context saves nothing: the cache stays.
// AUTO-LABEL: func.func @wide(
// AUTO-SAME: memref<4x1x2x1x4x8xf32>
func.func @wide(%q: tensor<1x2x4x8xf32>, %table: tensor<4xi32>, %step: tensor<2xi64>, %cache: memref<4x1x2x1x4x8xf32>) -> tensor<1x2x4x8xf32> {
  %a = kiln.paged_attention %q over %cache[%table, %step] {layer = 0 : i64, scale = 0.5 : f32, window = 16 : i64} : tensor<1x2x4x8xf32>, memref<4x1x2x1x4x8xf32>, tensor<4xi32>, tensor<2xi64> -> tensor<1x2x4x8xf32>
  return %a : tensor<1x2x4x8xf32>
}
