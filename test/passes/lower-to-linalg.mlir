// RUN: kiln-opt %s --kiln-lower-to-linalg --split-input-file --verify-diagnostics | FileCheck %s

// Broadcast operands read through maps that pin size-1 dims to 0 and drop
// missing leading dims.
// CHECK-DAG: #[[PIN:.+]] = affine_map<(d0, d1) -> (d0, 0)>
// CHECK-DAG: #[[LAST:.+]] = affine_map<(d0, d1) -> (d1)>
// CHECK-DAG: #[[ID:.+]] = affine_map<(d0, d1) -> (d0, d1)>
// CHECK-LABEL: func.func @bcast
// CHECK: linalg.generic {indexing_maps = [#[[PIN]], #[[LAST]], #[[ID]]], iterator_types = ["parallel", "parallel"]}
// CHECK: arith.addf
func.func @bcast(%a: tensor<4x1xf32>, %b: tensor<3xf32>) -> tensor<4x3xf32> {
  %0 = kiln.add %a, %b : (tensor<4x1xf32>, tensor<3xf32>) -> tensor<4x3xf32>
  return %0 : tensor<4x3xf32>
}

// -----

// Batched matmul: loops (batch..., m, k, n), broadcast batch dims pinned.
// CHECK-DAG: #[[LHS:.+]] = affine_map<(d0, d1, d2, d3, d4) -> (d0, 0, d2, d3)>
// CHECK-DAG: #[[RHS:.+]] = affine_map<(d0, d1, d2, d3, d4) -> (d1, d3, d4)>
// CHECK-LABEL: func.func @matmul
// CHECK: %[[INIT:.+]] = linalg.fill
// CHECK: linalg.generic {indexing_maps = [#[[LHS]], #[[RHS]], {{.*}}], iterator_types = ["parallel", "parallel", "parallel", "reduction", "parallel"]}
// CHECK-SAME: outs(%[[INIT]]
// CHECK: arith.mulf
// CHECK: arith.addf
func.func @matmul(%a: tensor<2x1x3x4xf32>, %b: tensor<5x4x6xf32>) -> tensor<2x5x3x6xf32> {
  %0 = kiln.matmul %a, %b : (tensor<2x1x3x4xf32>, tensor<5x4x6xf32>) -> tensor<2x5x3x6xf32>
  return %0 : tensor<2x5x3x6xf32>
}

// -----

// A negative step extracts ascending from the last element, then flips.
// CHECK-DAG: #[[FLIP:.+]] = affine_map<(d0, d1) -> (-d0 + 3, d1)>
// CHECK-LABEL: func.func @slice_negative
// CHECK: %[[S:.+]] = tensor.extract_slice %arg0[0, 0] [4, 8] [3, 1]
// CHECK: linalg.generic {indexing_maps = [#[[FLIP]], {{.*}}]{{.*}} ins(%[[S]]
func.func @slice_negative(%a: tensor<10x8xf32>) -> tensor<4x8xf32> {
  %0 = kiln.slice %a {starts = array<i64: 9, 0>, steps = array<i64: -3, 1>} : tensor<10x8xf32> -> tensor<4x8xf32>
  return %0 : tensor<4x8xf32>
}

// -----

// CHECK-LABEL: func.func @slice_positive
// CHECK: tensor.extract_slice %arg0[2, 0] [3, 8] [2, 1]
// CHECK-NOT: linalg.generic
func.func @slice_positive(%a: tensor<10x8xf32>) -> tensor<3x8xf32> {
  %0 = kiln.slice %a {starts = array<i64: 2, 0>, steps = array<i64: 2, 1>} : tensor<10x8xf32> -> tensor<3x8xf32>
  return %0 : tensor<3x8xf32>
}

// -----

// CHECK-LABEL: func.func @reshape
// CHECK: %[[C:.+]] = tensor.collapse_shape %arg0 {{\[\[}}0, 1, 2]] : tensor<2x3x4xf32> into tensor<24xf32>
// CHECK: tensor.expand_shape %[[C]] {{\[\[}}0, 1]] output_shape [6, 4]
func.func @reshape(%a: tensor<2x3x4xf32>) -> tensor<6x4xf32> {
  %0 = kiln.reshape %a : tensor<2x3x4xf32> -> tensor<6x4xf32>
  return %0 : tensor<6x4xf32>
}

// -----

// Gather reads the data with tensor.extract at a normalized, clamped index.
// CHECK-LABEL: func.func @gather
// CHECK: linalg.generic
// CHECK: arith.index_cast
// CHECK: arith.select
// CHECK: %[[J:.+]] = linalg.index 1
// CHECK: tensor.extract %arg0[%{{.+}}, %[[J]]]
func.func @gather(%a: tensor<5x4xf32>, %i: tensor<3xi64>) -> tensor<3x4xf32> {
  %0 = kiln.gather %a, %i {axis = 0 : i64} : (tensor<5x4xf32>, tensor<3xi64>) -> tensor<3x4xf32>
  return %0 : tensor<3x4xf32>
}

// -----

// Softmax decomposes into max-reduce, sub+exp, sum-reduce, divide.
// CHECK-LABEL: func.func @softmax
// CHECK: arith.constant 0xFF800000 : f32
// CHECK: arith.maximumf
// CHECK: arith.subf
// CHECK: math.exp
// CHECK: arith.addf
// CHECK: arith.divf
// CHECK-NOT: kiln.
func.func @softmax(%a: tensor<2x8xf32>) -> tensor<2x8xf32> {
  %0 = kiln.softmax %a {axis = 1 : i64} : tensor<2x8xf32> -> tensor<2x8xf32>
  return %0 : tensor<2x8xf32>
}

// -----

// Weights stay: targets bind them.
// CHECK-LABEL: func.func @weight
// CHECK: %[[W:.+]] = kiln.weight "w" : tensor<4x4xf32>
// CHECK: linalg.generic {{.*}} ins(%arg0, %[[W]]
func.func @weight(%a: tensor<4x4xf32>) -> tensor<4x4xf32> {
  %w = kiln.weight "w" : tensor<4x4xf32>
  %0 = kiln.mul %a, %w : (tensor<4x4xf32>, tensor<4x4xf32>) -> tensor<4x4xf32>
  return %0 : tensor<4x4xf32>
}

// -----

// Comparisons produce i1, casts follow ONNX semantics (bool -> float is 0/1).
// CHECK-LABEL: func.func @compare_cast
// CHECK: arith.cmpi slt
// CHECK: arith.uitofp %{{.*}} : i1 to f32
func.func @compare_cast(%a: tensor<3xi64>, %b: tensor<3xi64>) -> tensor<3xf32> {
  %0 = kiln.less %a, %b : (tensor<3xi64>, tensor<3xi64>) -> tensor<3xi1>
  %1 = kiln.cast %0 : tensor<3xi1> -> tensor<3xf32>
  return %1 : tensor<3xf32>
}

// -----

func.func @symbolic(%a: tensor<?x4xf32>) -> tensor<?x4xf32> {
  // expected-error @+1 {{has a symbolic dim; bind it at compile time}}
  %0 = kiln.relu %a : tensor<?x4xf32> -> tensor<?x4xf32>
  return %0 : tensor<?x4xf32>
}

// -----

// arg_max carries (best value, index) through one reduction; the first
// element always wins over the sentinel.
// CHECK-LABEL: func.func @arg_max
// CHECK: %[[R:.+]]:2 = linalg.generic {{.*}} iterator_types = ["parallel", "reduction"]
// CHECK: arith.cmpf ogt
// CHECK: arith.cmpi slt
// CHECK: return %[[R]]#1
func.func @arg_max(%a: tensor<3x5xf32>) -> tensor<3xi64> {
  %0 = kiln.arg_max %a {axis = 1 : i64, keepdims = false, select_last_index = false} : tensor<3x5xf32> -> tensor<3xi64>
  return %0 : tensor<3xi64>
}

// -----

// Integer mod takes the divisor's sign (Python %), fmod the dividend's.
// CHECK-LABEL: func.func @mods
// CHECK: arith.remsi
// CHECK: arith.xori
// CHECK: arith.select
// CHECK: arith.remf
func.func @mods(%a: tensor<4xi32>, %b: tensor<4xi32>, %x: tensor<4xf32>, %y: tensor<4xf32>) -> (tensor<4xi32>, tensor<4xf32>) {
  %0 = kiln.mod %a, %b : (tensor<4xi32>, tensor<4xi32>) -> tensor<4xi32>
  %1 = kiln.fmod %x, %y : (tensor<4xf32>, tensor<4xf32>) -> tensor<4xf32>
  return %0, %1 : tensor<4xi32>, tensor<4xf32>
}

// -----

// CHECK-LABEL: func.func @gather_elements
// CHECK: linalg.generic
// CHECK: %[[I:.+]] = linalg.index 0
// CHECK: tensor.extract %arg0[%[[I]], %{{.+}}]
func.func @gather_elements(%a: tensor<3x4xf32>, %i: tensor<3x2xi64>) -> tensor<3x2xf32> {
  %0 = kiln.gather_elements %a, %i {axis = 1 : i64} : (tensor<3x4xf32>, tensor<3x2xi64>) -> tensor<3x2xf32>
  return %0 : tensor<3x2xf32>
}

// -----

// kiln.rope decomposes into rotate_half and two products.
// CHECK-LABEL: func.func @rope
// CHECK-NOT: kiln.rope
// CHECK: linalg.generic
func.func @rope(%x: tensor<1x2x3x16xf32>, %c: tensor<3x16xf32>, %s: tensor<3x16xf32>) -> tensor<1x2x3x16xf32> {
  %0 = kiln.rope %x, %c, %s : (tensor<1x2x3x16xf32>, tensor<3x16xf32>, tensor<3x16xf32>) -> tensor<1x2x3x16xf32>
  return %0 : tensor<1x2x3x16xf32>
}
