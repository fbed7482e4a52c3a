// kiln-map-parallel-loops-to-gpu: a top-level scf.parallel becomes a 1-D
// launch of fixed-size workgroups over its linearized iterations (guarded,
// row-major, last dim fastest); constants, views and loads used inside are
// recomputed in the kernel; nested parallel loops run sequentially; other
// top-level memory ops run as one invocation.
// RUN: kiln-opt %s -split-input-file -pass-pipeline="builtin.module(func.func(kiln-map-parallel-loops-to-gpu{workgroup-size=4}))" | FileCheck %s
// RUN: kiln-opt %s -split-input-file -pass-pipeline="builtin.module(func.func(kiln-map-parallel-loops-to-gpu{workgroup-size=4 reduction=subgroup}))" | FileCheck %s --check-prefix=SUB
// RUN: kiln-opt %s -split-input-file -pass-pipeline="builtin.module(func.func(kiln-map-parallel-loops-to-gpu{workgroup-size=4 reduction=serial}))" | FileCheck %s --check-prefix=SERIAL

// CHECK-LABEL: func.func @add
// Six iterations in workgroups of four: two workgroups.
// CHECK: %[[C2:.+]] = arith.constant 2 : index
// CHECK: %[[C4:.+]] = arith.constant 4 : index
// CHECK: gpu.launch blocks(%{{.+}}, %{{.+}}, %{{.+}}) in (%{{.+}} = %[[C2]], {{.+}}) threads(%{{.+}}, %{{.+}}, %{{.+}}) in (%{{.+}} = %[[C4]],
// CHECK: arith.cmpi ult, %[[ID:.+]], %c6
// CHECK: scf.if
// CHECK: arith.remui %[[ID]], %c3
// CHECK: arith.divui %[[ID]], %c3
// CHECK: memref.load
// CHECK: memref.store
// CHECK: gpu.terminator
func.func @add(%x: memref<2x3xf32>, %y: memref<2x3xf32>) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %c2 = arith.constant 2 : index
  %c3 = arith.constant 3 : index
  scf.parallel (%i, %j) = (%c0, %c0) to (%c2, %c3) step (%c1, %c1) {
    %v = memref.load %x[%i, %j] : memref<2x3xf32>
    memref.store %v, %y[%i, %j] : memref<2x3xf32>
    scf.reduce
  }
  return
}

// -----

// CHECK-LABEL: func.func @matmul_like
// CHECK: gpu.launch
// The n loop nested under the k reduction runs sequentially.
// CHECK: scf.for
// CHECK: scf.for
// CHECK-NOT: scf.parallel
func.func @matmul_like(%a: memref<2x3xf32>, %b: memref<3x4xf32>, %c: memref<2x4xf32>) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %c2 = arith.constant 2 : index
  %c3 = arith.constant 3 : index
  %c4 = arith.constant 4 : index
  scf.parallel (%m) = (%c0) to (%c2) step (%c1) {
    scf.for %k = %c0 to %c3 step %c1 {
      scf.parallel (%n) = (%c0) to (%c4) step (%c1) {
        %av = memref.load %a[%m, %k] : memref<2x3xf32>
        %bv = memref.load %b[%k, %n] : memref<3x4xf32>
        %cv = memref.load %c[%m, %n] : memref<2x4xf32>
        %p = arith.mulf %av, %bv : f32
        %s = arith.addf %cv, %p : f32
        memref.store %s, %c[%m, %n] : memref<2x4xf32>
        scf.reduce
      }
    }
    scf.reduce
  }
  return
}

// -----

// A scalar loaded on the host is loaded again inside the kernel that uses
// it; a top-level store runs as one invocation.
// CHECK-LABEL: func.func @scalar
// CHECK-NOT: memref.load
// CHECK: gpu.launch
// CHECK: memref.load %arg0[]
// CHECK: gpu.launch
// CHECK: memref.store
func.func @scalar(%s: memref<f32>, %y: memref<4xf32>, %z: memref<f32>) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %c4 = arith.constant 4 : index
  %v = memref.load %s[] : memref<f32>
  scf.parallel (%i) = (%c0) to (%c4) step (%c1) {
    memref.store %v, %y[%i] : memref<4xf32>
    scf.reduce
  }
  %one = arith.constant 1.0 : f32
  memref.store %one, %z[] : memref<f32>
  return
}

// -----

// A long reduction per output (a matrix-vector product): one workgroup per
// output, each lane taking every 4th k, the partial sums combined by a
// tree in workgroup memory, invocation 0 adding the old value and storing.
// CHECK-LABEL: func.func @matvec
// SERIAL-LABEL: func.func @matvec
// SERIAL-NOT: workgroup(
// SERIAL: scf.for %{{.+}} = %c0{{.*}} to %c64
// SERIAL-NOT: gpu.barrier
// CHECK: %[[C8:.+]] = arith.constant 8 : index
// CHECK: gpu.launch blocks({{.+}}) in (%{{.+}} = %[[C8]], {{.+}}) threads(%[[TID:[^,]+]], {{.+}}) in (%{{.+}} = %c4{{.*}}) workgroup(%[[SH:.+]] : memref<4xf32, #gpu.address_space<workgroup>>)
// CHECK: %[[PART:.+]] = scf.for %{{.+}} = %[[TID]] to %c64{{.*}} step %c4{{.*}} iter_args(%[[ACC:.+]] = %{{.+}}) -> (f32)
// CHECK:   arith.mulf
// CHECK:   arith.addf %[[ACC]]
// CHECK: memref.store %[[PART]], %[[SH]][%[[TID]]]
// CHECK: gpu.barrier
// CHECK: arith.cmpi ult, %[[TID]], %c2
// CHECK: scf.if
// CHECK: gpu.barrier
// CHECK: arith.cmpi ult, %[[TID]], %c1
// CHECK: scf.if
// CHECK: gpu.barrier
// CHECK: %[[SUM:.+]] = memref.load %[[SH]][%c0
// CHECK: arith.cmpi eq, %[[TID]], %c0
// CHECK: scf.if
// CHECK:   %[[OLD:.+]] = memref.load %arg2
// CHECK:   %[[NEW:.+]] = arith.addf %[[OLD]], %[[SUM]]
// CHECK:   memref.store %[[NEW]], %arg2
// CHECK: gpu.terminator
func.func @matvec(%a: memref<2x64xf32>, %b: memref<4x64xf32>, %c: memref<2x4xf32>) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %c2 = arith.constant 2 : index
  %c4 = arith.constant 4 : index
  %c64 = arith.constant 64 : index
  scf.parallel (%m, %n) = (%c0, %c0) to (%c2, %c4) step (%c1, %c1) {
    scf.for %k = %c0 to %c64 step %c1 {
      %av = memref.load %a[%m, %k] : memref<2x64xf32>
      %bv = memref.load %b[%n, %k] : memref<4x64xf32>
      %cv = memref.load %c[%m, %n] : memref<2x4xf32>
      %p = arith.mulf %av, %bv : f32
      %s = arith.addf %cv, %p : f32
      memref.store %s, %c[%m, %n] : memref<2x4xf32>
    }
    scf.reduce
  }
  return
}

// -----

// A row maximum with subgroup operations: the subgroup's maximum (NaN
// made explicit: subgroup max leaves it undefined), one slot per subgroup,
// then a loop over the device's subgroup count.
// SERIAL-LABEL: func.func @rowmax
// SUB-LABEL: func.func @rowmax
// SUB: scf.for {{.+}} -> (f32)
// SUB:   arith.maximumf
// SUB: gpu.subgroup_reduce maximumf
// SUB: arith.cmpf uno
// SUB: gpu.subgroup_reduce add
// SUB: gpu.lane_id
// SUB: gpu.subgroup_id
// SUB: gpu.num_subgroups
// SUB: scf.if
// SUB:   memref.store
// SUB: gpu.barrier
// SUB: scf.for %{{.+}} = %c0{{.*}} to %{{.+}} step
// SUB: arith.maximumf
// SUB-NOT: gpu.barrier
// SUB: gpu.terminator
func.func @rowmax(%x: memref<3x100xf32>, %y: memref<3xf32>) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %c3 = arith.constant 3 : index
  %c100 = arith.constant 100 : index
  scf.parallel (%i) = (%c0) to (%c3) step (%c1) {
    scf.for %k = %c0 to %c100 step %c1 {
      %v = memref.load %x[%i, %k] : memref<3x100xf32>
      %o = memref.load %y[%i] : memref<3xf32>
      %m = arith.maximumf %o, %v : f32
      memref.store %m, %y[%i] : memref<3xf32>
    }
    scf.reduce
  }
  return
}

// -----

// The hand-built kernels' form: a sum carried through two loops, the outer
// one vouching (kiln.reduction) for it. The nest becomes one strided loop
// over 4 x 16 points, delinearized; the result adds the initial value and
// feeds the store after the nest.
// CHECK-LABEL: func.func @carried
// CHECK: gpu.launch
// CHECK: scf.for %[[T:.+]] = %{{.+}} to %c64{{.*}} step %c4{{.*}} iter_args(%[[P:.+]] = %{{.+}}) -> (f32)
// CHECK-DAG: arith.remui %[[T]], %c16
// CHECK-DAG: arith.divui %[[T]], %c16
// CHECK: math.fma %{{.+}}, %{{.+}}, %[[P]]
// CHECK: scf.if
// CHECK:   %[[F:.+]] = arith.addf %cst{{.*}}, %{{.+}} : f32
// CHECK:   memref.store %[[F]]
func.func @carried(%x: memref<64xf32>, %w: memref<8x64xf32>, %y: memref<8xf32>) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %c4 = arith.constant 4 : index
  %c8 = arith.constant 8 : index
  %c16 = arith.constant 16 : index
  %zero = arith.constant 1.5 : f32
  scf.parallel (%n) = (%c0) to (%c8) step (%c1) {
    %r = scf.for %blk = %c0 to %c4 step %c1 iter_args(%acc = %zero) -> (f32) {
      %k0 = arith.muli %blk, %c16 : index
      %in = scf.for %j = %c0 to %c16 step %c1 iter_args(%a = %acc) -> (f32) {
        %k = arith.addi %k0, %j : index
        %xv = memref.load %x[%k] : memref<64xf32>
        %wv = memref.load %w[%n, %k] : memref<8x64xf32>
        %s = math.fma %xv, %wv, %a : f32
        scf.yield %s : f32
      }
      scf.yield %in : f32
    } {kiln.reduction = "addf"}
    memref.store %r, %y[%n] : memref<8xf32>
    scf.reduce
  }
  return
}

// -----

// Not shared: a reduction shorter than min-cooperative-trips, and one whose
// body also reads the accumulator's buffer elsewhere; both keep one
// invocation per output.
// CHECK-LABEL: func.func @short
// CHECK-NOT: workgroup(
// CHECK: scf.for
// CHECK-LABEL: func.func @aliased
// CHECK-NOT: workgroup(
// CHECK: scf.for
func.func @short(%x: memref<4x8xf32>, %y: memref<4xf32>) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %c4 = arith.constant 4 : index
  %c8 = arith.constant 8 : index
  scf.parallel (%i) = (%c0) to (%c4) step (%c1) {
    scf.for %k = %c0 to %c8 step %c1 {
      %v = memref.load %x[%i, %k] : memref<4x8xf32>
      %o = memref.load %y[%i] : memref<4xf32>
      %s = arith.addf %o, %v : f32
      memref.store %s, %y[%i] : memref<4xf32>
    }
    scf.reduce
  }
  return
}
func.func @aliased(%x: memref<4x64xf32>, %y: memref<4xf32>) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %c4 = arith.constant 4 : index
  %c64 = arith.constant 64 : index
  scf.parallel (%i) = (%c0) to (%c4) step (%c1) {
    scf.for %k = %c0 to %c64 step %c1 {
      %v = memref.load %x[%i, %k] : memref<4x64xf32>
      %other = memref.load %y[%c0] : memref<4xf32>
      %o = memref.load %y[%i] : memref<4xf32>
      %t = arith.addf %v, %other : f32
      %s = arith.addf %o, %t : f32
      memref.store %s, %y[%i] : memref<4xf32>
    }
    scf.reduce
  }
  return
}

// -----

// More than 65535 workgroups (Vulkan's guaranteed grid limit per
// dimension): the grid takes a second dimension and the linear workgroup
// id is y * gx + x.
// CHECK-LABEL: func.func @huge
// CHECK-DAG: %[[GX:.+]] = arith.constant 50001 : index
// CHECK-DAG: %[[GY:.+]] = arith.constant 2 : index
// CHECK: gpu.launch blocks(%[[BX:.+]], %[[BY:.+]], %{{.+}}) in (%{{.+}} = %[[GX]], %{{.+}} = %[[GY]],
// CHECK: %[[ROW:.+]] = arith.muli %[[BY]], %{{.+}} : index
// CHECK: arith.addi %[[ROW]], %[[BX]] : index
func.func @huge(%y: memref<400001xf32>) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %n = arith.constant 400001 : index
  %one = arith.constant 1.0 : f32
  scf.parallel (%i) = (%c0) to (%n) step (%c1) {
    memref.store %one, %y[%i] : memref<400001xf32>
    scf.reduce
  }
  return
}

// -----

// A matmul with both output dims >= matmul-tile (8): 8 x 8 outputs per
// workgroup (2 x 2 tiles of a 12 x 16 output, the last row of tiles
// partial), each k-step of 8 staging an 8 x 8 slice of A and of B in
// workgroup memory (A at (own m, k0 + j), B at (k0 + i, own n)) between
// barriers, the products folded from there; edge outputs compute on
// clamped indices and do not store.
// Tiling does not depend on how reductions are shared:
// SERIAL-LABEL: func.func @tiled
// SERIAL: workgroup(
// CHECK-LABEL: func.func @tiled
// CHECK: %[[C4:.+]] = arith.constant 4 : index
// CHECK: %[[C64:.+]] = arith.constant 64 : index
// CHECK: gpu.launch blocks({{.+}}) in (%{{.+}} = %[[C4]], {{.+}}) threads({{.+}}) in (%{{.+}} = %[[C64]], {{.+}}) workgroup(%[[SA:.+]] : memref<8x8xf32, #gpu.address_space<workgroup>>, %[[SB:.+]] : memref<8x8xf32, #gpu.address_space<workgroup>>)
// CHECK: arith.minui %{{.+}}, %c11
// CHECK: scf.for %[[K0:.+]] = %c0{{.*}} to %c24{{.*}} step %c8{{.*}} iter_args
// CHECK:   memref.load %arg0
// CHECK:   memref.store %{{.+}}, %[[SA]]
// CHECK:   memref.load %arg1
// CHECK:   memref.store %{{.+}}, %[[SB]]
// CHECK:   gpu.barrier
// CHECK:   scf.for %[[KK:.+]] = %c0{{.*}} to %c8{{.*}} step %c1{{.*}} iter_args
// CHECK:     memref.load %[[SA]][%{{.+}}, %[[KK]]]
// CHECK:     memref.load %[[SB]][%[[KK]], %{{.+}}]
// CHECK:     arith.mulf
// CHECK:     arith.addf
// CHECK:   gpu.barrier
// CHECK: arith.cmpi ult, %{{.+}}, %c12
// CHECK: arith.cmpi ult, %{{.+}}, %c16
// CHECK: scf.if
// CHECK:   memref.store %{{.+}}, %arg2
func.func @tiled(%a: memref<12x24xf32>, %b: memref<24x16xf32>, %c: memref<12x16xf32>) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %c12 = arith.constant 12 : index
  %c16 = arith.constant 16 : index
  %c24 = arith.constant 24 : index
  scf.parallel (%m, %n) = (%c0, %c0) to (%c12, %c16) step (%c1, %c1) {
    scf.for %k = %c0 to %c24 step %c1 {
      %av = memref.load %a[%m, %k] : memref<12x24xf32>
      %bv = memref.load %b[%k, %n] : memref<24x16xf32>
      %cv = memref.load %c[%m, %n] : memref<12x16xf32>
      %p = arith.mulf %av, %bv : f32
      %s = arith.addf %cv, %p : f32
      memref.store %s, %c[%m, %n] : memref<12x16xf32>
    }
    scf.reduce
  }
  return
}

// -----

// Integer powers are expanded in place (square-and-multiply over the
// exponent's 32 bits; negative exponents: 1 and -1 keep their power, other
// bases give 0), so no kernel calls a helper function.
// CHECK-LABEL: func.func @ipow
// CHECK-NOT: math.ipowi
// CHECK: gpu.launch
// CHECK: arith.cmpi slt
// CHECK: scf.for %{{.+}} = %c0{{.*}} to %c32{{.*}} step %c1{{.*}} iter_args
// CHECK:   arith.muli
// CHECK:   arith.shrui
// CHECK-NOT: math.ipowi
func.func @ipow(%x: memref<4xi32>, %e: memref<4xi32>, %y: memref<4xi32>) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %c4 = arith.constant 4 : index
  scf.parallel (%i) = (%c0) to (%c4) step (%c1) {
    %a = memref.load %x[%i] : memref<4xi32>
    %b = memref.load %e[%i] : memref<4xi32>
    %p = math.ipowi %a, %b : i32
    memref.store %p, %y[%i] : memref<4xi32>
    scf.reduce
  }
  return
}
