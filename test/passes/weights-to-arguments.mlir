// RUN: kiln-opt %s --kiln-weights-to-arguments | FileCheck %s

// Each distinct weight becomes one trailing argument, in first-use order;
// no argument may be written by bufferization.
// CHECK-LABEL: func.func @main
// CHECK-SAME: (%[[X:arg[0-9]+]]: tensor<4xf32> {bufferization.writable = false},
// CHECK-SAME: %[[B:arg[0-9]+]]: tensor<4xf32> {bufferization.writable = false},
// CHECK-SAME: %[[A:arg[0-9]+]]: tensor<4xf32> {bufferization.writable = false})
// CHECK-SAME: kiln.weights = ["b", "a"]
// CHECK-NOT: kiln.weight
// CHECK: %[[T:.+]] = kiln.add %[[X]], %[[B]]
// CHECK: %[[U:.+]] = kiln.mul %[[T]], %[[A]]
// CHECK: kiln.sub %[[U]], %[[B]]
func.func @main(%x: tensor<4xf32>) -> tensor<4xf32> {
  %b = kiln.weight "b" : tensor<4xf32>
  %0 = kiln.add %x, %b : (tensor<4xf32>, tensor<4xf32>) -> tensor<4xf32>
  %a = kiln.weight "a" : tensor<4xf32>
  %1 = kiln.mul %0, %a : (tensor<4xf32>, tensor<4xf32>) -> tensor<4xf32>
  %b2 = kiln.weight "b" : tensor<4xf32>
  %2 = kiln.sub %1, %b2 : (tensor<4xf32>, tensor<4xf32>) -> tensor<4xf32>
  return %2 : tensor<4xf32>
}
