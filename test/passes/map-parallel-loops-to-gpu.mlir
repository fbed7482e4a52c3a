// kiln-map-parallel-loops-to-gpu: a top-level scf.parallel becomes a 1-D
// launch of fixed-size workgroups over its linearized iterations (guarded,
// row-major, last dim fastest); constants, views and loads used inside are
// recomputed in the kernel; nested parallel loops run sequentially; other
// top-level memory ops run as one invocation.
// RUN: kiln-opt %s -split-input-file -pass-pipeline="builtin.module(func.func(kiln-map-parallel-loops-to-gpu{workgroup-size=4}))" | FileCheck %s

// CHECK-LABEL: func.func @add
// Six iterations in workgroups of four: two workgroups.
// CHECK: %[[C2:.+]] = arith.constant 2 : index
// CHECK: %[[C4:.+]] = arith.constant 4 : index
// CHECK: gpu.launch blocks(%{{.+}}, %{{.+}}, %{{.+}}) in (%{{.+}} = %[[C2]], {{.+}}) threads(%{{.+}}, %{{.+}}, %{{.+}}) in (%{{.+}} = %[[C4]],
// CHECK: arith.cmpi ult, %[[ID:.+]], %c6
// CHECK: scf.if
// CHECK: arith.remui %[[ID]], %c3
// CHECK: arith.divui %[[ID]], %c3
// CHECK: memref.load
// CHECK: memref.store
// CHECK: gpu.terminator
func.func @add(%x: memref<2x3xf32>, %y: memref<2x3xf32>) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %c2 = arith.constant 2 : index
  %c3 = arith.constant 3 : index
  scf.parallel (%i, %j) = (%c0, %c0) to (%c2, %c3) step (%c1, %c1) {
    %v = memref.load %x[%i, %j] : memref<2x3xf32>
    memref.store %v, %y[%i, %j] : memref<2x3xf32>
    scf.reduce
  }
  return
}

// -----

// CHECK-LABEL: func.func @matmul_like
// CHECK: gpu.launch
// The n loop nested under the k reduction runs sequentially.
// CHECK: scf.for
// CHECK: scf.for
// CHECK-NOT: scf.parallel
func.func @matmul_like(%a: memref<2x3xf32>, %b: memref<3x4xf32>, %c: memref<2x4xf32>) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %c2 = arith.constant 2 : index
  %c3 = arith.constant 3 : index
  %c4 = arith.constant 4 : index
  scf.parallel (%m) = (%c0) to (%c2) step (%c1) {
    scf.for %k = %c0 to %c3 step %c1 {
      scf.parallel (%n) = (%c0) to (%c4) step (%c1) {
        %av = memref.load %a[%m, %k] : memref<2x3xf32>
        %bv = memref.load %b[%k, %n] : memref<3x4xf32>
        %cv = memref.load %c[%m, %n] : memref<2x4xf32>
        %p = arith.mulf %av, %bv : f32
        %s = arith.addf %cv, %p : f32
        memref.store %s, %c[%m, %n] : memref<2x4xf32>
        scf.reduce
      }
    }
    scf.reduce
  }
  return
}

// -----

// A scalar loaded on the host is loaded again inside the kernel that uses
// it; a top-level store runs as one invocation.
// CHECK-LABEL: func.func @scalar
// CHECK-NOT: memref.load
// CHECK: gpu.launch
// CHECK: memref.load %arg0[]
// CHECK: gpu.launch
// CHECK: memref.store
func.func @scalar(%s: memref<f32>, %y: memref<4xf32>, %z: memref<f32>) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %c4 = arith.constant 4 : index
  %v = memref.load %s[] : memref<f32>
  scf.parallel (%i) = (%c0) to (%c4) step (%c1) {
    memref.store %v, %y[%i] : memref<4xf32>
    scf.reduce
  }
  %one = arith.constant 1.0 : f32
  memref.store %one, %z[] : memref<f32>
  return
}
