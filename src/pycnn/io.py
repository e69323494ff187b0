"""Saving and loading weights: safetensors files, never pickle.

Why safetensors (a declared dependency): a safetensors file is an 8-byte little-endian header
length, a JSON header (name -> dtype, shape, byte range) and one flat byte buffer.  Reading it
interprets bytes as numbers and nothing else, so loading a file from the internet can never run
code, unlike a ``pickle`` / ``torch.save`` checkpoint.  Files are read by the format's small,
well-fuzzed Rust reader (``safetensors.safe_open``) and written here, byte for byte
deterministically (the reference writer orders metadata by a hash map); the files are the ones
``safetensors.torch.save_file(model.state_dict(), path)`` reads and writes, so weights trained in
PyTorch load into the matching pycnn model by name.

Before a file reaches the Rust reader, :func:`load` checks its structure itself (cheaply: it
reads the header only) so that every malformed file raises a ``ValueError`` with a message that
says what is wrong: too short, header length past the end of the file, a header that is not a
JSON object, a PyTorch pickle/zip checkpoint, an unsupported dtype, tensor byte ranges outside
the file, overlapping or of the wrong size.

Public functions::

    save(model_or_state_dict, path, metadata=None)   # atomic write
    load(path) -> dict name -> pc.Tensor             # float32 / float64 / int64
    load_into(model, path, strict=True)              # model.load_state_dict(load(path))
    load_metadata(path) -> dict str -> str           # the header's __metadata__

dtypes: pycnn holds float32 (F32), float64 (F64) and int64 (I64).  On load, F16 and BF16 are
widened to float32 and the integer types I8/I16/I32/U8/U16/U32 and BOOL to int64 (exact);
anything else (U64, complex, 8-bit floats) raises ``ValueError``.
"""
from __future__ import annotations

import hashlib
import json
import os
import struct
import sys
import tempfile
from typing import Any, Dict, Mapping, Optional, Tuple, Union

import numpy as np

from . import __version__
from .tensor import Tensor, from_numpy

__all__ = ["save", "load", "load_into", "load_metadata"]

PathLike = Union[str, "os.PathLike[str]"]

# The same cap the Rust reader applies: a header this large is certainly not a weight file.
_MAX_HEADER = 100 * 1024 * 1024

# safetensors dtype name -> (bytes per element, numpy dtype read from the file or None for BF16,
#                            numpy dtype pycnn keeps)
_DTYPES: Dict[str, Tuple[int, Optional[type], type]] = {
    "F32": (4, np.float32, np.float32),
    "F64": (8, np.float64, np.float64),
    "I64": (8, np.int64, np.int64),
    "F16": (2, np.float16, np.float32),
    "BF16": (2, None, np.float32),
    "I32": (4, np.int32, np.int64),
    "I16": (2, np.int16, np.int64),
    "I8": (1, np.int8, np.int64),
    "U32": (4, np.uint32, np.int64),
    "U16": (2, np.uint16, np.int64),
    "U8": (1, np.uint8, np.int64),
    "BOOL": (1, np.bool_, np.int64),
}
_SAVE_DTYPES = (np.dtype(np.float32), np.dtype(np.float64), np.dtype(np.int64))

_PICKLE_MESSAGE = (
    "this looks like a PyTorch pickle/zip checkpoint; pycnn only loads safetensors files, which "
    "cannot run code — convert it with safetensors.torch.save_file(model.state_dict(), path)"
)


# ------------------------------------------------------------------------------------------------
# saving
# ------------------------------------------------------------------------------------------------
def to_numpy_array(name: str, value: Any) -> np.ndarray:
    """state_dict[name] (a Tensor, Parameter or NumPy array) as the contiguous native array saved."""
    if hasattr(value, "data") and not isinstance(value, (np.ndarray, Tensor)):
        value = value.data  # nn.Parameter
    if isinstance(value, Tensor):
        arr = np.asarray(value.numpy())
    elif isinstance(value, np.ndarray):
        arr = value
    else:
        raise TypeError(f"save: state_dict[{name!r}] is a {type(value).__name__}; expected a pycnn "
                        "Tensor, nn.Parameter or numpy.ndarray")
    if arr.dtype not in _SAVE_DTYPES:
        raise TypeError(f"save: state_dict[{name!r}] has dtype {arr.dtype}; pycnn saves float32, "
                        "float64 and int64 tensors")
    arr = np.ascontiguousarray(arr).reshape(arr.shape)  # ascontiguousarray makes 0-d arrays 1-d
    if not arr.dtype.isnative:
        arr = arr.astype(arr.dtype.newbyteorder("="))
    return arr


def _architecture(model: Any) -> str:
    desc: Dict[str, Any] = {"class": f"{type(model).__module__}.{type(model).__qualname__}"}
    named_modules = getattr(model, "named_modules", None)
    if callable(named_modules):
        try:
            desc["modules"] = [[name, type(m).__name__] for name, m in named_modules()]
        except Exception:  # a description is best effort; never fail a save over it
            pass
    try:
        desc["repr"] = repr(model)
    except Exception:
        pass
    return json.dumps(desc)


def save(model_or_state_dict: Any, path: PathLike, metadata: Optional[Mapping[str, str]] = None) -> None:
    """Write a model's ``state_dict()`` (or a dict name -> Tensor/array) to a safetensors file.

    The write is atomic: the bytes go to a temporary file in the same folder, are flushed and
    fsync'ed, and the temporary file then replaces ``path`` (``os.replace``), so a crash leaves
    either the old file or the new one, never half a file. Equal tensors and metadata give the same
    file byte for byte (sorted metadata, a fixed tensor order).

    The header's metadata holds ``format="pycnn"`` and ``pycnn_version``, and, when a Module is
    given, ``architecture`` (JSON: class, module names and types, repr), plus the ``metadata``
    given here (str -> str).
    """
    meta: Dict[str, str] = {"format": "pycnn", "pycnn_version": __version__}
    state_dict_fn = getattr(model_or_state_dict, "state_dict", None)
    if callable(state_dict_fn) and not isinstance(model_or_state_dict, Mapping):
        state = state_dict_fn()
        meta["architecture"] = _architecture(model_or_state_dict)
    elif isinstance(model_or_state_dict, Mapping):
        state = model_or_state_dict
    else:
        raise TypeError(f"save: expected an nn.Module or a dict name -> Tensor, got "
                        f"{type(model_or_state_dict).__name__}")
    if metadata is not None:
        if not isinstance(metadata, Mapping):
            raise TypeError(f"save: metadata must be a dict str -> str, got {type(metadata).__name__}")
        for k, v in metadata.items():
            if not isinstance(k, str) or not isinstance(v, str):
                raise TypeError(f"save: metadata must map str to str; got {k!r}: {type(v).__name__} "
                                "(json.dumps richer values)")
            meta[k] = v

    tensors: Dict[str, np.ndarray] = {}
    for name, value in state.items():
        if not isinstance(name, str):
            raise TypeError(f"save: state_dict keys must be str, got {name!r}")
        if name == "__metadata__":
            raise ValueError("save: '__metadata__' is reserved by the safetensors format")
        tensors[name] = to_numpy_array(name, value)
    write_file(path, tensors, meta, "save")


_FILE_DTYPE = {np.dtype(np.float32): "F32", np.dtype(np.float64): "F64", np.dtype(np.int64): "I64"}


def _write_safetensors(f: Any, tensors: Mapping[str, np.ndarray], metadata: Mapping[str, str]) -> str:
    """Write one safetensors file to the binary stream `f`; returns the SHA-256 of its bytes.

    Byte for byte deterministic (the Rust writer's metadata order follows a hash map, so equal
    weights gave different files): metadata keys sorted, tensors ordered by element size, largest
    first (every tensor stays aligned to its element size), then by name; compact JSON padded with
    spaces to a multiple of 8 bytes, as the format's reference writer does.
    """
    order = sorted(tensors, key=lambda k: (-tensors[k].dtype.itemsize, k))
    header: Dict[str, Any] = {"__metadata__": {k: metadata[k] for k in sorted(metadata)}} if metadata else {}
    offset = 0
    for name in order:
        arr = tensors[name]
        header[name] = {"dtype": _FILE_DTYPE[arr.dtype], "shape": list(arr.shape),
                        "data_offsets": [offset, offset + arr.nbytes]}
        offset += arr.nbytes
    raw = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    raw += b" " * (-len(raw) % 8)
    digest = hashlib.sha256()
    for chunk in (struct.pack("<Q", len(raw)), raw):
        f.write(chunk)
        digest.update(chunk)
    for name in order:
        arr = tensors[name]
        if arr.dtype.byteorder == ">" or (arr.dtype.byteorder == "=" and sys.byteorder == "big"):
            arr = arr.astype(arr.dtype.newbyteorder("<"))
        view = memoryview(np.ascontiguousarray(arr).reshape(-1)).cast("B")
        f.write(view)
        digest.update(view)
    return digest.hexdigest()


def write_file(path: PathLike, tensors: Mapping[str, np.ndarray], metadata: Mapping[str, str], who: str) -> str:
    """Write a safetensors file atomically (see `save`); returns the SHA-256 of its bytes."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"{who}: folder {folder!r} does not exist")
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=tmp_prefix(path), suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            digest = _write_safetensors(f, tensors, metadata)
            f.flush()
            os.fsync(f.fileno())
        # mkstemp makes the file 0600; give it the permissions a plain open() would have.
        if os.path.exists(path):
            os.chmod(tmp, os.stat(path).st_mode & 0o777)
        else:
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    try:  # make the rename itself durable (not possible on every platform)
        dfd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:
        pass
    return digest


def tmp_prefix(path: str) -> str:
    """Temporary files of a write to `path` are named `.<name>.<random>.tmp` in its folder (a kill
    -9 during the write can leave one; train/checkpoint.py removes such leftovers)."""
    return "." + os.path.basename(path) + "."


# ------------------------------------------------------------------------------------------------
# checking and loading
# ------------------------------------------------------------------------------------------------
def _no_duplicates(pairs):
    out = {}
    for k, v in pairs:
        if k in out:
            raise ValueError(f"duplicate key {k!r}")
        out[k] = v
    return out


def _looks_pickled(first: bytes) -> bool:
    # pickle protocol 2+ starts with PROTO (0x80); torch.save's zip format with "PK\x03\x04".
    return first[:1] == b"\x80" or first[:2] == b"PK"


def _read_header(path: PathLike) -> Tuple[Dict[str, Any], Dict[str, str], int]:
    """Validate the file's structure; return (tensor entries, metadata, data start offset)."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"load: no such file: {path!r}")
    size = os.path.getsize(path)
    where = f"load: {path!r}"
    with open(path, "rb") as f:
        first = f.read(8)
        pickled = _looks_pickled(first)

        def bad(msg: str) -> ValueError:
            return ValueError(f"{where}: {_PICKLE_MESSAGE}" if pickled else f"{where}: {msg}")

        if size < 8:
            raise bad(f"file is {size} bytes, shorter than the 8-byte safetensors header length; "
                      "not a safetensors file (truncated?)")
        (n,) = struct.unpack("<Q", first)
        if n > size - 8:
            raise bad(f"header length {n} is larger than the file ({size} bytes); not a safetensors "
                      "file, or truncated")
        if n > _MAX_HEADER:
            raise bad(f"header length {n} exceeds the {_MAX_HEADER}-byte limit")
        raw = f.read(n)
    try:
        header = json.loads(raw.decode("utf-8"), object_pairs_hook=_no_duplicates)
    except (UnicodeDecodeError, ValueError) as e:
        raise bad(f"header is not valid JSON ({e})") from None
    if not isinstance(header, dict):
        raise bad(f"header is a JSON {type(header).__name__}, expected an object")

    data_start = 8 + n
    data_size = size - data_start
    metadata = header.pop("__metadata__", None) or {}
    if not isinstance(metadata, dict) or not all(isinstance(k, str) and isinstance(v, str)
                                                 for k, v in metadata.items()):
        raise ValueError(f"{where}: __metadata__ must be an object of strings")
    spans = []
    for name, entry in header.items():
        if not isinstance(entry, dict):
            raise ValueError(f"{where}: header entry {name!r} is not an object")
        dtype = entry.get("dtype")
        shape = entry.get("shape")
        offsets = entry.get("data_offsets")
        if not isinstance(dtype, str):
            raise ValueError(f"{where}: tensor {name!r} has no dtype")
        if dtype not in _DTYPES:
            raise ValueError(f"{where}: tensor {name!r} has unsupported dtype {dtype}; pycnn holds "
                             f"F32, F64 and I64 (and converts {', '.join(sorted(set(_DTYPES) - {'F32', 'F64', 'I64'}))})")
        if (not isinstance(shape, list)
                or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in shape)):
            raise ValueError(f"{where}: tensor {name!r} has an invalid shape {shape!r}")
        if (not isinstance(offsets, list) or len(offsets) != 2
                or not all(isinstance(o, int) and not isinstance(o, bool) for o in offsets)):
            raise ValueError(f"{where}: tensor {name!r} has invalid data_offsets {offsets!r}")
        begin, end = offsets
        if not 0 <= begin <= end <= data_size:
            raise ValueError(f"{where}: tensor {name!r} data_offsets [{begin}, {end}] lie outside the "
                             f"file's {data_size}-byte data section (truncated file?)")
        count = 1
        for s in shape:
            count *= s
        if end - begin != count * _DTYPES[dtype][0]:
            raise ValueError(f"{where}: tensor {name!r} of shape {tuple(shape)} and dtype {dtype} needs "
                             f"{count * _DTYPES[dtype][0]} bytes but data_offsets span {end - begin}")
        spans.append((begin, end, name))
    spans.sort()
    for (b0, e0, n0), (b1, e1, n1) in zip(spans, spans[1:]):
        if b1 < e0:
            raise ValueError(f"{where}: tensors {n0!r} [{b0}, {e0}] and {n1!r} [{b1}, {e1}] overlap")
    return header, metadata, data_start


def load_metadata(path: PathLike) -> Dict[str, str]:
    """The ``__metadata__`` of a safetensors file (str -> str), after checking the file."""
    _, metadata, _ = _read_header(path)
    return dict(metadata)


def load(path: PathLike) -> Dict[str, Tensor]:
    """Read a safetensors file into a dict name -> CPU ``pc.Tensor`` (float32/float64/int64).

    Never runs code.  Raises ``FileNotFoundError`` for a missing file and ``ValueError`` for
    anything that is not a well-formed safetensors file of supported dtypes.
    """
    header, _, data_start = _read_header(path)
    from safetensors import safe_open

    path = os.fspath(path)
    out: Dict[str, Tensor] = {}
    name = None
    try:
        with safe_open(path, framework="np") as f:
            for name in f.keys():
                entry = header[name]
                _, read_as, keep = _DTYPES[entry["dtype"]]
                if read_as is None:  # BF16: numpy has no bfloat16; widen the raw bits ourselves
                    begin, end = entry["data_offsets"]
                    with open(path, "rb") as raw:
                        raw.seek(data_start + begin)
                        bits = np.frombuffer(raw.read(end - begin), dtype="<u2")
                    arr = (bits.astype(np.uint32) << 16).view(np.float32).reshape(entry["shape"])
                else:
                    arr = np.asarray(f.get_tensor(name))
                arr = np.ascontiguousarray(arr, dtype=keep).reshape(entry["shape"])
                if not arr.flags.writeable:
                    arr = arr.copy()
                out[name] = from_numpy(arr)
    except ValueError as e:
        if str(e).startswith("load"):
            raise
        where = f" tensor {name!r} of shape {tuple(header[name]['shape'])}" if name in header else ""
        raise ValueError(f"load: {path}:{where} cannot be read: {e}") from None
    except Exception as e:  # SafetensorError and friends: still a bad file, report it as such
        raise ValueError(f"load: {path!r}: not a valid safetensors file ({type(e).__name__}: {e})") from None
    return out


def load_into(model: Any, path: PathLike, strict: bool = True) -> Any:
    """``model.load_state_dict(load(path), strict=strict)``; returns what that returns."""
    return model.load_state_dict(load(path), strict=strict)
