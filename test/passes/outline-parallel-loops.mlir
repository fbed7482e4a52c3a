// RUN: kiln-opt %s --kiln-outline-parallel-loops --split-input-file | FileCheck %s

// The outer parallel loop moves into @f_par0(ctx, begin, end), which runs
// iterations [begin, end) of dim 0 with its captured memrefs read back from
// ctx; the caller packs them and calls env->parallel_for.
// CHECK-LABEL: func.func @f
// CHECK-SAME: (%[[A:.+]]: memref<8x4xf32>, %[[B:.+]]: memref<8x4xf32>, %[[ENV:.+]]: !llvm.ptr)
// CHECK: %[[ARR:.+]] = llvm.alloca %{{.+}} x !llvm.array<2 x ptr>
// CHECK: %[[DA:.+]] = builtin.unrealized_conversion_cast %[[A]] : memref<8x4xf32> to !llvm.struct<(ptr, ptr, i64, array<2 x i64>, array<2 x i64>)>
// CHECK: llvm.store %[[DA]]
// CHECK: %[[FN:.+]] = constant @f_par0
// CHECK: %[[FP:.+]] = builtin.unrealized_conversion_cast %[[FN]]
// CHECK: %[[PF:.+]] = llvm.load %[[ENV]] : !llvm.ptr -> !llvm.ptr
// CHECK: %[[N:.+]] = llvm.mlir.constant(8 : i64)
// CHECK: llvm.call %[[PF]](%[[ENV]], %[[FP]], %[[ARR]], %[[N]])
// CHECK-NOT: scf.parallel
// CHECK: func.func private @f_par0(%[[CTX:.+]]: !llvm.ptr, %[[BEGIN:.+]]: index, %[[END:.+]]: index)
// CHECK: llvm.getelementptr %[[CTX]][0]
// CHECK: builtin.unrealized_conversion_cast %{{.+}} : !llvm.struct<(ptr, ptr, i64, array<2 x i64>, array<2 x i64>)> to memref<8x4xf32>
// CHECK: scf.parallel (%{{.+}}, %{{.+}}) = (%{{.+}}, %{{.+}}) to (%{{.+}}, %{{.+}})
// CHECK: math.exp
func.func @f(%a: memref<8x4xf32>, %b: memref<8x4xf32>) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %c4 = arith.constant 4 : index
  %c8 = arith.constant 8 : index
  scf.parallel (%i, %j) = (%c0, %c0) to (%c8, %c4) step (%c1, %c1) {
    %x = memref.load %a[%i, %j] : memref<8x4xf32>
    %y = math.exp %x : f32
    memref.store %y, %b[%i, %j] : memref<8x4xf32>
    scf.reduce
  }
  return
}

// -----

// A loop whose dims all run once stays inline.
// CHECK-LABEL: func.func @single
// CHECK: scf.parallel
// CHECK-NOT: llvm.call
func.func @single(%a: memref<1x1xf32>) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  scf.parallel (%i) = (%c0) to (%c1) step (%c1) {
    %x = memref.load %a[%i, %i] : memref<1x1xf32>
    memref.store %x, %a[%i, %i] : memref<1x1xf32>
    scf.reduce
  }
  return
}

// -----

// Two loops share the entry block's stack slots for their captures.
// CHECK-LABEL: func.func @two_loops
// CHECK-DAG: llvm.alloca %{{.+}} x !llvm.array<1 x ptr>
// CHECK-DAG: llvm.alloca %{{.+}} x !llvm.struct
// CHECK-NOT: llvm.alloca
// CHECK: llvm.call
// CHECK-NOT: llvm.alloca
// CHECK: llvm.call
func.func @two_loops(%a: memref<8xf32>) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %c8 = arith.constant 8 : index
  %one = arith.constant 1.0 : f32
  scf.parallel (%i) = (%c0) to (%c8) step (%c1) {
    memref.store %one, %a[%i] : memref<8xf32>
    scf.reduce
  }
  scf.parallel (%i) = (%c0) to (%c8) step (%c1) {
    %x = memref.load %a[%i] : memref<8xf32>
    %y = arith.addf %x, %x : f32
    memref.store %y, %a[%i] : memref<8xf32>
    scf.reduce
  }
  return
}

// -----

// The same loop over other buffers (the next layer's copy) reuses the body
// outlined first; a loop that differs (here: mulf) gets its own.
// CHECK-LABEL: func.func @layers
// CHECK: constant @layers_par0
// CHECK: constant @layers_par0
// CHECK: constant @layers_par2
// CHECK: func.func private @layers_par2
// CHECK: arith.mulf
// CHECK: func.func private @layers_par0
// CHECK: arith.addf
// CHECK-NOT: func.func private @layers_par1
func.func @layers(%a: memref<8xf32>, %b: memref<8xf32>) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %c8 = arith.constant 8 : index
  scf.parallel (%i) = (%c0) to (%c8) step (%c1) {
    %x = memref.load %a[%i] : memref<8xf32>
    %y = arith.addf %x, %x : f32
    memref.store %y, %a[%i] : memref<8xf32>
    scf.reduce
  }
  scf.parallel (%i) = (%c0) to (%c8) step (%c1) {
    %x = memref.load %b[%i] : memref<8xf32>
    %y = arith.addf %x, %x : f32
    memref.store %y, %b[%i] : memref<8xf32>
    scf.reduce
  }
  scf.parallel (%i) = (%c0) to (%c8) step (%c1) {
    %x = memref.load %b[%i] : memref<8xf32>
    %y = arith.mulf %x, %x : f32
    memref.store %y, %b[%i] : memref<8xf32>
    scf.reduce
  }
  return
}
