"""pc.save / pc.load: safetensors round trips, PyTorch interop, and malformed files."""
from __future__ import annotations

import json
import os
import pickle
import struct

import numpy as np
import pytest

import pycnn as pc
from pycnn import io as pio


def _write(path, header, data=b"", *, raw_header=None, length=None):
    """A hand-made safetensors file: u64 header length, header JSON, data."""
    hb = raw_header if raw_header is not None else json.dumps(header).encode()
    n = len(hb) if length is None else length
    path.write_bytes(struct.pack("<Q", n) + hb + data)
    return path


def _arr(t):
    return np.asarray(t.numpy())


# ------------------------------------------------------------------------------------------------
# round trips
# ------------------------------------------------------------------------------------------------
def test_round_trip_values_dtypes_and_shapes(tmp_path):
    rng = np.random.default_rng(0)
    sd = {
        "w32": pc.from_numpy(rng.standard_normal((4, 3, 5, 5)).astype(np.float32)),
        "w64": pc.from_numpy(rng.standard_normal((7,))),
        "count": pc.from_numpy(np.array(12, dtype=np.int64)),  # 0-d, like num_batches_tracked
        "idx": pc.from_numpy(np.arange(6, dtype=np.int64).reshape(2, 3)),
        "empty": pc.from_numpy(np.zeros((0, 3), np.float32)),
        "np_array": rng.standard_normal((2, 2)).astype(np.float32),
    }
    p = tmp_path / "w.safetensors"
    pc_save = pio.save(sd, p)
    assert pc_save is None
    out = pio.load(p)
    assert set(out) == set(sd)
    for k, v in sd.items():
        ref = v if isinstance(v, np.ndarray) else _arr(v)
        assert isinstance(out[k], pc.Tensor)
        got = _arr(out[k])
        assert got.shape == ref.shape, k
        assert got.dtype == ref.dtype, k
        np.testing.assert_array_equal(got, ref)
    assert out["count"].shape == ()
    assert out["count"].dtype == pc.int64
    assert out["w64"].dtype == pc.float64


def test_metadata_round_trip_and_defaults(tmp_path):
    p = tmp_path / "m.safetensors"
    pio.save({"a": pc.zeros(2)}, p, metadata={"epoch": "3", "note": "hello"})
    meta = pio.load_metadata(p)
    assert meta["format"] == "pycnn"
    assert meta["pycnn_version"] == pc.__version__
    assert meta["epoch"] == "3" and meta["note"] == "hello"
    with pytest.raises(TypeError, match="str"):
        pio.save({"a": pc.zeros(2)}, p, metadata={"epoch": 3})


def test_save_is_atomic_and_overwrites(tmp_path):
    p = tmp_path / "a.safetensors"
    pio.save({"a": pc.zeros(3)}, p)
    pio.save({"b": pc.ones(2)}, str(p))  # str path too; replaces the old file
    assert list(pio.load(p)) == ["b"]
    assert sorted(os.listdir(tmp_path)) == ["a.safetensors"]  # no temporary file left behind
    # A failing save leaves the old file intact and no temporary file.
    with pytest.raises(TypeError):
        pio.save({"bad": "not a tensor"}, p)
    with pytest.raises(TypeError):
        pio.save({"a": np.zeros(3, np.int32)}, p)  # pycnn saves float32/float64/int64 only
    assert list(pio.load(p)) == ["b"]
    assert sorted(os.listdir(tmp_path)) == ["a.safetensors"]
    mode = os.stat(p).st_mode & 0o777
    assert mode & 0o044, oct(mode)  # not mkstemp's 0600


def test_save_module_and_load_into(tmp_path):
    nn = pytest.importorskip("pycnn.nn")
    pc.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 3))
    p = tmp_path / "model.safetensors"
    model.save(p) if hasattr(model, "save") else pio.save(model, p)
    meta = pio.load_metadata(p)
    assert meta["format"] == "pycnn" and meta["pycnn_version"] == pc.__version__
    arch = json.loads(meta["architecture"])
    assert "Sequential" in arch["class"]
    assert "Conv2d" in json.dumps(arch)

    sd = model.state_dict()
    loaded = pio.load(p)
    assert set(loaded) == set(sd)
    for k in sd:
        np.testing.assert_array_equal(_arr(loaded[k]), np.asarray(sd[k].numpy() if hasattr(sd[k], "numpy") else sd[k].data.numpy()))

    pc.manual_seed(1)
    other = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 3))
    pio.load_into(other, p)
    x = pc.randn(2, 1, 8, 8)
    model.eval(), other.eval()
    np.testing.assert_array_equal(_arr(model(x)), _arr(other(x)))


def test_missing_file():
    with pytest.raises(FileNotFoundError):
        pio.load("/nonexistent/dir/weights.safetensors")


# ------------------------------------------------------------------------------------------------
# dtype conversions
# ------------------------------------------------------------------------------------------------
def test_f16_i32_and_friends_are_widened(tmp_path):
    from safetensors.numpy import save_file

    p = str(tmp_path / "h.safetensors")
    h = np.array([0.5, -2.0, 1e-3], np.float16)
    i = np.array([[1, -2], [3, 2**31 - 1]], np.int32)
    b = np.array([True, False])
    u8 = np.array([0, 255], np.uint8)
    save_file({"h": h, "i": i, "b": b, "u8": u8}, p)
    out = pio.load(p)
    assert out["h"].dtype == pc.float32
    np.testing.assert_array_equal(_arr(out["h"]), h.astype(np.float32))
    assert out["i"].dtype == pc.int64
    np.testing.assert_array_equal(_arr(out["i"]), i.astype(np.int64))
    np.testing.assert_array_equal(_arr(out["b"]), [1, 0])
    np.testing.assert_array_equal(_arr(out["u8"]), [0, 255])


def test_bf16_is_widened(tmp_path):
    vals = np.array([1.0, -2.5, 3.140625, 0.0], np.float32)
    bits = (vals.view(np.uint32) >> 16).astype("<u2")  # exact in bfloat16
    p = _write(tmp_path / "bf.safetensors",
               {"x": {"dtype": "BF16", "shape": [2, 2], "data_offsets": [0, 8]}}, bits.tobytes())
    out = pio.load(p)
    assert out["x"].dtype == pc.float32
    np.testing.assert_array_equal(_arr(out["x"]), vals.reshape(2, 2))


def test_unsupported_dtype(tmp_path):
    p = _write(tmp_path / "c.safetensors",
               {"z": {"dtype": "C64", "shape": [1], "data_offsets": [0, 8]}}, b"\0" * 8)
    with pytest.raises(ValueError, match="unsupported dtype C64"):
        pio.load(p)
    p = _write(tmp_path / "u.safetensors",
               {"z": {"dtype": "U64", "shape": [1], "data_offsets": [0, 8]}}, b"\0" * 8)
    with pytest.raises(ValueError, match="unsupported dtype U64"):
        pio.load(p)


# ------------------------------------------------------------------------------------------------
# malformed files: always ValueError with a message, never a crash
# ------------------------------------------------------------------------------------------------
def test_short_file(tmp_path):
    p = tmp_path / "short.safetensors"
    p.write_bytes(b"\x01\x02\x03")
    with pytest.raises(ValueError, match="shorter than"):
        pio.load(p)
    p.write_bytes(b"")
    with pytest.raises(ValueError, match="shorter than"):
        pio.load(p)


def test_header_length_past_end(tmp_path):
    p = _write(tmp_path / "long.safetensors", {}, length=10_000)
    with pytest.raises(ValueError, match="larger than the file"):
        pio.load(p)


def test_header_not_json_or_not_object(tmp_path):
    p = _write(tmp_path / "nj.safetensors", None, raw_header=b"{not json at all")
    with pytest.raises(ValueError, match="not valid JSON"):
        pio.load(p)
    p = _write(tmp_path / "utf.safetensors", None, raw_header=b"\xff\xfe\xfd")
    with pytest.raises(ValueError, match="not valid JSON"):
        pio.load(p)
    p = _write(tmp_path / "list.safetensors", [1, 2, 3])
    with pytest.raises(ValueError, match="expected an object"):
        pio.load(p)
    p = _write(tmp_path / "dup.safetensors", None,
               raw_header=b'{"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]},'
                          b' "a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}', data=b"\0" * 4)
    with pytest.raises(ValueError, match="duplicate"):
        pio.load(p)


def test_pickle_and_zip_checkpoints_are_refused(tmp_path):
    p = tmp_path / "model.pt"
    p.write_bytes(pickle.dumps({"weight": [1.0, 2.0, 3.0]}, protocol=4))
    with pytest.raises(ValueError, match="PyTorch pickle/zip checkpoint") as e:
        pio.load(p)
    assert "safetensors.torch.save_file" in str(e.value)
    z = tmp_path / "model.zip"
    z.write_bytes(b"PK\x03\x04" + b"\x14\x00\x00\x00\x08\x00" + b"\0" * 40)
    with pytest.raises(ValueError, match="PyTorch pickle/zip checkpoint"):
        pio.load(z)


def test_real_torch_save_is_refused(tmp_path):
    torch = pytest.importorskip("torch")
    p = tmp_path / "torch.pt"
    torch.save({"w": torch.ones(3)}, p)
    with pytest.raises(ValueError, match="pickle/zip"):
        pio.load(p)


def test_offsets_outside_file_overlapping_or_wrong_size(tmp_path):
    f32 = lambda b, e, shape=(1,): {"dtype": "F32", "shape": list(shape), "data_offsets": [b, e]}  # noqa: E731
    p = _write(tmp_path / "out.safetensors", {"a": f32(0, 400, (100,))}, b"\0" * 8)
    with pytest.raises(ValueError, match="outside"):
        pio.load(p)
    p = _write(tmp_path / "neg.safetensors", {"a": f32(-4, 0)}, b"\0" * 8)
    with pytest.raises(ValueError, match="outside"):
        pio.load(p)
    p = _write(tmp_path / "ovl.safetensors", {"a": f32(0, 8, (2,)), "b": f32(4, 12, (2,))}, b"\0" * 12)
    with pytest.raises(ValueError, match="overlap"):
        pio.load(p)
    p = _write(tmp_path / "size.safetensors", {"a": f32(0, 8, (3,))}, b"\0" * 8)
    with pytest.raises(ValueError, match="needs 12 bytes"):
        pio.load(p)
    p = _write(tmp_path / "shape.safetensors", {"a": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 4]}},
               b"\0" * 4)
    with pytest.raises(ValueError, match="shape"):
        pio.load(p)
    p = _write(tmp_path / "noent.safetensors", {"a": [1, 2]}, b"")
    with pytest.raises(ValueError, match="not an object"):
        pio.load(p)


def test_truncated_real_file(tmp_path):
    p = tmp_path / "t.safetensors"
    pio.save({"a": pc.ones(100), "b": pc.ones(10, dtype=pc.float64)}, p)
    data = p.read_bytes()
    for cut in (3, 8, 20, len(data) - 1):
        q = tmp_path / f"cut{cut}.safetensors"
        q.write_bytes(data[:cut])
        with pytest.raises(ValueError):
            pio.load(q)


def test_random_garbage_never_crashes(tmp_path):
    rng = np.random.default_rng(0)
    good = tmp_path / "g.safetensors"
    pio.save({"a": pc.ones(5), "b": pc.zeros(2, 2, dtype=pc.int64)}, good)
    data = bytearray(good.read_bytes())
    for t in range(60):
        d = bytearray(data)
        for _ in range(rng.integers(1, 4)):
            d[rng.integers(0, len(d))] = rng.integers(0, 256)
        q = tmp_path / f"r{t}.safetensors"
        q.write_bytes(bytes(d))
        try:
            pio.load(q)
        except ValueError:
            pass


# ------------------------------------------------------------------------------------------------
# PyTorch interop
# ------------------------------------------------------------------------------------------------
def test_weights_saved_by_torch_load_by_name(tmp_path):
    torch = pytest.importorskip("torch")
    from safetensors.torch import save_file

    tnn = torch.nn
    torch.manual_seed(0)
    tm = tnn.Sequential(tnn.Conv2d(1, 4, 3), tnn.BatchNorm2d(4), tnn.ReLU(), tnn.Flatten(), tnn.Linear(4 * 6 * 6, 3))
    with torch.no_grad():  # non-trivial running statistics
        tm.train()(torch.randn(8, 1, 8, 8))
    tm.eval()
    p = tmp_path / "torch.safetensors"
    save_file(tm.state_dict(), str(p))
    out = pio.load(p)
    assert out["1.num_batches_tracked"].dtype == pc.int64
    assert out["1.num_batches_tracked"].item() == 1
    for k, v in tm.state_dict().items():
        np.testing.assert_array_equal(_arr(out[k]), v.numpy())

    nn = pytest.importorskip("pycnn.nn")
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 3))
    model.load_state_dict(pio.load(p))
    model.eval()
    x = np.random.default_rng(1).standard_normal((2, 1, 8, 8)).astype(np.float32)
    with torch.no_grad():
        ref = tm(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(_arr(model(pc.from_numpy(x))), ref, rtol=1e-4, atol=1e-5)


def test_torch_lenet_weights_load_into_pycnn_lenet(tmp_path):
    torch = pytest.importorskip("torch")
    models = pytest.importorskip("pycnn.models")
    from safetensors.torch import save_file

    model = models.lenet5()
    sd = model.state_dict()
    # Build the torch LeNet with the same layout: one torch layer per pycnn layer, same names.
    tnn = torch.nn
    torch.manual_seed(0)

    def torch_twin(m):
        name = type(m).__name__
        if name == "Sequential":
            return tnn.Sequential(*[torch_twin(c) for c in m])
        if name == "Conv2d":
            w = m.weight.shape
            return tnn.Conv2d(w[1] * m.groups, w[0], (w[2], w[3]), stride=m.stride, padding=m.padding,
                              bias=getattr(m, "bias", None) is not None)
        if name == "Linear":
            w = m.weight.shape
            return tnn.Linear(w[1], w[0], bias=getattr(m, "bias", None) is not None)
        if name in ("MaxPool2d", "AvgPool2d"):
            return getattr(tnn, name)(m.kernel_size, m.stride, m.padding)
        if name in ("ReLU", "Tanh", "Sigmoid", "Flatten", "Identity"):
            return getattr(tnn, name)()
        if name == "BatchNorm2d":
            return tnn.BatchNorm2d(m.num_features)
        pytest.skip(f"no torch twin for {name}")

    try:
        tm = torch_twin(model)
    except (TypeError, AttributeError) as e:
        pytest.skip(f"lenet5 layout not mirrored automatically: {e}")
    assert {k: tuple(v.shape) for k, v in tm.state_dict().items()} == {k: tuple(v.shape) for k, v in sd.items()}
    p = tmp_path / "lenet_torch.safetensors"
    save_file(tm.state_dict(), str(p))
    model.load_state_dict(pc.load(p) if hasattr(pc, "load") else pio.load(p))
    model.eval(), tm.eval()
    x = np.random.default_rng(2).standard_normal((3, 1, 28, 28)).astype(np.float32)
    with torch.no_grad():
        ref = tm(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(_arr(model(pc.from_numpy(x))), ref, rtol=1e-4, atol=1e-4)


# ------------------------------------------------------------------------------------------------
# deterministic bytes (issue 10.4)
# ------------------------------------------------------------------------------------------------
def test_equal_contents_give_byte_identical_files(tmp_path):
    """Metadata and tensors given in any order: the same bytes (the Rust writer ordered metadata
    by a hash map, so two saves of the same weights differed)."""
    rng = np.random.default_rng(0)
    tensors = {f"layer{i}.{k}": rng.standard_normal((i + 2, 3)).astype(dt)
               for i in range(6) for k, dt in (("w", np.float32), ("b", np.float64))}
    tensors["steps"] = np.array(7, np.int64)
    meta = {f"key{i}": f"value{i}" for i in range(12)}
    pio.save(tensors, tmp_path / "a.safetensors", metadata=meta)
    pio.save(dict(reversed(list(tensors.items()))), tmp_path / "b.safetensors",
             metadata=dict(reversed(list(meta.items()))))
    a, b = (tmp_path / "a.safetensors").read_bytes(), (tmp_path / "b.safetensors").read_bytes()
    assert a == b
    (n,) = struct.unpack("<Q", a[:8])
    assert (8 + n) % 8 == 0  # the data section starts aligned, every tensor at a multiple of its size
    header = json.loads(a[8:8 + n])
    for name, entry in header.items():
        if name != "__metadata__":
            assert entry["data_offsets"][0] % np.dtype(tensors[name].dtype).itemsize == 0
    assert list(header["__metadata__"]) == sorted(header["__metadata__"])
    # the reference reader reads it back exactly
    from safetensors.numpy import load_file

    back = load_file(str(tmp_path / "a.safetensors"))
    assert set(back) == set(tensors)
    for k, v in tensors.items():
        np.testing.assert_array_equal(back[k], v)
        assert back[k].dtype == v.dtype


def test_same_seed_same_model_file_in_separate_processes(tmp_path):
    """Two interpreters (different hash seeds) saving the same model write the same bytes."""
    import subprocess
    import sys

    code = ("import sys, pycnn as pc; pc.manual_seed(0); m = pc.models.lenet5(); "
            "pc.save(m, sys.argv[1], metadata={'note': 'x', 'epoch': '3', 'a': 'b'})")
    paths = []
    for seed in ("1", "2"):
        p = tmp_path / f"w{seed}.safetensors"
        env = dict(os.environ, PYTHONHASHSEED=seed)
        env["PYTHONPATH"] = os.path.dirname(os.path.dirname(pc.__file__)) + os.pathsep + env.get("PYTHONPATH", "")
        subprocess.run([sys.executable, "-c", code, str(p)], check=True, env=env, timeout=120)
        paths.append(p)
    assert paths[0].read_bytes() == paths[1].read_bytes()


def test_torch_reads_our_files(tmp_path):
    pytest.importorskip("torch")
    from safetensors.torch import load_file

    rng = np.random.default_rng(1)
    sd = {"w": rng.standard_normal((3, 4)).astype(np.float32), "b": rng.standard_normal(3)}
    pio.save(sd, tmp_path / "t.safetensors")
    back = load_file(str(tmp_path / "t.safetensors"))
    for k, v in sd.items():
        np.testing.assert_array_equal(back[k].numpy(), v)
