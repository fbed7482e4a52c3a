// RUN: kiln-opt %s --kiln-approximate-math | FileCheck %s

// f32 transcendentals become arithmetic; f64 keeps the libm-bound op.
// CHECK-LABEL: func.func @f32
// CHECK-NOT: math.exp
// CHECK-NOT: math.erf
// CHECK: math.fma
func.func @f32(%x: f32) -> f32 {
  %0 = math.exp %x : f32
  %1 = math.erf %0 : f32
  return %1 : f32
}

// CHECK-LABEL: func.func @f64
// CHECK: math.exp %{{.+}} : f64
func.func @f64(%x: f64) -> f64 {
  %0 = math.exp %x : f64
  return %0 : f64
}
