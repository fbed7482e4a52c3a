// RUN: kiln-opt %s --split-input-file --kiln-lower-int8-dot --verify-diagnostics | FileCheck %s

// "vnni": vpdpbusd from zero; a signed lhs goes in as |lhs|, its sign moved
// onto rhs by vpsignb (llama.cpp's trick for the unsigned-by-signed
// instruction); a nonnegative lhs goes in as it is.
module attributes {kiln.int8_dot = "vnni"} {
  func.func @vnni(%w: vector<32xi8>, %x: vector<32xi8>) -> (vector<8xi32>, vector<8xi32>) {
    %0 = kiln.dot4_i8 %w, %x : vector<32xi8>, vector<32xi8> -> vector<8xi32>
    %1 = kiln.dot4_i8 %w, %x {lhs_nonnegative} : vector<32xi8>, vector<32xi8> -> vector<8xi32>
    return %0, %1 : vector<8xi32>, vector<8xi32>
  }
}
// CHECK-LABEL: func.func @vnni(
// CHECK-SAME: %[[W:[^:]+]]: vector<32xi8>, %[[X:[^:]+]]: vector<32xi8>
// CHECK: %[[SX:.+]] = llvm.call_intrinsic "llvm.x86.avx2.psign.b"(%[[X]], %[[W]])
// CHECK: %[[AW:.+]] = math.absi %[[W]]
// CHECK: %[[ZERO:.+]] = arith.constant dense<0> : vector<8xi32>
// CHECK: %[[D0:.+]] = llvm.call_intrinsic "llvm.x86.avx512.vpdpbusd.256"(%[[ZERO]], %[[AW]], %[[SX]])
// CHECK-NOT: psign
// CHECK: %[[D1:.+]] = llvm.call_intrinsic "llvm.x86.avx512.vpdpbusd.256"(%{{.+}}, %[[W]], %[[X]])
// CHECK: return %[[D0]], %[[D1]]

// -----

// "avx2": vpmaddubsw (pairs of products into i16), then vpmaddwd against
// ones (pairs of those into i32).
module attributes {kiln.int8_dot = "avx2"} {
  func.func @avx2(%w: vector<32xi8>, %x: vector<32xi8>) -> vector<8xi32> {
    %0 = kiln.dot4_i8 %w, %x {lhs_nonnegative} : vector<32xi8>, vector<32xi8> -> vector<8xi32>
    return %0 : vector<8xi32>
  }
}
// CHECK-LABEL: func.func @avx2(
// CHECK: %[[P:.+]] = llvm.call_intrinsic "llvm.x86.avx2.pmadd.ub.sw"
// CHECK-SAME: -> vector<16xi16>
// CHECK: llvm.call_intrinsic "llvm.x86.avx2.pmadd.wd"(%[[P]], %{{.+}}) : (vector<16xi16>, vector<16xi16>) -> vector<8xi32>

// -----

// No attribute: widened multiplies, then lane 4 i + k for k < 4 added.
func.func @generic(%w: vector<32xi8>, %x: vector<32xi8>) -> vector<8xi32> {
  %0 = kiln.dot4_i8 %w, %x : vector<32xi8>, vector<32xi8> -> vector<8xi32>
  return %0 : vector<8xi32>
}
// CHECK-LABEL: func.func @generic(
// CHECK-NOT: llvm.call_intrinsic
// CHECK: arith.extsi {{.+}} : vector<32xi8> to vector<32xi32>
// CHECK: arith.muli
// CHECK: vector.shuffle {{.+}} [0, 4, 8, 12, 16, 20, 24, 28]
// CHECK: vector.shuffle {{.+}} [1, 5, 9, 13, 17, 21, 25, 29]
// CHECK: arith.addi
// CHECK: vector.shuffle {{.+}} [2, 6, 10, 14, 18, 22, 26, 30]
// CHECK: arith.addi
// CHECK: vector.shuffle {{.+}} [3, 7, 11, 15, 19, 23, 27, 31]
// CHECK: %[[SUM:.+]] = arith.addi
// CHECK: return %[[SUM]]

// -----

// The 16-entry table: pshufb against the table as a constant vector.
module attributes {kiln.int8_dot = "avx2"} {
  func.func @table(%n: vector<16xi8>) -> vector<16xi8> {
    %0 = kiln.table16_i8 %n {table = array<i8: -127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113>} : vector<16xi8> -> vector<16xi8>
    return %0 : vector<16xi8>
  }
}
// CHECK-LABEL: func.func @table(
// CHECK-SAME: %[[N:[^:]+]]: vector<16xi8>
// CHECK: %[[T:.+]] = arith.constant dense<[-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113]> : vector<16xi8>
// CHECK: llvm.call_intrinsic "llvm.x86.ssse3.pshuf.b.128"(%[[T]], %[[N]])

// -----

// Without the attribute: bit 0 of the index picks among the 16 entries'
// neighbours, then bits 1, 2 and 3: 15 selects.
func.func @table_generic(%n: vector<16xi8>) -> vector<16xi8> {
  %0 = kiln.table16_i8 %n {table = array<i8: 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15>} : vector<16xi8> -> vector<16xi8>
  return %0 : vector<16xi8>
}
// CHECK-LABEL: func.func @table_generic(
// CHECK-NOT: llvm.call_intrinsic
// CHECK-COUNT-15: arith.select
// CHECK-NOT: arith.select
// CHECK: return

// -----

// expected-error @below {{kiln.int8_dot must be "vnni" or "avx2", not "sve"}}
module attributes {kiln.int8_dot = "sve"} {
}
