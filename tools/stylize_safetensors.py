#!/usr/bin/python3
"""Minimal safetensors reader/writer (numpy only) for stylize models.

The file format (https://github.com/huggingface/safetensors):

    u64 little-endian N | N bytes of UTF-8 JSON header | tensor bytes

The header maps each tensor name to {"dtype", "shape", "data_offsets": [begin, end]}
(offsets relative to the start of the tensor bytes) and may hold a "__metadata__"
object of string -> string. We write the JSON padded with spaces to a multiple of 8
bytes so that the data area is aligned, and the tensors contiguous, in sorted name
order, little-endian. Only the float dtypes a model needs are supported: F32, F16
and BF16; `read` always returns float32 arrays.

Used by tools/convert_model.py and the tests:

    import stylize_safetensors as st
    st.write(path, {"w": array}, {"style": "candy"}, dtype="F16")
    tensors, metadata = st.read(path)
"""

import hashlib
import json
import os
import struct
import tempfile

import numpy as np

__all__ = ["write", "read", "write_raw", "DTYPES", "MAX_HEADER_SIZE"]

# Bytes per element of each storage dtype we support.
DTYPES = {"F32": 4, "F16": 2, "BF16": 2}
# Accepted spellings of the storage dtype in write().
_DTYPE_ALIASES = {"F32": "F32", "FP32": "F32", "FLOAT32": "F32",
                  "F16": "F16", "FP16": "F16", "FLOAT16": "F16",
                  "BF16": "BF16", "BFLOAT16": "BF16"}
# Same bound as the reference implementation: a larger header is certainly bogus
# and would only make us allocate a lot of memory.
MAX_HEADER_SIZE = 100 * 1024 * 1024


# ---------------------------------------------------------------------------
# dtype conversion

def _f32_to_bf16_bits(a):
    """float32 array -> uint16 bfloat16 bit patterns, rounding to nearest even."""
    u = np.ascontiguousarray(a, dtype="<f4").view("<u4").astype(np.uint64)
    # Round to nearest even on the 16 dropped bits: add 0x7FFF plus the lowest
    # kept bit, then truncate. (uint64 so the addition cannot wrap.) Finite values
    # too large for bf16 correctly round up to infinity.
    rounded = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)
    # NaNs must stay NaN (rounding could carry a NaN with a small payload into
    # the exponent, i.e. turn it into Inf): keep the top bits, force quiet bit.
    nan = np.isnan(a)
    if nan.any():
        rounded[nan] = ((u[nan] >> 16) | 0x0040).astype(np.uint16)
    return rounded


def _bf16_bits_to_f32(bits):
    """uint16 bfloat16 bit patterns -> float32 (exact)."""
    return (bits.astype(np.uint32) << 16).view(np.float32)


def _encode(name, array, dtype):
    """A float32 array -> its little-endian bytes in storage dtype `dtype`."""
    a = np.ascontiguousarray(array, dtype=np.float32)
    if dtype == "F32":
        return a.astype("<f4", copy=False).tobytes()
    if dtype == "F16":
        with np.errstate(over="ignore"):
            h = a.astype("<f2")
        # A weight above 65504 would silently become Inf: refuse instead.
        bad = np.isinf(h) & np.isfinite(a)
        if bad.any():
            raise ValueError("tensor %r: value %g does not fit in F16 (max 65504); "
                             "use F32 or BF16" % (name, float(a[bad].flat[0])))
        return h.tobytes()
    bits = _f32_to_bf16_bits(a)
    bad = np.isinf(_bf16_bits_to_f32(bits)) & np.isfinite(a)
    if bad.any():
        raise ValueError("tensor %r: value %g does not fit in BF16"
                         % (name, float(a[bad].flat[0])))
    return bits.astype("<u2", copy=False).tobytes()


def _decode(raw, dtype, shape):
    """Little-endian bytes of storage dtype `dtype` -> a new float32 array."""
    if dtype == "F32":
        a = np.frombuffer(raw, dtype="<f4").astype(np.float32)
    elif dtype == "F16":
        a = np.frombuffer(raw, dtype="<f2").astype(np.float32)
    else:
        a = _bf16_bits_to_f32(np.frombuffer(raw, dtype="<u2"))
    return a.reshape(shape)


# ---------------------------------------------------------------------------
# writing

def _header_bytes(header_obj):
    """JSON-encode a header and pad it with spaces to a multiple of 8 bytes."""
    # ensure_ascii=False: the header is UTF-8, and raw UTF-8 is simpler for the C
    # loader than \u escapes. Compact separators keep the header small.
    text = json.dumps(header_obj, ensure_ascii=False, separators=(",", ":"))
    data = text.encode("utf-8")
    data += b" " * (-len(data) % 8)
    return data


def _atomic_write(path, chunks):
    """Write the byte strings `chunks` to `path` via a temp file + rename.

    Either the complete new file appears at `path` or (on any error) nothing
    changes there and no temp file is left behind.
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=directory, prefix="." + os.path.basename(path) + ".",
                               suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            for chunk in chunks:
                f.write(chunk)
            f.flush()
            os.fsync(f.fileno())
        # mkstemp creates 0600; give the file the usual umask-based mode.
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


def write(path, tensors, metadata=None, dtype="F32"):
    """Write `tensors` (name -> numpy array) to a safetensors file at `path`.

    dtype is the storage dtype, "F32", "F16" or "BF16" (also "fp32"/"fp16"/"bf16");
    values are converted from float32 with round-to-nearest-even. metadata is an
    optional dict of str -> str stored as "__metadata__". The file is written
    atomically. Raises ValueError for bad arguments (nothing is written then).
    """
    key = str(dtype).upper()
    if key not in _DTYPE_ALIASES:
        raise ValueError("unsupported dtype %r (expected F32, F16 or BF16)" % (dtype,))
    dtype = _DTYPE_ALIASES[key]

    if metadata is not None:
        if not isinstance(metadata, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()):
            raise ValueError("metadata must be a dict of str -> str")

    header = {}
    if metadata:
        header["__metadata__"] = dict(metadata)
    blobs = []
    offset = 0
    for name in sorted(tensors):
        if not isinstance(name, str) or not name or name == "__metadata__":
            raise ValueError("invalid tensor name %r" % (name,))
        array = np.asarray(tensors[name])
        if array.dtype.kind not in "fiub":
            raise ValueError("tensor %r: dtype %s is not numeric" % (name, array.dtype))
        blob = _encode(name, array, dtype)
        header[name] = {"dtype": dtype, "shape": [int(d) for d in array.shape],
                        "data_offsets": [offset, offset + len(blob)]}
        offset += len(blob)
        blobs.append(blob)

    head = _header_bytes(header)
    _atomic_write(path, [struct.pack("<Q", len(head)), head] + blobs)


def write_raw(path, header_obj, data):
    """Write a file with an arbitrary (possibly invalid) header and data area.

    For tests that craft malformed files: header_obj is JSON-encoded as is
    (padded to 8 bytes), and `data` is appended unchanged.
    """
    head = _header_bytes(header_obj)
    _atomic_write(path, [struct.pack("<Q", len(head)), head, bytes(data)])


def file_sha256(path):
    """The sha256 of a model file, as metadata records it (a twin's teacher,
    a warm start, the members of an average)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# ---------------------------------------------------------------------------
# reading

def _no_duplicates(pairs):
    d = {}
    for k, v in pairs:
        if k in d:
            raise ValueError("duplicate key %r in safetensors header" % (k,))
        d[k] = v
    return d


def _is_int(x):
    # bool is a subclass of int in Python, but true/false is not an offset.
    return isinstance(x, int) and not isinstance(x, bool)


def read(path):
    """Read a safetensors file -> (dict name -> float32 array, metadata dict).

    Validates the header: its length, JSON syntax, each entry's dtype, shape and
    offsets (inside the data area, matching shape x dtype size, contiguous with
    no holes or overlaps). Raises ValueError naming the problem.
    """
    with open(path, "rb") as f:
        blob = f.read()
    where = os.fspath(path)
    if len(blob) < 8:
        raise ValueError("%s: not a safetensors file (only %d bytes)" % (where, len(blob)))
    (n,) = struct.unpack("<Q", blob[:8])
    if n < 2 or n > MAX_HEADER_SIZE:
        raise ValueError("%s: invalid safetensors header length %d" % (where, n))
    if 8 + n > len(blob):
        raise ValueError("%s: safetensors header length %d exceeds the file size %d "
                         "(truncated file?)" % (where, n, len(blob)))
    head = blob[8:8 + n]
    if not head.startswith(b"{"):
        raise ValueError("%s: safetensors header is not a JSON object" % where)
    try:
        header = json.loads(head.decode("utf-8"), object_pairs_hook=_no_duplicates)
    except UnicodeDecodeError as e:
        raise ValueError("%s: safetensors header is not UTF-8: %s" % (where, e)) from None
    except ValueError as e:  # json.JSONDecodeError or a duplicate key
        raise ValueError("%s: bad safetensors header: %s" % (where, e)) from None
    if not isinstance(header, dict):
        raise ValueError("%s: safetensors header is not a JSON object" % where)

    metadata = header.pop("__metadata__", None)
    if metadata is None:
        metadata = {}
    if not isinstance(metadata, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()):
        raise ValueError("%s: __metadata__ must be an object of string values" % where)

    data = memoryview(blob)[8 + n:]
    entries = []
    for name, info in header.items():
        def bad(msg):
            return ValueError("%s: tensor %r: %s" % (where, name, msg))
        if not isinstance(info, dict):
            raise bad("header entry is not an object")
        dtype = info.get("dtype")
        if dtype not in DTYPES:
            raise bad("unsupported dtype %r (expected F32, F16 or BF16)" % (dtype,))
        shape = info.get("shape")
        if not isinstance(shape, list) or not all(_is_int(d) and d >= 0 for d in shape):
            raise bad("invalid shape %r" % (shape,))
        offsets = info.get("data_offsets")
        if (not isinstance(offsets, list) or len(offsets) != 2
                or not all(_is_int(o) for o in offsets)):
            raise bad("invalid data_offsets %r" % (offsets,))
        begin, end = offsets
        if not 0 <= begin <= end <= len(data):
            raise bad("data_offsets [%d, %d] outside the data area of %d bytes"
                      % (begin, end, len(data)))
        count = 1
        for d in shape:
            count *= d
        if end - begin != count * DTYPES[dtype]:
            raise bad("data_offsets [%d, %d] hold %d bytes but shape %s of %s needs %d"
                      % (begin, end, end - begin, shape, dtype, count * DTYPES[dtype]))
        entries.append((begin, end, name, dtype, tuple(shape)))

    # Like the reference implementation: tensors must tile the data area exactly.
    pos = 0
    for begin, end, name, _, _ in sorted(entries):
        if begin != pos:
            raise ValueError("%s: tensor %r starts at byte %d, expected %d "
                             "(overlap or hole in the data area)" % (where, name, begin, pos))
        pos = end
    if pos != len(data):
        raise ValueError("%s: data area has %d bytes but the tensors use %d "
                         "(truncated file or trailing garbage)" % (where, len(data), pos))

    tensors = {}
    for begin, end, name, dtype, shape in sorted(entries, key=lambda e: e[2]):
        tensors[name] = _decode(data[begin:end], dtype, shape)
    return tensors, metadata
