// kiln-parallel-dims-first: a generic's parallel loops move outside its
// reduction loops (each group keeping its order), so a matmul lowered as
// (m, k, n) runs as (m, n, k); generics already in that order are kept.
// RUN: kiln-opt %s -pass-pipeline="builtin.module(func.func(kiln-parallel-dims-first))" | FileCheck %s
// RUN: kiln-opt %s -pass-pipeline="builtin.module(func.func(kiln-parallel-dims-first, convert-linalg-to-parallel-loops))" | FileCheck %s --check-prefix=LOOPS

// CHECK-DAG: #[[A:.+]] = affine_map<(d0, d1, d2) -> (d0, d2)>
// CHECK-DAG: #[[B:.+]] = affine_map<(d0, d1, d2) -> (d2, d1)>
// CHECK-DAG: #[[C:.+]] = affine_map<(d0, d1, d2) -> (d0, d1)>
// CHECK-LABEL: func.func @mkn
// CHECK: linalg.generic {indexing_maps = [#[[A]], #[[B]], #[[C]]], iterator_types = ["parallel", "parallel", "reduction"]}
// LOOPS-LABEL: func.func @mkn
// LOOPS: scf.parallel (%[[M:.+]], %[[N:.+]]) =
// LOOPS: scf.for %[[K:.+]] =
// LOOPS: memref.load %arg0[%[[M]], %[[K]]]
// LOOPS: memref.load %arg1[%[[K]], %[[N]]]
#mk = affine_map<(m, k, n) -> (m, k)>
#kn = affine_map<(m, k, n) -> (k, n)>
#mn = affine_map<(m, k, n) -> (m, n)>
func.func @mkn(%a: memref<2x3xf32>, %b: memref<3x4xf32>, %c: memref<2x4xf32>) {
  linalg.generic {indexing_maps = [#mk, #kn, #mn],
                  iterator_types = ["parallel", "reduction", "parallel"]}
      ins(%a, %b : memref<2x3xf32>, memref<3x4xf32>) outs(%c : memref<2x4xf32>) {
  ^bb0(%x: f32, %y: f32, %acc: f32):
    %p = arith.mulf %x, %y : f32
    %s = arith.addf %acc, %p : f32
    linalg.yield %s : f32
  }
  return
}

// CHECK-LABEL: func.func @rows
// CHECK: iterator_types = ["parallel", "reduction"]
#id = affine_map<(i, k) -> (i, k)>
#row = affine_map<(i, k) -> (i)>
func.func @rows(%x: memref<2x8xf32>, %y: memref<2xf32>) {
  linalg.generic {indexing_maps = [#id, #row],
                  iterator_types = ["parallel", "reduction"]}
      ins(%x : memref<2x8xf32>) outs(%y : memref<2xf32>) {
  ^bb0(%v: f32, %acc: f32):
    %s = arith.addf %acc, %v : f32
    linalg.yield %s : f32
  }
  return
}
