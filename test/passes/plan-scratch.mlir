// RUN: kiln-opt %s --kiln-plan-scratch | FileCheck %s

// %a and %b live at the same time and get disjoint, 64-byte aligned places;
// %c is allocated after %a died and reuses its bytes. The buffer returned
// through no dealloc (%keep) stays a malloc.
// CHECK-LABEL: func.func @main
// CHECK-SAME: %[[S:[a-z0-9]+]]: memref<1088xi8>)
// CHECK-SAME: kiln.scratch_size = 1088 : i64
// CHECK: %[[O1:.+]] = arith.constant 0 : index
// CHECK: %[[A:.+]] = memref.view %[[S]][%[[O1]]][] : memref<1088xi8> to memref<256xf32>
// CHECK: %[[O2:.+]] = arith.constant 1024 : index
// CHECK: %[[B:.+]] = memref.view %[[S]][%[[O2]]][] : memref<1088xi8> to memref<4x4xf32>
// CHECK: %[[O3:.+]] = arith.constant 0 : index
// CHECK: %[[C:.+]] = memref.view %[[S]][%[[O3]]][] : memref<1088xi8> to memref<16xf32>
// CHECK: memref.alloc() : memref<8xf32>
// CHECK-NOT: memref.dealloc %[[A]]
// CHECK-NOT: memref.dealloc %[[B]]
func.func @main(%out: memref<16xf32>) {
  %cst = arith.constant 1.0 : f32
  %a = memref.alloc() : memref<256xf32>
  %b = memref.alloc() : memref<4x4xf32>
  linalg.fill ins(%cst : f32) outs(%a : memref<256xf32>)
  linalg.fill ins(%cst : f32) outs(%b : memref<4x4xf32>)
  memref.dealloc %a : memref<256xf32>
  %c = memref.alloc() : memref<16xf32>
  linalg.fill ins(%cst : f32) outs(%c : memref<16xf32>)
  memref.copy %c, %out : memref<16xf32> to memref<16xf32>
  memref.dealloc %b : memref<4x4xf32>
  memref.dealloc %c : memref<16xf32>
  %keep = memref.alloc() : memref<8xf32>
  return
}
