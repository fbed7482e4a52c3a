// kiln.quant_matmul and kiln.quant_gather become loops over the packed
// GGUF blocks while bufferizing: the scale is a bitcast f16, nibbles are
// masked and shifted, four rows of x share each dequantized block (M = 6:
// one tile of four, its single-trip loop folded away, then a tail of two),
// and the output column is the
// parallel dimension.
// RUN: kiln-compile %s --compile-to=bufferize --cpu=x86-64 | FileCheck %s
// A CPU with 8-bit dot products (AVX2 and up) keeps q8's codes in i8:
// RUN: kiln-compile %s --compile-to=bufferize --cpu=haswell | FileCheck %s --check-prefix=I8

func.func @mm(%x: tensor<6x64xf32>, %w: tensor<3x40xi8>, %ids: tensor<1x2xi64>) -> (tensor<6x3xf32>, tensor<1x2x64xf32>) {
  %0 = kiln.quant_matmul %x, %w {format = "q4_1"} : (tensor<6x64xf32>, tensor<3x40xi8>) -> tensor<6x3xf32>
  %1 = kiln.quant_gather %w[%ids] {format = "q4_1"} : (tensor<3x40xi8>, tensor<1x2xi64>) -> tensor<1x2x64xf32>
  return %0, %1 : tensor<6x3xf32>, tensor<1x2x64xf32>
}

// CHECK-LABEL: func.func @mm(
// CHECK: scf.parallel (%[[N:.+]]) = (%c0) to (%c3) step (%c1)
// CHECK: scf.for {{.+}} iter_args({{.+}}, {{.+}}, {{.+}}, {{.+}}) -> (vector<16xf32>, vector<16xf32>, vector<16xf32>, vector<16xf32>)
// CHECK: vector.load %{{.+}} : memref<3x40xi8>, vector<2xi8>
// CHECK: vector.bitcast {{.+}} : vector<2xi8> to vector<1xf16>
// CHECK: arith.extf
// CHECK: arith.andi
// CHECK: arith.shrui
// CHECK: arith.uitofp
// CHECK: vector.fma
// The tail of two rows.
// CHECK: scf.for {{.+}} iter_args({{.+}}, {{.+}}) -> (vector<16xf32>, vector<16xf32>)
// The gather: one row per index, clamped into the table.
// CHECK: memref.collapse_shape
// CHECK: arith.maxsi
// CHECK: arith.minsi
// CHECK: vector.store

// activations = "q8": x is first rounded to 8-bit blocks (per block of 32:
// max |x|, round-half-even of x * 127 / max, the scale rounded to f16, for
// q4_1 also the f16 block sum); the block loop then multiplies the weight's
// integers with them and scales by d_w * d_x, plus m_w * s per row.
func.func @mm8(%x: tensor<2x64xf32>, %w: tensor<3x40xi8>) -> tensor<2x3xf32> {
  %0 = kiln.quant_matmul %x, %w {format = "q4_1", activations = "q8"} : (tensor<2x64xf32>, tensor<3x40xi8>) -> tensor<2x3xf32>
  return %0 : tensor<2x3xf32>
}

// CHECK-LABEL: func.func @mm8(
// The three buffers are planned into the function's scratch.
// CHECK: %[[Q:.+]] = memref.view {{.+}} to memref<2x64xf32>
// CHECK: %[[D:.+]] = memref.view {{.+}} to memref<2x2xf32>
// CHECK: %[[S:.+]] = memref.view {{.+}} to memref<2x2xf32>
// CHECK: math.absf
// CHECK: vector.reduction <maximumf>
// CHECK: math.roundeven
// CHECK: vector.store %{{.+}}, %[[Q]]
// CHECK: arith.truncf %{{.+}} : f32 to f16
// CHECK: memref.store %{{.+}}, %[[D]]
// CHECK: vector.reduction <add>
// CHECK: memref.store %{{.+}}, %[[S]]
// CHECK: scf.parallel
// x's sums are stored by block ([K/32, M]), so the tile's two rows carry
// their sums of m_w * s_x as one vector<2xf32> and read them in one load.
// CHECK: scf.for {{.+}} iter_args({{.+}}) -> (vector<16xf32>, vector<16xf32>, vector<2xf32>)
// CHECK: arith.uitofp
// CHECK: vector.load %[[Q]]
// CHECK: memref.load %[[D]]
// CHECK: vector.fma
// CHECK: vector.load %[[S]]{{.+}} : memref<2x2xf32>, vector<2xf32>
// With kiln.int8_dot (set by the CPU target: haswell has AVX2) the codes
// stay bytes: x's in an i8 buffer, the weight's nibbles joined into 32
// lanes, kiln.dot4_i8 then 8-lane f32 accumulators.
// I8-LABEL: func.func @mm8(
// I8: %[[Q:.+]] = memref.view {{.+}} to memref<2x64xi8>
// I8: math.roundeven
// I8: arith.fptosi %{{.+}} : vector<16xf32> to vector<16xi8>
// I8: vector.store %{{.+}}, %[[Q]]
// I8: scf.for {{.+}} iter_args({{.+}}) -> (vector<8xf32>, vector<8xf32>, vector<2xf32>)
// I8-NOT: arith.uitofp
// I8: vector.shuffle {{.+}} : vector<16xi8>, vector<16xi8>
// I8: vector.load %[[Q]]{{.+}} : memref<2x64xi8>, vector<32xi8>
// I8: kiln.dot4_i8 {{.+}} {lhs_nonnegative}
// I8: arith.sitofp {{.+}} : vector<8xi32> to vector<8xf32>
// I8: vector.fma

// format = "f16": 32 f16 values per 64-byte block, bitcast and widened.
func.func @mm16(%x: tensor<2x64xf32>, %w: tensor<3x128xi8>) -> tensor<2x3xf32> {
  %0 = kiln.quant_matmul %x, %w {format = "f16"} : (tensor<2x64xf32>, tensor<3x128xi8>) -> tensor<2x3xf32>
  return %0 : tensor<2x3xf32>
}

// CHECK-LABEL: func.func @mm16(
// CHECK: vector.load %{{.+}} : memref<3x128xi8>, vector<32xi8>
// CHECK: vector.bitcast {{.+}} : vector<32xi8> to vector<16xf16>
// CHECK: arith.extf {{.+}} : vector<16xf16> to vector<16xf32>
// CHECK: vector.fma
