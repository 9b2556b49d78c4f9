"""st_diff.py: how far apart two safetensors files are, tensor by tensor. Never used at run time.

What lives here: a reader of the safetensors layout in the standard library alone (no numpy),
and a comparison that prints, for each tensor of the first file, the largest absolute
difference from the second file's tensor of that name and the largest magnitude in the first;
integer tensors are compared for equality. For instance, logits with and without AMX:

    spine moe run --model M --random 128 --gen 4 --logits-out a.st
    SPINE_AMX=0 spine moe run --model M --random 128 --gen 4 --logits-out b.st
    python3 tools/st_diff.py a.st b.st

Exit status 0 when every tensor is present in both with the same shape and dtype, 1 otherwise.
"""
import json
import struct
import sys
from array import array

_FLOAT = {"F32": "f", "F64": "d"}
_INT = {"I64": "q", "I32": "i", "I16": "h", "I8": "b", "U8": "B", "U16": "H", "BF16": "H",
        "F16": "H"}


def read(path):
    """{name: (dtype, shape, values)} of a safetensors file (BF16/F16 as raw 16-bit words)."""
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < 8:
        raise ValueError(f"{path}: too short for a safetensors header")
    (n,) = struct.unpack("<Q", data[:8])
    if n > len(data) - 8:
        raise ValueError(f"{path}: header of {n} bytes past the end of the file")
    header = json.loads(data[8:8 + n])
    base = 8 + n
    out = {}
    for name, e in header.items():
        if name == "__metadata__":
            continue
        code = _FLOAT.get(e["dtype"]) or _INT.get(e["dtype"])
        if code is None:
            raise ValueError(f"{path}: {name}: dtype {e['dtype']} not handled")
        b, en = e["data_offsets"]
        if not 0 <= b <= en <= len(data) - base:
            raise ValueError(f"{path}: {name}: data outside the file")
        a = array(code)
        a.frombytes(data[base + b:base + en])
        if sys.byteorder != "little":
            a.byteswap()
        out[name] = (e["dtype"], e["shape"], a)
    return out


def main(argv):
    if len(argv) != 3:
        print("usage: st_diff.py A.safetensors B.safetensors", file=sys.stderr)
        return 2
    try:
        a, b = read(argv[1]), read(argv[2])
    except (OSError, ValueError) as err:
        print(f"st_diff: {err}", file=sys.stderr)
        return 2
    ok = True
    for name, (dt, shape, va) in a.items():
        if name not in b:
            print(f"{name}: only in {argv[1]}")
            ok = False
            continue
        dtb, shapeb, vb = b[name]
        if (dt, shape) != (dtb, shapeb):
            print(f"{name}: {dt} {shape} against {dtb} {shapeb}")
            ok = False
            continue
        if dt in _FLOAT:
            diff = max((abs(x - y) for x, y in zip(va, vb)), default=0.0)
            top = max((abs(x) for x in va), default=0.0)
            print(f"{name} {dt} {shape}: max |difference| {diff:.3g} (max |value| {top:.3g})")
        else:
            same = va == vb
            print(f"{name} {dt} {shape}: {'equal' if same else 'different'}")
    for name in b:
        if name not in a:
            print(f"{name}: only in {argv[2]}")
            ok = False
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
