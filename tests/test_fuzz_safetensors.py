"""Property-based fuzzing (hypothesis) of the safetensors reader (pycnn.io.load), with random bytes and
with mutated valid files: it must raise ValueError, or load what an independent reading of the same
bytes gives.  Never a crash, never another exception, never a wrong result.

Example counts and the case counter: tests/fuzz_budget.py.  The last test here checks and reports the
counts of every fuzz test that ran, tests/test_fuzz_ops.py's included (it sorts first, so runs first).
"""
from __future__ import annotations

import json
import os
import struct
import tempfile

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from pycnn import io as pio

from fuzz_budget import FUZZ_COUNTS, N_EXAMPLES, TOTAL, fuzz_settings


# ------------------------------------------------------------------------------- safetensors
_DT = {"F32": "<f4", "F64": "<f8", "I64": "<i8", "F16": "<f2", "I32": "<i4", "I16": "<i2", "I8": "i1",
       "U32": "<u4", "U16": "<u2", "U8": "u1", "BOOL": "?"}
_WIDTH = {"F32": 4, "F64": 8, "I64": 8, "F16": 2, "BF16": 2, "I32": 4, "I16": 2, "I8": 1, "U32": 4,
          "U16": 2, "U8": 1, "BOOL": 1}


def independent_read(blob):
    """What a correct reader returns for `blob`: name -> float64/int64 array (None for a BF16 raw
    view), from the header alone; raises on anything malformed (never consulted for validity,
    only to check what a successful pycnn.io.load returned)."""
    (n,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8:8 + n].decode("utf-8"))
    data_ = blob[8 + n:]
    out = {}
    for name, e in header.items():
        if name == "__metadata__":
            continue
        b0, b1 = e["data_offsets"]
        raw = data_[b0:b1]
        if e["dtype"] == "BF16":
            bits = np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16
            arr = bits.view(np.float32)
        else:
            arr = np.frombuffer(raw, dtype=_DT[e["dtype"]])
        out[name] = arr.reshape(e["shape"])
    return out


def _valid_file(rng):
    """A valid safetensors file of a few tensors (several dtypes), as bytes, and the data start."""
    tensors = {}
    for i in range(int(rng.integers(0, 4))):
        dt = rng.choice(["F32", "F64", "I64", "F16", "I32", "U8", "BOOL", "BF16"])
        shape = [int(s) for s in rng.integers(0, 4, size=int(rng.integers(0, 4)))]
        tensors[f"t{i}.weight"] = (dt, shape)
    header, chunks, off = {}, [], 0
    for name, (dt, shape) in tensors.items():
        count = int(np.prod(shape, dtype=np.int64))
        nbytes = count * _WIDTH[dt]
        raw = rng.integers(0, 256, size=nbytes, dtype=np.uint8).tobytes()
        if dt == "BOOL":
            raw = bytes(v & 1 for v in raw)
        elif dt in ("F32", "F64", "F16"):
            raw = rng.standard_normal(count).astype(_DT[dt]).tobytes()
        header[name] = {"dtype": dt, "shape": shape, "data_offsets": [off, off + nbytes]}
        chunks.append(raw)
        off += nbytes
    if rng.integers(0, 2):
        header["__metadata__"] = {"format": "pycnn"}
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    return struct.pack("<Q", len(h)) + h + b"".join(chunks), 8 + len(h)


@pytest.fixture(scope="module")
def fuzz_file():
    with tempfile.TemporaryDirectory() as d:
        yield os.path.join(d, "fuzz.safetensors")


def _load_check(path, blob, must_load=False, tag="safetensors"):
    with open(path, "wb") as f:
        f.write(blob)
    FUZZ_COUNTS[tag] += 1
    try:
        out = pio.load(path)
    except ValueError as e:
        assert not must_load, f"a valid file was rejected: {e}"
        FUZZ_COUNTS[tag + ":ValueError"] += 1
        if "load" not in str(e):  # a ValueError that does not say it comes from pc.load (see test_errors.py)
            FUZZ_COUNTS[tag + ":ValueError not naming load"] += 1
        return
    FUZZ_COUNTS[tag + ":ok"] += 1
    # loaded: it must be what the bytes say
    want = independent_read(blob)
    assert set(out) == set(want), (sorted(out), sorted(want))
    for name, arr in want.items():
        got = out[name].numpy()
        assert got.shape == arr.shape, name
        if arr.dtype.kind == "f":
            assert got.dtype == np.float32 if arr.dtype.itemsize <= 4 else got.dtype == np.float64
            np.testing.assert_array_equal(got, arr.astype(got.dtype))
        else:
            assert got.dtype == np.int64
            np.testing.assert_array_equal(got, arr.astype(np.int64))


@given(st.one_of(
    st.binary(max_size=64),
    # a plausible length prefix followed by random bytes
    st.builds(lambda n, rest: struct.pack("<Q", n) + rest, st.integers(0, 80), st.binary(max_size=96)),
    # a plausible length prefix followed by random text that looks a little like JSON
    st.builds(lambda s: struct.pack("<Q", len(s.encode())) + s.encode(),
              st.text(alphabet='{}[]":,0123456789 F32I64shapedtypedata_offsets', max_size=80)),
    st.sampled_from([b"", b"\x80\x04\x95", b"PK\x03\x04" + b"\0" * 40, b"\x02" + b"\0" * 7 + b"{}",
                     b"\x02" + b"\0" * 7 + b"[]", b"\xff" * 8 + b"{}", b"\x08" + b"\0" * 7 + b"{}      "]),
))
@fuzz_settings("safetensors_random")
def test_fuzz_safetensors_random_bytes(fuzz_file, blob):
    _load_check(fuzz_file, blob, tag="safetensors_random")


@st.composite
def mutation(draw):
    return dict(seed=draw(st.integers(0, 2**32 - 1)),
                kind=draw(st.sampled_from(["flip_header", "flip_header", "flip_data", "truncate", "append",
                                           "length", "json_shape", "json_offsets", "json_dtype", "json_dup",
                                           "json_extra", "json_drop"])),
                n=draw(st.integers(1, 4)),
                value=draw(st.one_of(st.integers(-3, 40), st.sampled_from([2**31, 2**32, 2**62, 2**63 - 1,
                                                                           2**63, 2**64 - 1, 2**64, -2**63]))))


@given(mutation())
@fuzz_settings("safetensors_mutated")
def test_fuzz_safetensors_mutated(fuzz_file, m):
    rng = np.random.default_rng(m["seed"])
    blob, start = _valid_file(rng)
    blob = bytearray(blob)
    kind, v = m["kind"], m["value"]
    must_load = False
    (n,) = struct.unpack("<Q", bytes(blob[:8]))
    header = json.loads(bytes(blob[8:start]))
    names = [k for k in header if k != "__metadata__"]
    payload = bytes(blob[start:])

    def rewrite(h):
        raw = json.dumps(h).encode()
        return bytearray(struct.pack("<Q", len(raw)) + raw + payload)

    if kind == "flip_header":
        for _ in range(m["n"]):
            i = int(rng.integers(0, start))
            blob[i] ^= 1 << int(rng.integers(0, 8))
    elif kind == "flip_data":
        if len(blob) > start:
            for _ in range(m["n"]):
                i = int(rng.integers(start, len(blob)))
                blob[i] = int(rng.integers(0, 256))
        must_load = True  # the structure is untouched: it must load, with the new values
    elif kind == "truncate":
        blob = blob[:int(rng.integers(0, len(blob)))]
    elif kind == "append":
        blob += rng.integers(0, 256, size=int(m["n"]) * 3, dtype=np.uint8).tobytes()
    elif kind == "length":
        if v < 0:
            v = n + v
        blob[:8] = struct.pack("<Q", v % 2**64)
    elif names:
        name = names[int(rng.integers(0, len(names)))]
        e = header[name]
        if kind == "json_shape":
            e["shape"] = ([v] + e["shape"])[:max(1, len(e["shape"]))] if rng.integers(0, 2) else e["shape"] + [v]
        elif kind == "json_offsets":
            e["data_offsets"][int(rng.integers(0, 2))] = v
        elif kind == "json_dtype":
            e["dtype"] = str(rng.choice(["F32", "F64", "I64", "U64", "C64", "F8_E4M3", "f32", "", "BF16", "I8"]))
        elif kind == "json_extra":
            header["extra"] = {"dtype": "F32", "shape": [v], "data_offsets": [0, 4 * max(v, 0)]}
        elif kind == "json_drop":
            del e[str(rng.choice(["dtype", "shape", "data_offsets"]))]
        blob = rewrite(header)
        if kind == "json_dup":  # the same tensor name twice in the header
            raw = json.dumps(header)
            raw = raw.replace("{", "{" + json.dumps(name) + ": " + json.dumps(e) + ", ", 1).encode()
            blob = bytearray(struct.pack("<Q", len(raw)) + raw + payload)
    _load_check(fuzz_file, bytes(blob), must_load=must_load, tag="safetensors_mutated")


# ------------------------------------------------------------------------------------ summary
def test_zz_fuzz_case_count():
    """Reports the number of cases run (shown with -rA / -s, and in the terminal summary)."""
    ops = ("conv2d", "max_pool2d", "avg_pool2d", "linear")
    files = ("safetensors_random", "safetensors_mutated")
    lines = [f"fuzz cases: {sum(FUZZ_COUNTS[o] for o in ops)} op cases, "
             f"{sum(FUZZ_COUNTS[f] for f in files)} file cases (PYCNN_FUZZ_EXAMPLES={TOTAL})"]
    for name in ops + files:
        outcomes = {k.split(":", 1)[1]: v for k, v in FUZZ_COUNTS.items() if k.startswith(name + ":")}
        lines.append(f"  {name}: {FUZZ_COUNTS[name]} {dict(sorted(outcomes.items()))}")
    print("\n".join(lines))  # shown with -rA or -s; the total is also in the terminal summary
    # every fuzz test that ran used its whole budget (hypothesis stops early only when a
    # strategy is exhausted, which these are not), and both outcomes occurred
    for name in ops + files:
        if FUZZ_COUNTS[name]:
            assert FUZZ_COUNTS[name] >= 0.9 * N_EXAMPLES[name], (name, FUZZ_COUNTS[name], N_EXAMPLES[name])
            if N_EXAMPLES[name] >= 200:
                assert FUZZ_COUNTS[name + ":ok"] > 0, name
                assert FUZZ_COUNTS[name] > FUZZ_COUNTS[name + ":ok"], name
