// RUN: kiln-opt %s --kiln-empty-buffer-arguments | FileCheck %s

// A statically empty buffer argument gets a one-element type (the
// bare-pointer calling convention does not convert zero-element memrefs);
// its users see the original shape through a reinterpret_cast.
// CHECK-LABEL: func.func @used(
// CHECK-SAME: %{{.*}}: memref<4xf32>, %[[B:.*]]: memref<1xf32>)
// CHECK: %[[V:.*]] = memref.reinterpret_cast %[[B]] to offset: [0], sizes: [2, 0, 3], strides: [0, 3, 1] : memref<1xf32> to memref<2x0x3xf32>
// CHECK: linalg.fill ins(%{{.*}} : f32) outs(%[[V]] : memref<2x0x3xf32>)
func.func @used(%a: memref<4xf32>, %b: memref<2x0x3xf32>) {
  %c0 = arith.constant 0 : index
  %z = memref.load %a[%c0] : memref<4xf32>
  linalg.fill ins(%z : f32) outs(%b : memref<2x0x3xf32>)
  return
}

// CHECK-LABEL: func.func @unused(
// CHECK-SAME: %{{.*}}: memref<1xi64>, %{{.*}}: memref<3xf32>)
// CHECK-NOT: reinterpret_cast
// CHECK: return
func.func @unused(%a: memref<0xi64>, %b: memref<3xf32>) {
  return
}
