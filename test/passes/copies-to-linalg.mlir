// RUN: kiln-opt %s --kiln-copies-to-linalg | FileCheck %s

// Strided copies would otherwise need MLIR's runner-utils library.
// CHECK-LABEL: func.func @strided
// CHECK-NOT: memref.copy
// CHECK: linalg.copy ins(%arg0 : memref<4xf32>) outs(%{{.+}} : memref<4xf32, strided<[2], offset: 1>>)
func.func @strided(%src: memref<4xf32>, %dst: memref<8xf32>) {
  %sv = memref.subview %dst[1] [4] [2] : memref<8xf32> to memref<4xf32, strided<[2], offset: 1>>
  memref.copy %src, %sv : memref<4xf32> to memref<4xf32, strided<[2], offset: 1>>
  return
}
