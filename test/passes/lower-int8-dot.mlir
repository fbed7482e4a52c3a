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

// expected-error @below {{kiln.int8_dot must be "vnni" or "avx2", not "sve"}}
module attributes {kiln.int8_dot = "sve"} {
}
