// kiln-guard-zero-trip-loops: an scf.for with results whose trip count may
// be zero runs under `scf.if (lb < ub)`, the else branch yielding its
// initial values (MLIR's SPIR-V lowering would otherwise hand back
// undefined values for a loop that never ran). Loops with constant bounds
// that run, and loops without results, stay as they are.
// RUN: kiln-opt %s -kiln-guard-zero-trip-loops | FileCheck %s

// CHECK-LABEL: func.func @dynamic(
// CHECK-SAME: %[[LB:[^:]+]]: index, %[[UB:[^:]+]]: index, %[[X:[^:]+]]: f32)
// CHECK: %[[RUNS:.+]] = arith.cmpi slt, %[[LB]], %[[UB]] : index
// CHECK: %[[R:.+]] = scf.if %[[RUNS]] -> (f32) {
// CHECK:   %[[L:.+]] = scf.for %{{.+}} = %[[LB]] to %[[UB]] step %{{.+}} iter_args(%{{.+}} = %[[X]]) -> (f32)
// CHECK:   scf.yield %[[L]] : f32
// CHECK: } else {
// CHECK:   scf.yield %[[X]] : f32
// CHECK: }
// CHECK: return %[[R]] : f32
func.func @dynamic(%lb: index, %ub: index, %x: f32) -> f32 {
  %c1 = arith.constant 1 : index
  %r = scf.for %i = %lb to %ub step %c1 iter_args(%a = %x) -> (f32) {
    %y = arith.addf %a, %a : f32
    scf.yield %y : f32
  }
  return %r : f32
}

// An inner loop that may be empty is guarded inside its outer loop,
// which runs (constant bounds 0 < 4) and stays.
// CHECK-LABEL: func.func @nested(
// CHECK: scf.for %{{.+}} = %c0 to %c4 step %c1 iter_args
// CHECK: arith.cmpi slt
// CHECK: scf.if
// CHECK: scf.for
// CHECK-LABEL: func.func @plain(
// CHECK-NOT: scf.if
// CHECK: return
func.func @nested(%ub: index, %x: f32) -> f32 {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %c4 = arith.constant 4 : index
  %r = scf.for %i = %c0 to %c4 step %c1 iter_args(%a = %x) -> (f32) {
    %s = scf.for %j = %c0 to %ub step %c1 iter_args(%b = %a) -> (f32) {
      %y = arith.mulf %b, %b : f32
      scf.yield %y : f32
    }
    scf.yield %s : f32
  }
  return %r : f32
}

// No results: nothing to guard.
func.func @plain(%ub: index, %m: memref<8xf32>, %x: f32) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  scf.for %i = %c0 to %ub step %c1 {
    memref.store %x, %m[%i] : memref<8xf32>
  }
  return
}
