// kiln.kv_store and kiln.paged_attention become loops while bufferizing:
// the store writes the n real tokens through the block table; attention is
// one online-softmax pass per (head, query) whose trip count is the run-time
// context (pos + i + 1, at most pos + n), with window and sink ranges.
// RUN: kiln-compile %s --compile-to=bufferize | FileCheck %s

func.func @step(%q: tensor<1x4x2x8xf32>, %k: tensor<1x2x2x8xf32>, %table: tensor<4xi32>, %step: tensor<2xi64>, %cache: memref<4x1x2x2x4x8xf32>) -> tensor<1x4x2x8xf32> {
  kiln.kv_store %k, %k into %cache[%table, %step] {layer = 0 : i64} : tensor<1x2x2x8xf32>, tensor<1x2x2x8xf32>, memref<4x1x2x2x4x8xf32>, tensor<4xi32>, tensor<2xi64>
  %r = kiln.paged_attention %q over %cache[%table, %step] {layer = 0 : i64, scale = 0.5 : f32, window = 3 : i64, sinks = 1 : i64} : tensor<1x4x2x8xf32>, memref<4x1x2x2x4x8xf32>, tensor<4xi32>, tensor<2xi64> -> tensor<1x4x2x8xf32>
  return %r : tensor<1x4x2x8xf32>
}

// CHECK-LABEL: func.func @step(
// CHECK-SAME: %[[Q:[^:]+]]: memref<1x4x2x8xf32>, %[[K:[^:]+]]: memref<1x2x2x8xf32>, %[[T:[^:]+]]: memref<4xi32>, %[[S:[^:]+]]: memref<2xi64>, %[[C:[^:]+]]: memref<4x1x2x2x4x8xf32>, %[[OUT:[^:]+]]: memref<1x4x2x8xf32>)
// The store: n = step[1] tokens, block = clamp(table[j / 4], 0, 3), slot j % 4.
// CHECK: %[[N:.+]] = memref.load %[[S]][%c1
// CHECK: %[[NI:.+]] = arith.index_cast %[[N]]
// CHECK: scf.for %{{.+}} = %c0 to %[[NI]]
// CHECK: arith.divui
// CHECK: arith.remui
// CHECK: memref.load %[[T]]
// CHECK: arith.maxsi
// CHECK: arith.minsi
// CHECK: vector.store %{{.+}}, %[[C]]
// Attention: parallel over heads x queries, online softmax over the keys.
// CHECK: scf.parallel (%{{.+}}, %{{.+}}) = (%c0, %c0) to (%c4, %c2)
// CHECK: vector.load %[[Q]]
// The sink range, then the window range.
// CHECK: scf.for {{.+}} iter_args
// CHECK: scf.for {{.+}} iter_args
// CHECK: vector.load %[[C]]
// CHECK: vector.reduction <add>, {{.+}} fastmath<reassoc>
// CHECK: math.exp
// CHECK: math.exp
// CHECK: vector.store %{{.+}}, %[[OUT]]

// An f16 cache: keys and values are rounded when stored, widened when read,
// and the query is rounded alike. `rounded_probs`: a statistics pass (max,
// sum) then a pass that rounds each normalized probability to f16 before
// it weights its value row.
func.func @half(%q: tensor<1x4x2x8xf32>, %k: tensor<1x2x2x8xf32>, %table: tensor<4xi32>, %step: tensor<2xi64>, %cache: memref<4x1x2x2x4x8xf16>) -> tensor<1x4x2x8xf32> {
  kiln.kv_store %k, %k into %cache[%table, %step] {layer = 0 : i64} : tensor<1x2x2x8xf32>, tensor<1x2x2x8xf32>, memref<4x1x2x2x4x8xf16>, tensor<4xi32>, tensor<2xi64>
  %r = kiln.paged_attention %q over %cache[%table, %step] {layer = 0 : i64, scale = 0.5 : f32, rounded_probs} : tensor<1x4x2x8xf32>, memref<4x1x2x2x4x8xf16>, tensor<4xi32>, tensor<2xi64> -> tensor<1x4x2x8xf32>
  return %r : tensor<1x4x2x8xf32>
}

// CHECK-LABEL: func.func @half(
// CHECK: arith.truncf %{{.+}} : vector<8xf32> to vector<8xf16>
// CHECK: vector.store %{{.+}} : memref<4x1x2x2x4x8xf16>, vector<8xf16>
// CHECK: scf.parallel
// CHECK: arith.truncf %{{.+}} : vector<8xf32> to vector<8xf16>
// CHECK: arith.extf %{{.+}} : vector<8xf16> to vector<8xf32>
// The statistics pass carries (max, sum) only.
// CHECK: scf.for {{.+}} iter_args({{[^,]+}}, {{[^,]+}}) -> (f32, f32)
// CHECK: arith.extf %{{.+}} : vector<8xf16> to vector<8xf32>
// CHECK: math.exp
// CHECK: math.exp
// CHECK: arith.divf
// The weighting pass.
// CHECK: scf.for {{.+}} iter_args({{[^)]+}}) -> (vector<8xf32>)
// CHECK: math.exp
// CHECK: arith.truncf %{{.+}} : f32 to f16
// CHECK: arith.extf %{{.+}} : f16 to f32
// CHECK: vector.fma

// An int8 cache (llama.cpp's Q8_0 along head_dim): a row of head_dim 64 is
// 64 codes, then an f16 scale per group of 32 at bytes 64 and 66. The
// store quantizes each group (amax, round half to even, i8 codes, f16
// scale as two bytes); attention widens each group's codes and multiplies
// by its scale (the query stays f32), group by group: a score is
// sum_g d_g (q_g . codes_g), and values accumulate per group as codes_g
// times (p d_g), so scales are scalar multiplies, not vector shuffles.
func.func @int8(%q: tensor<1x4x2x64xf32>, %k: tensor<1x2x2x64xf32>, %table: tensor<4xi32>, %step: tensor<2xi64>, %cache: memref<4x1x2x2x4x68xi8>) -> tensor<1x4x2x64xf32> {
  kiln.kv_store %k, %k into %cache[%table, %step] {layer = 0 : i64} : tensor<1x2x2x64xf32>, tensor<1x2x2x64xf32>, memref<4x1x2x2x4x68xi8>, tensor<4xi32>, tensor<2xi64>
  %r = kiln.paged_attention %q over %cache[%table, %step] {layer = 0 : i64, scale = 0.125 : f32} : tensor<1x4x2x64xf32>, memref<4x1x2x2x4x68xi8>, tensor<4xi32>, tensor<2xi64> -> tensor<1x4x2x64xf32>
  return %r : tensor<1x4x2x64xf32>
}

// CHECK-LABEL: func.func @int8(
// CHECK-SAME: %[[K:[^:]+]]: memref<1x2x2x64xf32>, %{{[^:]+}}: memref<4xi32>, %{{[^:]+}}: memref<2xi64>, %[[C:[^:]+]]: memref<4x1x2x2x4x68xi8>
// Keys, group 0: codes at 0, scale at 64.
// CHECK: vector.load %[[K]][%{{.+}}, %{{.+}}, %{{.+}}, %c0] : memref<1x2x2x64xf32>, vector<32xf32>
// CHECK: vector.reduction <maximumf>
// CHECK: math.roundeven %{{.+}} : vector<32xf32>
// CHECK: arith.fptosi %{{.+}} : vector<32xf32> to vector<32xi8>
// CHECK: vector.store %{{.+}}, %[[C]][%{{.+}}, %c0, %c0, %{{.+}}, %{{.+}}, %c0] : memref<4x1x2x2x4x68xi8>, vector<32xi8>
// CHECK: arith.truncf %{{.+}} : f32 to f16
// CHECK: vector.bitcast %{{.+}} : vector<1xf16> to vector<2xi8>
// CHECK: vector.store %{{.+}}, %[[C]][%{{.+}}, %c0, %c0, %{{.+}}, %{{.+}}, %c64] : memref<4x1x2x2x4x68xi8>, vector<2xi8>
// Group 1: codes at 32, scale at 66.
// CHECK: vector.load %[[K]][%{{.+}}, %{{.+}}, %{{.+}}, %c32]
// CHECK: vector.store %{{.+}}, %[[C]][%{{.+}}, %c0, %c0, %{{.+}}, %{{.+}}, %c32] : memref<4x1x2x2x4x68xi8>, vector<32xi8>
// CHECK: vector.store %{{.+}}, %[[C]][%{{.+}}, %c0, %c0, %{{.+}}, %{{.+}}, %c66] : memref<4x1x2x2x4x68xi8>, vector<2xi8>
// Values (dim 2 = 1) likewise.
// CHECK: vector.store %{{.+}}, %[[C]][%{{.+}}, %c0, %c1, %{{.+}}, %{{.+}}, %c66]
// Attention: no rounding of the query, split into its two groups; one
// accumulator per group, carried by the online-softmax loop and joined at
// the end.
// CHECK: scf.parallel
// CHECK-NOT: arith.truncf
// CHECK: %[[QV:.+]] = vector.load %{{.+}} : memref<1x4x2x64xf32>, vector<64xf32>
// CHECK: %[[Q0:.+]] = vector.extract_strided_slice %[[QV]] {offsets = [0], sizes = [32], strides = [1]}
// CHECK: %[[Q1:.+]] = vector.extract_strided_slice %[[QV]] {offsets = [32], sizes = [32], strides = [1]}
// CHECK: scf.for {{.+}} -> (f32, f32, vector<32xf32>, vector<32xf32>)
// CHECK: %[[K0:.+]] = vector.load %[[C]][%{{.+}}, %c0, %c0, %{{.+}}, %{{.+}}, %c0] : memref<4x1x2x2x4x68xi8>, vector<32xi8>
// CHECK: %[[K0F:.+]] = arith.sitofp %[[K0]] : vector<32xi8> to vector<32xf32>
// CHECK: vector.load %[[C]][%{{.+}}, %c0, %c0, %{{.+}}, %{{.+}}, %c64] : memref<4x1x2x2x4x68xi8>, vector<2xi8>
// CHECK: vector.bitcast %{{.+}} : vector<2xi8> to vector<1xf16>
// CHECK: arith.mulf %[[Q0]], %[[K0F]] : vector<32xf32>
// CHECK: vector.reduction <add>
// CHECK: arith.mulf %{{.+}} : f32
// CHECK: arith.mulf %[[Q1]], %{{.+}} : vector<32xf32>
// CHECK: math.exp
// CHECK: vector.load %[[C]][%{{.+}}, %c0, %c1, %{{.+}}, %{{.+}}, %c0] : memref<4x1x2x2x4x68xi8>, vector<32xi8>
// CHECK-NOT: vector.insert_strided_slice
// CHECK: scf.yield
// CHECK: vector.insert_strided_slice %{{.+}} {offsets = [0], strides = [1]} : vector<32xf32> into vector<64xf32>
// CHECK: vector.insert_strided_slice %{{.+}} {offsets = [32], strides = [1]} : vector<32xf32> into vector<64xf32>

// Soft-capping (Gemma 2): each scaled score s becomes cap * tanh(s / cap)
// before the online softmax sees it.
// RUN: kiln-compile %s --compile-to=bufferize | FileCheck %s --check-prefix=SOFTCAP
func.func @softcap(%q: tensor<1x4x2x8xf32>, %table: tensor<4xi32>, %step: tensor<2xi64>, %cache: memref<4x1x2x2x4x8xf32>) -> tensor<1x4x2x8xf32> {
  %r = kiln.paged_attention %q over %cache[%table, %step] {layer = 0 : i64, scale = 0.5 : f32, softcap = 2.0 : f32} : tensor<1x4x2x8xf32>, memref<4x1x2x2x4x8xf32>, tensor<4xi32>, tensor<2xi64> -> tensor<1x4x2x8xf32>
  return %r : tensor<1x4x2x8xf32>
}
// SOFTCAP-LABEL: func.func @softcap(
// SOFTCAP: vector.reduction <add>
// SOFTCAP: %[[S:.+]] = arith.mulf %{{.+}}, %cst{{.*}} : f32
// SOFTCAP: %[[D:.+]] = arith.divf %[[S]], %[[CAP:[^ ]+]] : f32
// SOFTCAP: %[[T:.+]] = math.tanh %[[D]] : f32
// SOFTCAP: arith.mulf %[[T]], %[[CAP]] : f32
// SOFTCAP: math.exp
