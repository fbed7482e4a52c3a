#!/usr/bin/env python3
"""Small .npy and file helpers for lit tests; standard library only.

  npytool.py make OUT.npy DTYPE SHAPE [VALUE]   e.g. make a.npy f4 2,3 1.5
  npytool.py show IN.npy                        prints dtype, shape, values
  npytool.py truncate IN OUT NBYTES
  npytool.py flip IN OUT OFFSET                 xors one byte with 0xff
"""
import ast
import struct
import sys

FORMATS = {"f4": "<f", "f8": "<d", "i8": "<q", "i4": "<i", "b1": "?"}


def make(path, dtype, shape, value="1"):
    dims = [int(d) for d in shape.split(",") if d]
    n = 1
    for d in dims:
        n *= d
    descr = ("|" if dtype == "b1" else "<") + dtype
    shp = "(" + ", ".join(map(str, dims)) + ("," if len(dims) == 1 else "") + ")"
    header = "{'descr': '%s', 'fortran_order': False, 'shape': %s, }" % (descr, shp)
    header += " " * ((64 - (10 + len(header) + 1) % 64) % 64) + "\n"
    v = float(value) if dtype[0] == "f" else int(float(value))
    with open(path, "wb") as f:
        f.write(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode())
        f.write(struct.pack("<" + FORMATS[dtype][-1] * n, *([v] * n)))


def show(path):
    data = open(path, "rb").read()
    hlen = struct.unpack("<H", data[8:10])[0]
    h = ast.literal_eval(data[10:10 + hlen].decode())
    dtype = h["descr"][1:]
    n = 1
    for d in h["shape"]:
        n *= d
    vals = struct.unpack("<" + FORMATS[dtype][-1] * n, data[10 + hlen:])
    print(dtype, list(h["shape"]), " ".join(f"{x:g}" for x in vals))


def main():
    cmd = sys.argv[1]
    if cmd == "make":
        make(*sys.argv[2:])
    elif cmd == "show":
        show(sys.argv[2])
    elif cmd == "truncate":
        data = open(sys.argv[2], "rb").read()
        open(sys.argv[3], "wb").write(data[: int(sys.argv[4])])
    elif cmd == "flip":
        data = bytearray(open(sys.argv[2], "rb").read())
        data[int(sys.argv[4])] ^= 0xFF
        open(sys.argv[3], "wb").write(bytes(data))


if __name__ == "__main__":
    main()
