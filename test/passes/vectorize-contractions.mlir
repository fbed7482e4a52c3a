// RUN: kiln-opt %s --kiln-vectorize-contractions --split-input-file | FileCheck %s

#lhs = affine_map<(m, k, n) -> (m, k)>
#rhs = affine_map<(m, k, n) -> (k, n)>
#out = affine_map<(m, k, n) -> (m, n)>

// 8x32 output in 4x16 blocks: four rows of 16 lanes stay in registers
// across k; each k step broadcasts one lhs element per row.
// CHECK-LABEL: func.func @matmul
// CHECK-DAG: %[[C4:.+]] = arith.constant 4 : index
// CHECK-DAG: %[[C16:.+]] = arith.constant 16 : index
// CHECK: scf.parallel (%[[M:.+]], %[[N:.+]]) = {{.*}} step (%[[C4]], %[[C16]])
// CHECK-COUNT-4: vector.load %arg2{{.*}} : memref<8x32xf32>, vector<16xf32>
// CHECK: scf.for %[[K:.+]] = {{.*}} iter_args({{.*}}) -> (vector<16xf32>, vector<16xf32>, vector<16xf32>, vector<16xf32>)
// CHECK: %[[B:.+]] = vector.load %arg1[%[[K]], %[[N]]] : memref<16x32xf32>, vector<16xf32>
// CHECK: %[[A:.+]] = memref.load %arg0[%[[M]], %[[K]]]
// CHECK: %[[AB:.+]] = vector.broadcast %[[A]] : f32 to vector<16xf32>
// CHECK: %[[P:.+]] = arith.mulf %[[AB]], %[[B]]
// CHECK: arith.addf %{{.+}}, %[[P]]
// CHECK-COUNT-4: vector.store
// CHECK-NOT: linalg.generic
func.func @matmul(%a: memref<8x16xf32>, %b: memref<16x32xf32>, %c: memref<8x32xf32>) {
  linalg.generic {kiln.matmul, indexing_maps = [#lhs, #rhs, #out], iterator_types = ["parallel", "reduction", "parallel"]} ins(%a, %b : memref<8x16xf32>, memref<16x32xf32>) outs(%c : memref<8x32xf32>) {
  ^bb0(%x: f32, %y: f32, %acc: f32):
    %p = arith.mulf %x, %y : f32
    %s = arith.addf %acc, %p : f32
    linalg.yield %s : f32
  }
  return
}

// -----

#lhs = affine_map<(m, k, n) -> (m, k)>
#rhs = affine_map<(m, k, n) -> (k, n)>
#out = affine_map<(m, k, n) -> (m, n)>

// N = 12 has no vector tile: the scalar loops stay.
// CHECK-LABEL: func.func @odd_n
// CHECK: linalg.generic
func.func @odd_n(%a: memref<8x16xf32>, %b: memref<16x12xf32>, %c: memref<8x12xf32>) {
  linalg.generic {kiln.matmul, indexing_maps = [#lhs, #rhs, #out], iterator_types = ["parallel", "reduction", "parallel"]} ins(%a, %b : memref<8x16xf32>, memref<16x12xf32>) outs(%c : memref<8x12xf32>) {
  ^bb0(%x: f32, %y: f32, %acc: f32):
    %p = arith.mulf %x, %y : f32
    %s = arith.addf %acc, %p : f32
    linalg.yield %s : f32
  }
  return
}
