// The GPU form of kiln.paged_attention (shared by Vulkan and CUDA): split
// over the keys, three flat kernels of many invocations each instead of
// one invocation per (head, query) walking the whole context.
// RUN: kiln-compile %s --target=vulkan --compile-to=bufferize | FileCheck %s --check-prefixes=CHECK,VK
// RUN: kiln-compile %s --target=cuda:sm_80 --compile-to=bufferize | FileCheck %s --check-prefixes=CHECK,CU
// RUN: kiln-compile %s --target=vulkan --compile-to=bufferize | FileCheck %s --check-prefix=SOFTCAP

// 4 heads over 2 KV heads, 2 queries, head_dim 8; a 4 x 16 = 64-key cache
// in 2 splits of 32 keys; a window of 3 with 1 sink.
func.func @step(%q: tensor<1x4x2x8xf32>, %table: tensor<4xi32>, %step: tensor<2xi64>, %cache: memref<4x1x2x2x16x8xf32>) -> tensor<1x4x2x8xf32> {
  %r = kiln.paged_attention %q over %cache[%table, %step] {layer = 0 : i64, scale = 0.5 : f32, window = 3 : i64, sinks = 1 : i64} : tensor<1x4x2x8xf32>, memref<4x1x2x2x16x8xf32>, tensor<4xi32>, tensor<2xi64> -> tensor<1x4x2x8xf32>
  return %r : tensor<1x4x2x8xf32>
}

// Scratch: scores [head, query, key], per split max and sum, per split
// and dim the weighted values.
// CHECK-LABEL: func.func @step(
// CHECK: %[[S:.+]] = memref.alloc() {{.*}} : memref<4x2x64xf32>
// CHECK: %[[M:.+]] = memref.alloc() {{.*}} : memref<4x2x2xf32>
// CHECK: %[[L:.+]] = memref.alloc() {{.*}} : memref<4x2x2xf32>
// CHECK: %[[P:.+]] = memref.alloc() {{.*}} : memref<4x2x2x8xf32>
// 4 x 2 x 64 score invocations, 4 x 2 x 2 x 8 partials, 4 x 2 x 8 outputs
// (Vulkan workgroups of 64, CUDA blocks of 128).
// CHECK: gpu.launch_func @step_kernel::@step_kernel
// VK-SAME: blocks in (%c8, %c1, %c1) threads in (%c64, %c1, %c1)
// CU-SAME: blocks in (%c4, %c1, %c1) threads in (%c128, %c1, %c1)
// CHECK: gpu.launch_func @step_kernel_0::@step_kernel
// VK-SAME: blocks in (%c2, %c1, %c1) threads in (%c64, %c1, %c1)
// CU-SAME: blocks in (%c1, %c1, %c1) threads in (%c128, %c1, %c1)
// CHECK: gpu.launch_func @step_kernel_1::@step_kernel
// CHECK-SAME: blocks in (%c1, %c1, %c1) threads in (%c64, %c1, %c1)
// CHECK-NOT: gpu.launch_func

// 1. Scores: an invocation per (head, query, key); keys outside the sink
// range and the window store nothing; q . k over head_dim.
// CHECK: gpu.func @step_kernel(
// CHECK: %[[KEY:.+]] = arith.remui %{{.+}}, %c64
// CHECK: arith.cmpi uge, %[[KEY]]
// CHECK: arith.cmpi ult, %[[KEY]]
// CHECK: arith.cmpi uge, %[[KEY]]
// CHECK: arith.cmpi ult, %[[KEY]]
// CHECK: %[[VIS:.+]] = arith.ori
// CHECK: scf.if %[[VIS]] {
// CHECK: scf.for {{.+}} = %c0 to %c8 step %c1 iter_args
// CHECK: math.fma
// CHECK: memref.store %{{.+}}, %{{.+}}[%{{.+}}, %{{.+}}, %[[KEY]]] : memref<4x2x64xf32>
// CHECK: gpu.return

// 2. Partials: head dim fastest; the sink range then the window range,
// each clipped to the split's 32 keys; (max, sum, value sum) carried.
// CHECK: gpu.func @step_kernel(
// CHECK: %[[D:.+]] = arith.remui %{{.+}}, %c8
// CHECK: arith.muli %{{.+}}, %c32
// CHECK: scf.for {{.+}} iter_args({{.+}}) -> (f32, f32, f32)
// CHECK: scf.for {{.+}} iter_args({{.+}}) -> (f32, f32, f32)
// CHECK: memref.store %{{.+}} : memref<4x2x2x8xf32>
// CHECK: arith.cmpi eq, %[[D]], %c0
// CHECK: memref.store %{{.+}} : memref<4x2x2xf32>
// CHECK: memref.store %{{.+}} : memref<4x2x2xf32>
// CHECK: gpu.return

// 3. Merge: over the splits that hold visible keys (ceil(hi / 32));
// splits with a zero sum are skipped; out = values / sum.
// CHECK: gpu.func @step_kernel(
// CHECK: arith.addi %{{.+}}, %c31
// CHECK: %[[ACTIVE:.+]] = arith.divui %{{.+}}, %c32
// CHECK: scf.for {{.+}} = %c0 to %[[ACTIVE]] step %c1 iter_args({{.+}}) -> (f32, f32, f32)
// CHECK: arith.cmpf ogt
// CHECK: arith.select
// CHECK: %[[OUT:.+]] = arith.divf
// CHECK: memref.store %[[OUT]], %{{.+}} : memref<1x4x2x8xf32>

// A 65536-key f16 cache (256 splits of 256 keys), 32 heads, 8 queries,
// f16-rounded probabilities: the scratch of all 8 queries would pass the
// 64 MiB budget, so they go in groups of 6 and 2, five kernels each:
// scores, per split (max, sum), the merged (max, 1 / sum), per split the
// rounded probabilities times values, the sum over splits.
func.func @groups(%q: tensor<1x32x8x64xf32>, %table: tensor<1024xi32>, %step: tensor<2xi64>, %cache: memref<1024x1x2x8x64x64xf16>) -> tensor<1x32x8x64xf32> {
  %r = kiln.paged_attention %q over %cache[%table, %step] {layer = 0 : i64, scale = 0.125 : f32, rounded_probs} : tensor<1x32x8x64xf32>, memref<1024x1x2x8x64x64xf16>, tensor<1024xi32>, tensor<2xi64> -> tensor<1x32x8x64xf32>
  return %r : tensor<1x32x8x64xf32>
}

// CHECK-LABEL: func.func @groups(
// CHECK: memref.alloc() {{.*}} : memref<32x6x65536xf32>
// CHECK: memref.alloc() {{.*}} : memref<32x6x256xf32>
// CHECK: memref.alloc() {{.*}} : memref<32x6x256xf32>
// CHECK: memref.alloc() {{.*}} : memref<32x6x256x64xf32>
// CHECK: memref.alloc() {{.*}} : memref<32x6xf32>
// CHECK: memref.alloc() {{.*}} : memref<32x6xf32>
// CHECK-COUNT-10: gpu.launch_func
// CHECK-NOT: gpu.launch_func
// The second group's queries are 6 and 7.
// CHECK: gpu.module @groups_kernel_5
// CHECK: arith.addi %{{.+}}, %c6
// The rounding: f16(exp(s - M) * (1 / L)) weights an f16 value.
// CHECK: gpu.module @groups_kernel_8
// CHECK: arith.truncf %{{.+}} : f32 to f16
// CHECK: arith.extf
// CHECK: memref.load %{{.+}} : memref<1024x1x2x8x64x64xf16>
// CHECK: arith.extf

// An int8 cache (Q8_0 along head_dim, rows of 64 codes and two f16 scales):
// the store is one invocation per (token, KV head, group of 32): 2 x 2 x 2;
// each finds its group's largest magnitude, stores rounded codes, then its
// scale as two bytes. Attention widens a code and multiplies it by the
// scale of its group (dim / 32), read as two bytes.
func.func @int8(%q: tensor<1x4x2x64xf32>, %k: tensor<1x2x2x64xf32>, %table: tensor<4xi32>, %step: tensor<2xi64>, %cache: memref<4x1x2x2x16x68xi8>) -> tensor<1x4x2x64xf32> {
  kiln.kv_store %k, %k into %cache[%table, %step] {layer = 0 : i64} : tensor<1x2x2x64xf32>, tensor<1x2x2x64xf32>, memref<4x1x2x2x16x68xi8>, tensor<4xi32>, tensor<2xi64>
  %r = kiln.paged_attention %q over %cache[%table, %step] {layer = 0 : i64, scale = 0.125 : f32} : tensor<1x4x2x64xf32>, memref<4x1x2x2x16x68xi8>, tensor<4xi32>, tensor<2xi64> -> tensor<1x4x2x64xf32>
  return %r : tensor<1x4x2x64xf32>
}

// CHECK-LABEL: func.func @int8(
// VK: gpu.launch_func @int8_kernel::@int8_kernel blocks in (%c1, %c1, %c1) threads in (%c8, %c1, %c1)
// CHECK: gpu.func @int8_kernel({{.+}}%[[C:[^:]+]]: memref<4x1x2x2x16x68xi8>)
// CHECK: arith.maximumf
// CHECK: math.roundeven %{{.+}} : f32
// CHECK: arith.fptosi %{{.+}} : f32 to i8
// CHECK: memref.store %{{.+}}, %[[C]]
// CHECK: arith.truncf %{{.+}} : f32 to f16
// CHECK: arith.bitcast %{{.+}} : f16 to i16
// CHECK: arith.trunci %{{.+}} : i16 to i8
// CHECK: memref.store
// CHECK: arith.trunci %{{.+}} : i16 to i8
// CHECK: memref.store
// The scores kernel: code, group, scale.
// CHECK: gpu.func @int8_kernel({{.+}}%[[C2:[^:]+]]: memref<4x1x2x2x16x68xi8>, %{{[^:]+}}: memref<4x2x64xf32>)
// CHECK: %[[CODE:.+]] = memref.load %[[C2]]
// CHECK: arith.divui %{{.+}}, %c32
// CHECK: arith.sitofp %[[CODE]] : i8 to f32
// CHECK: memref.load %[[C2]]
// CHECK: memref.load %[[C2]]
// CHECK: arith.bitcast %{{.+}} : i16 to f16

// Soft-capping (Gemma 2): the scores kernel stores cap * tanh(s / cap)
// (tanh as its polynomial on GPUs) for s the scaled dot product.
func.func @softcap(%q: tensor<1x4x2x8xf32>, %table: tensor<4xi32>, %step: tensor<2xi64>, %cache: memref<4x1x2x2x16x8xf32>) -> tensor<1x4x2x8xf32> {
  %r = kiln.paged_attention %q over %cache[%table, %step] {layer = 0 : i64, scale = 0.5 : f32, softcap = 2.0 : f32} : tensor<1x4x2x8xf32>, memref<4x1x2x2x16x8xf32>, tensor<4xi32>, tensor<2xi64> -> tensor<1x4x2x8xf32>
  return %r : tensor<1x4x2x8xf32>
}
// SOFTCAP: gpu.func @softcap_kernel({{.+}}%[[SC:[^:]+]]: memref<4x2x64xf32>)
// SOFTCAP: %[[DOT:.+]] = scf.for
// SOFTCAP: math.fma
// SOFTCAP: %[[S:.+]] = arith.mulf %[[DOT]], %{{.+}} : f32
// SOFTCAP: %[[D:.+]] = arith.divf %[[S]], %[[CAP:[^ ]+]] : f32
// SOFTCAP: math.absf %[[D]]
// SOFTCAP: %[[T:.+]] = arith.select
// SOFTCAP: %[[V:.+]] = arith.mulf %[[T]], %[[CAP]] : f32
// SOFTCAP: memref.store %[[V]], %[[SC]]
