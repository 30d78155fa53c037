#!/usr/bin/python3
"""Convert a fast-neural-style TransformerNet to the stylize .safetensors format.

Inputs understood (told apart by their content; .onnx also by the name):
  * pytorch/examples state_dicts saved by torch.save in the zip format
    (a zip holding <folder>/data.pkl and <folder>/data/<key> storages);
  * the legacy (non-zip) torch.save format of older checkpoints
    (magic number, protocol and sys_info pickles, the object pickle, the
    storage key list, then the raw storages);
  * ONNX exports of the network (the ONNX model zoo's fast_neural_style
    models, opset 8/9); needs Debian's python3-onnx;
  * a .safetensors file (to re-convert it, e.g. to another dtype).

Torch pickles are read with a restricted unpickler that only knows the few
globals a state_dict needs and maps them to inert stand-ins: no pickled code
is ever run and torch is not imported.

Exit status 0 on success, 1 on any error (message "convert_model: ..." on
stderr, and no output file written).
"""

import argparse
import collections
import heapq
import io
import os
import pickle
import struct
import sys
import zipfile
import zlib
from pathlib import Path

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import stylize_safetensors as st  # noqa: E402

PROG = "convert_model"
FORMAT_VERSION = "1"
# --dtype value -> safetensors storage dtype
DTYPES = {"fp32": "F32", "fp16": "F16", "bf16": "BF16"}
# Buffers of the norm layers that inference does not use (old pytorch/examples
# checkpoints carry them, from InstanceNorm2d's former track_running_stats).
DROPPED_SUFFIXES = (".running_mean", ".running_var", ".num_batches_tracked")


class ConvertError(Exception):
    """A user-facing error; main() prints it and exits 1."""


# ===========================================================================
# Torch checkpoints, without torch

class _StorageType:
    """Stand-in for torch.FloatStorage & co: only remembers the element type."""

    def __init__(self, name, dtype):
        self.name = name
        self.dtype = np.dtype(dtype)  # little-endian numpy dtype of the raw bytes

    def __repr__(self):
        return "torch.%s" % self.name


# The storage classes a checkpoint may name (as torch.X or torch.cuda.X) and
# the little-endian numpy dtype of their raw bytes. BFloat16 has no numpy
# dtype: its uint16 bit patterns are widened to float32 when read.
_STORAGE_DTYPES = {
    "FloatStorage": "<f4", "DoubleStorage": "<f8", "HalfStorage": "<f2",
    "BFloat16Storage": "<u2", "LongStorage": "<i8", "IntStorage": "<i4",
    "ShortStorage": "<i2", "CharStorage": "i1", "ByteStorage": "u1",
    "BoolStorage": "?"}


class _Storage:
    """One storage of a checkpoint: a flat numpy array once its bytes are read."""

    def __init__(self, stype, key, numel):
        self.stype = stype
        self.key = key
        self.numel = numel
        self.array = None  # legacy format: filled in after the object pickle

    def set_bytes(self, raw, byteorder="little"):
        dtype = self.stype.dtype
        if len(raw) != self.numel * dtype.itemsize:
            raise ConvertError("storage %s holds %d bytes, expected %d (%d x %s); "
                               "truncated or corrupt file?"
                               % (self.key, len(raw), self.numel * dtype.itemsize,
                                  self.numel, self.stype))
        if byteorder == "big":
            dtype = dtype.newbyteorder(">")
        a = np.frombuffer(raw, dtype=dtype)
        if self.stype.name == "BFloat16Storage":
            a = (a.astype(np.uint32) << 16).view(np.float32)
        self.array = a.astype(a.dtype.newbyteorder("="), copy=False)


class _StorageView:
    """A slice of a storage (very old legacy checkpoints pickle these)."""

    def __init__(self, root, offset, numel):
        self.root, self.offset, self.numel = root, offset, numel
        self.stype, self.key = root.stype, root.key

    @property
    def array(self):
        a = self.root.array
        if a is None:
            return None
        if not 0 <= self.offset <= self.offset + self.numel <= len(a):
            raise ConvertError("storage view [%d, +%d) outside storage %s"
                               % (self.offset, self.numel, self.root.key))
        return a[self.offset:self.offset + self.numel]


class _Tensor:
    """Stand-in for a tensor: a strided view of a storage, materialized later
    (in the legacy format the storage bytes come after the object pickle)."""

    def __init__(self, storage, offset, size, stride):
        self.storage, self.offset, self.size, self.stride = storage, offset, size, stride

    @property
    def dtype_name(self):
        return self.storage.stype.name.replace("Storage", "")

    def materialize(self):
        # Validate here rather than in __init__: a pickle's BUILD opcode can
        # overwrite attributes after construction, and as_strided must never be
        # given a view that reaches outside the storage.
        storage, offset, size, stride = self.storage, self.offset, self.size, self.stride
        if not isinstance(storage, (_Storage, _StorageView)):
            raise ConvertError("malformed tensor record (storage is %s)"
                               % type(storage).__name__)
        for what, v in (("size", size), ("stride", stride)):
            if not isinstance(v, tuple) or not all(
                    isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in v):
                raise ConvertError("malformed tensor record (%s %r)" % (what, v))
        if (len(size) != len(stride) or not isinstance(offset, int)
                or isinstance(offset, bool) or offset < 0):
            raise ConvertError("malformed tensor record (offset %r, size %r, stride %r)"
                               % (offset, size, stride))
        a = storage.array
        if not isinstance(a, np.ndarray) or a.ndim != 1:
            raise ConvertError("storage %s has no data" % storage.key)
        if 0 in size:
            return np.zeros(size, dtype=a.dtype)
        last = offset + sum((n - 1) * s for n, s in zip(size, stride))
        if last >= len(a):
            raise ConvertError("tensor of size %s reads past the end of storage %s "
                               "(%d elements)" % (size, storage.key, len(a)))
        view = np.lib.stride_tricks.as_strided(
            a[offset:], shape=size, strides=[s * a.itemsize for s in stride],
            writeable=False)
        return np.array(view)  # copy: contiguous and independent of the storage


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False,
                       backward_hooks=None, metadata=None):
    return _Tensor(storage, storage_offset, tuple(size), tuple(stride))


def _rebuild_tensor(storage, storage_offset, size, stride):
    return _Tensor(storage, storage_offset, tuple(size), tuple(stride))


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None, *unused):
    if not isinstance(data, _Tensor):
        raise ConvertError("malformed parameter record")
    return data


def _fresh(function):
    """A factory of new wrappers of `function` (see _ALLOWED_GLOBALS)."""
    return lambda: (lambda *args, **kwargs: function(*args, **kwargs))


# Every global a state_dict pickle may name, as a factory of the safe stand-in
# that find_class hands out. Each lookup gets a fresh object because the BUILD
# opcode can set attributes on whatever the pickle has at hand: that must not
# reach our module-level functions or shared objects.
_ALLOWED_GLOBALS = {
    ("collections", "OrderedDict"): lambda: collections.OrderedDict,  # C type: immutable
    ("torch._utils", "_rebuild_tensor_v2"): _fresh(_rebuild_tensor_v2),
    ("torch._utils", "_rebuild_tensor"): _fresh(_rebuild_tensor),
    ("torch._utils", "_rebuild_parameter"): _fresh(_rebuild_parameter),
    ("torch", "Size"): lambda: tuple,
}
for _name, _dt in _STORAGE_DTYPES.items():
    _factory = (lambda name, dt: lambda: _StorageType(name, dt))(_name, _dt)
    _ALLOWED_GLOBALS[("torch", _name)] = _factory
    _ALLOWED_GLOBALS[("torch.cuda", _name)] = _factory  # saved from a GPU


class _RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that can only build state_dicts of tensors.

    find_class is the only way a pickle reaches code, so refusing every global
    but the stand-ins above makes loading a hostile file safe. persistent_load
    turns the storage records into _Storage objects via `load_storage`.
    """

    def __init__(self, file, load_storage=None):
        super().__init__(file, encoding="utf-8")
        self._load_storage = load_storage

    def find_class(self, module, name):
        factory = _ALLOWED_GLOBALS.get((module, name))
        if factory is None:
            hint = ""
            if not module.startswith(("torch", "collections", "numpy", "builtins",
                                      "__builtin__", "posix", "os", "nt", "subprocess")):
                hint = " (a whole pickled model? save model.state_dict() instead)"
            raise ConvertError("refusing to unpickle global '%s.%s': only state_dict "
                               "tensors are allowed%s" % (module, name, hint))
        return factory()

    def persistent_load(self, pid):
        if self._load_storage is None:
            raise ConvertError("unexpected persistent id in pickle")
        if not isinstance(pid, tuple) or len(pid) < 5 or pid[0] != "storage":
            kind = pid[0] if isinstance(pid, tuple) and pid else pid
            raise ConvertError("unsupported persistent record %r in pickle "
                               "(only tensor storages are allowed)" % (kind,))
        stype, key, numel = pid[1], pid[2], pid[4]
        if not isinstance(stype, _StorageType):
            raise ConvertError("malformed storage record (type %r)" % (stype,))
        if not isinstance(key, str) or not isinstance(numel, int) or numel < 0:
            raise ConvertError("malformed storage record %r" % (pid[1:],))
        view = pid[5] if len(pid) > 5 else None
        return self._load_storage(stype, key, numel, view)


def _unpickle(path, data, load_storage=None):
    try:
        return _RestrictedUnpickler(io.BytesIO(data), load_storage).load()
    except ConvertError:
        raise
    except Exception as e:  # EOFError, UnpicklingError, bad opcodes, ...
        raise ConvertError("%s: corrupt or truncated pickle: %s: %s"
                           % (path, type(e).__name__, e)) from None


def _load_torch_zip(path):
    """torch.save zip format: <folder>/data.pkl + <folder>/data/<key> files."""
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as e:
        raise ConvertError("%s: corrupt or truncated zip file: %s" % (path, e)) from None
    with zf:
        pickles = [n for n in zf.namelist()
                   if n == "data.pkl" or (n.endswith("/data.pkl") and n.count("/") == 1)]
        if len(pickles) != 1:
            raise ConvertError("%s: zip file is not a PyTorch checkpoint "
                               "(no <folder>/data.pkl entry)" % path)
        prefix = pickles[0][:-len("data.pkl")]
        byteorder = "little"
        if prefix + "byteorder" in zf.namelist():  # written by torch >= 2.1
            byteorder = zf.read(prefix + "byteorder").decode("ascii", "replace").strip()
            if byteorder not in ("little", "big"):
                raise ConvertError("%s: unknown byteorder %r" % (path, byteorder))

        storages = {}

        def load_storage(stype, key, numel, view):
            if key not in storages:
                s = _Storage(stype, key, numel)
                try:
                    raw = zf.read(prefix + "data/" + key)
                except KeyError:
                    raise ConvertError("%s: storage file %sdata/%s is missing"
                                       % (path, prefix, key)) from None
                except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as e:
                    raise ConvertError("%s: corrupt zip file (storage %s): %s"
                                       % (path, key, e)) from None
                s.set_bytes(raw, byteorder)
                storages[key] = s
            return storages[key]

        try:
            pkl = zf.read(pickles[0])
        except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as e:
            raise ConvertError("%s: corrupt zip file: %s" % (path, e)) from None
        return _unpickle(path, pkl, load_storage)


# torch/serialization.py constants of the legacy format
_LEGACY_MAGIC = 0x1950a86a20f9469cfc6c
_LEGACY_PROTOCOL = 1001


def _load_torch_legacy(path, data):
    """Legacy torch.save format: five pickles, then the raw storages."""
    f = io.BytesIO(data)

    def next_pickle(load_storage=None):
        try:
            return _RestrictedUnpickler(f, load_storage).load()
        except ConvertError:
            raise
        except Exception as e:
            raise ConvertError("%s: corrupt or truncated checkpoint: %s: %s"
                               % (path, type(e).__name__, e)) from None

    if next_pickle() != _LEGACY_MAGIC:
        raise ConvertError("%s: a pickle, but not a PyTorch checkpoint "
                           "(wrong magic number)" % path)
    if next_pickle() != _LEGACY_PROTOCOL:
        raise ConvertError("%s: unsupported legacy checkpoint protocol" % path)
    next_pickle()  # sys_info: endianness and C type sizes; storages are little-endian

    storages = {}

    def load_storage(stype, key, numel, view):
        root = storages.setdefault(key, _Storage(stype, key, numel))
        if view is None:
            return root
        # (view_key, offset, size): a slice of the root storage, in elements
        if not (isinstance(view, tuple) and len(view) == 3
                and all(isinstance(v, int) for v in view[1:])):
            raise ConvertError("%s: malformed storage view record" % path)
        return _StorageView(root, view[1], view[2])

    obj = next_pickle(load_storage)
    keys = next_pickle()
    if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
        raise ConvertError("%s: malformed storage key list" % path)
    for key in keys:
        if key not in storages:
            raise ConvertError("%s: storage %s is not used by any tensor" % (path, key))
        s = storages[key]
        head = f.read(8)
        if len(head) != 8:
            raise ConvertError("%s: truncated checkpoint (storage %s missing)" % (path, key))
        (numel,) = struct.unpack("<q", head)
        if numel != s.numel:
            raise ConvertError("%s: storage %s has %d elements, expected %d"
                               % (path, key, numel, s.numel))
        s.set_bytes(f.read(numel * s.stype.dtype.itemsize))
    return obj


def _state_dict_tensors(obj, path):
    """A unpickled checkpoint -> OrderedDict name -> (numpy array, dtype name)."""
    if not isinstance(obj, dict):
        raise ConvertError("%s: not a state_dict (the checkpoint holds a %s)"
                           % (path, type(obj).__name__))
    out = collections.OrderedDict()
    for name, value in obj.items():
        if not isinstance(name, str):
            raise ConvertError("%s: not a state_dict (key %r)" % (path, name))
        if not isinstance(value, _Tensor):
            raise ConvertError("%s: entry '%s' is a %s, not a tensor"
                               % (path, name, type(value).__name__))
        out[name] = (value.materialize(), value.dtype_name)
    return out


# ===========================================================================
# ONNX

def _onnx_toposort(graph, path):
    """The graph's nodes in topological order (ties keep file order)."""
    nodes = list(graph.node)
    producer = {}
    for i, n in enumerate(nodes):
        for o in n.output:
            producer[o] = i
    deps = [set() for _ in nodes]
    users = [[] for _ in nodes]
    for i, n in enumerate(nodes):
        for name in n.input:
            j = producer.get(name)
            if j is not None and j != i and j not in deps[i]:
                deps[i].add(j)
                users[j].append(i)
    ready = [i for i in range(len(nodes)) if not deps[i]]
    heapq.heapify(ready)
    order = []
    while ready:
        i = heapq.heappop(ready)
        order.append(nodes[i])
        for u in users[i]:
            deps[u].discard(i)
            if not deps[u]:
                heapq.heappush(ready, u)
    if len(order) != len(nodes):
        raise ConvertError("%s: the ONNX graph has a cycle" % path)
    return order


def _load_onnx(path):
    """ONNX model -> OrderedDict pytorch-name -> (array, origin description)."""
    try:
        import onnx
        from onnx import numpy_helper
    except ImportError:
        raise ConvertError("reading .onnx files needs the onnx Python package "
                           "(Debian: apt install python3-onnx)") from None
    try:
        model = onnx.load(str(path))
    except Exception as e:
        raise ConvertError("%s: not a readable ONNX model: %s" % (path, e)) from None
    graph = model.graph
    nodes = _onnx_toposort(graph, path)

    # Constant values by name: initializers, Constant node outputs, and the
    # outputs of Identity and Cast nodes applied to one of those (fp16 exports
    # store fp16 initializers and Cast them to float before the Conv; we
    # convert to float32 anyway).
    consts = {init.name: (init, "initializer '%s'" % init.name) for init in graph.initializer}
    for n in nodes:
        if n.op_type == "Constant" and len(n.output) == 1:
            for a in n.attribute:
                if a.name == "value":
                    consts[n.output[0]] = (a.t, "Constant node output '%s'" % n.output[0])
                elif a.name in ("value_float", "value_floats"):
                    vals = [a.f] if a.name == "value_float" else list(a.floats)
                    consts[n.output[0]] = (np.array(vals, dtype=np.float32),
                                           "Constant node output '%s'" % n.output[0])
        elif (n.op_type in ("Identity", "Cast") and n.input and n.output
              and n.input[0] in consts):
            t, origin = consts[n.input[0]]
            consts[n.output[0]] = (t, "%s via %s" % (origin, n.op_type))

    def value(node, idx, role):
        if idx >= len(node.input) or not node.input[idx]:
            raise ConvertError("%s: %s node '%s' has no %s input"
                               % (path, node.op_type, node.name, role))
        name = node.input[idx]
        if name not in consts:
            raise ConvertError("%s: %s of %s node '%s' ('%s') is not a constant"
                               % (path, role, node.op_type, node.name, name))
        t, origin = consts[name]
        try:
            a = t if isinstance(t, np.ndarray) else numpy_helper.to_array(t)
        except Exception as e:
            raise ConvertError("%s: cannot decode %s: %s" % (path, origin, e)) from None
        if a.dtype.kind != "f":
            raise ConvertError("%s: %s has non-float type %s" % (path, origin, a.dtype))
        return np.asarray(a, dtype=np.float32), origin

    def attr(node, name, default):
        for a in node.attribute:
            if a.name == name:
                return onnx.helper.get_attribute_value(a)
        return default

    convs = [n for n in nodes if n.op_type == "Conv"]
    norms = [n for n in nodes if n.op_type == "InstanceNormalization"]
    nconv = len(convs)
    if nconv < 8 or nconv % 2:
        raise ConvertError("%s: %d Conv nodes: not a TransformerNet "
                           "(needs 3 + 2 x residual blocks + 3)" % (path, nconv))
    if len(norms) != nconv - 1:
        raise ConvertError("%s: %d InstanceNormalization nodes for %d Conv nodes: "
                           "not a TransformerNet (needs one after every Conv but the "
                           "last)" % (path, len(norms), nconv))
    blocks = (nconv - 6) // 2
    conv_names, norm_names = transformer_net_layers(blocks)

    out = collections.OrderedDict()
    for i, (node, layer) in enumerate(zip(convs, conv_names)):
        # The stride is not stored in the .safetensors file: it is implied by
        # the architecture, so a graph with other strides is another network.
        want_stride = 2 if i in (1, 2) else 1
        strides = list(attr(node, "strides", [1, 1]))
        if strides != [want_stride] * 2:
            raise ConvertError("%s: Conv node '%s' (%s) has strides %s, a TransformerNet "
                               "has %d" % (path, node.name, layer, strides, want_stride))
        if attr(node, "group", 1) != 1 or any(d != 1 for d in attr(node, "dilations", [])):
            raise ConvertError("%s: Conv node '%s' (%s) is grouped or dilated: not a "
                               "TransformerNet" % (path, node.name, layer))
        out[layer + ".conv.weight"] = value(node, 1, "weight")
        out[layer + ".conv.bias"] = value(node, 2, "bias")
    for node, layer in zip(norms, norm_names):
        eps = attr(node, "epsilon", 1e-5)
        if abs(eps - 1e-5) > 1e-8:
            raise ConvertError("%s: InstanceNormalization node '%s' (%s) has epsilon %g; "
                               "stylize uses 1e-5" % (path, node.name, layer, eps))
        out[layer + ".weight"] = value(node, 1, "scale")
        out[layer + ".bias"] = value(node, 2, "B")
    return out


# ===========================================================================
# The TransformerNet layout and its validation

def transformer_net_layers(blocks):
    """Conv and norm layer names of a TransformerNet with `blocks` residual blocks,
    in network order."""
    res_convs = ["res%d.conv%d" % (b, j) for b in range(1, blocks + 1) for j in (1, 2)]
    res_norms = ["res%d.in%d" % (b, j) for b in range(1, blocks + 1) for j in (1, 2)]
    convs = ["conv1", "conv2", "conv3"] + res_convs + ["deconv1", "deconv2", "deconv3"]
    norms = ["in1", "in2", "in3"] + res_norms + ["in4", "in5"]
    return convs, norms


def validate_transformer_net(tensors):
    """Check that `tensors` (name -> array) is exactly a TransformerNet.

    Any channel widths, odd first/last kernel sizes and >= 1 residual blocks are
    accepted. Returns a dict of facts (widths, blocks, kernels, parameters);
    raises ConvertError naming the offending tensor otherwise.
    """
    blocks = 0
    while "res%d.conv1.conv.weight" % (blocks + 1) in tensors:
        blocks += 1
    conv_names, norm_names = transformer_net_layers(max(blocks, 1))
    expected = [c + ".conv." + p for c in conv_names for p in ("weight", "bias")]
    expected += [n + "." + p for n in norm_names for p in ("weight", "bias")]
    for name in expected:
        if name not in tensors:
            raise ConvertError("missing tensor '%s': not a TransformerNet" % name)
    for name in tensors:
        if name not in expected:
            raise ConvertError("unexpected tensor '%s': not a TransformerNet" % name)
    for name in expected:
        a = tensors[name]
        if a.dtype.kind != "f":
            raise ConvertError("tensor '%s' has non-float dtype %s" % (name, a.dtype))
        if not np.isfinite(a).all():
            raise ConvertError("tensor '%s' contains NaN or Inf" % name)

    def shape(name):
        return tuple(tensors[name].shape)

    def check(name, want, what):
        if shape(name) != want:
            raise ConvertError("tensor '%s' has shape %s, expected %s"
                               % (name, shape(name), what))

    def conv(layer, c_in, square=None):
        """Check a conv's weight and bias; return (out channels, kernel size)."""
        w = layer + ".conv.weight"
        s = shape(w)
        if (len(s) != 4 or s[0] < 1 or s[1] != c_in or s[2] != s[3]
                or (square is not None and s[2] != square) or s[2] % 2 == 0):
            k = str(square) if square is not None else "k"
            raise ConvertError("tensor '%s' has shape %s, expected (C, %d, %s, %s)%s"
                               % (w, s, c_in, k, k,
                                  "" if square is not None else " with k odd"))
        check(layer + ".conv.bias", (s[0],), "(%d,)" % s[0])
        return s[0], s[2]

    def norm(layer, c):
        for p in ("weight", "bias"):
            check(layer + "." + p, (c,), "(%d,) like the conv before it" % c)

    c1, k_in = conv("conv1", 3)
    norm("in1", c1)
    c2, _ = conv("conv2", c1, 3)
    norm("in2", c2)
    c3, _ = conv("conv3", c2, 3)
    norm("in3", c3)
    for b in range(1, blocks + 1):
        for j in (1, 2):
            c, _ = conv("res%d.conv%d" % (b, j), c3, 3)
            if c != c3:
                check("res%d.conv%d.conv.weight" % (b, j), (c3, c3, 3, 3),
                      "(%d, %d, 3, 3)" % (c3, c3))
            norm("res%d.in%d" % (b, j), c3)
    d2, _ = conv("deconv1", c3, 3)
    norm("in4", d2)
    d1, _ = conv("deconv2", d2, 3)
    norm("in5", d1)
    c_out, k_out = conv("deconv3", d1)
    if c_out != 3:
        check("deconv3.conv.weight", (3, d1, k_out, k_out),
              "(3, %d, %d, %d)" % (d1, k_out, k_out))
    return {"widths": (c1, c2, c3), "decoder_widths": (d2, d1), "blocks": blocks,
            "kernels": (k_in, k_out),
            "parameters": int(sum(tensors[n].size for n in expected))}


# ===========================================================================
# Driver

def load_model(path):
    """Read any supported input.

    Returns (OrderedDict name -> (array, note), format description, metadata);
    metadata is the input's own __metadata__ for a .safetensors input, else {}.
    """
    path = Path(path)
    if not path.exists():
        raise ConvertError("%s: no such file" % path)
    if not path.is_file():
        raise ConvertError("%s: not a regular file" % path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise ConvertError("%s: cannot read: %s" % (path, e.strerror or e)) from None
    if not data:
        raise ConvertError("%s: empty file" % path)

    if data[:4] == b"PK\x03\x04":
        return _state_dict_tensors(_load_torch_zip(path), path), "torch zip", {}
    # safetensors before the pickle test: its u64 header length may well start
    # with byte 0x80, but a torch pickle never has '{' at offset 8 (that byte
    # is inside the magic number).
    if len(data) >= 9 and data[8:9] == b"{":
        try:
            tensors, metadata = st.read(path)
        except ValueError as e:
            raise ConvertError(str(e)) from None
        return (collections.OrderedDict((k, (v, "float32")) for k, v in tensors.items()),
                "safetensors", metadata)
    if data[:1] == b"\x80":  # pickle protocol >= 2 opcode: the legacy torch format
        return (_state_dict_tensors(_load_torch_legacy(path, data), path), "torch legacy",
                {})
    # An ONNX file is a protobuf ModelProto, which starts with field 1
    # (ir_version, varint): tag byte 0x08.
    if path.suffix.lower() == ".onnx" or data[:1] == b"\x08":
        return _load_onnx(path), "onnx", {}
    raise ConvertError("%s: not a recognized model file (expected a PyTorch .pth "
                       "state_dict, an .onnx model or a .safetensors file)" % path)


def prepare_tensors(loaded):
    """The tensors to convert, as name -> float32 array, under stylize's names.

    Drops the unused norm buffers (running_mean, ...), strips a DataParallel
    'module.' prefix, and renames the upstream pytorch/examples conv names:
    its ConvLayer holds the conv as `conv2d` (conv1.conv2d.weight) where stylize
    names it `conv` (conv1.conv.weight).
    """
    names = [n for n in loaded if not n.endswith(DROPPED_SUFFIXES)]
    strip = "module." if names and all(n.startswith("module.") for n in names) else ""
    out = {}
    for n in names:
        new = n[len(strip):]
        for p in ("weight", "bias"):
            if new.endswith(".conv2d." + p):
                new = new[:-len("conv2d." + p)] + "conv." + p
        if new in out:
            raise ConvertError("tensor '%s' appears twice (as '%s' too)" % (new, n))
        a = loaded[n][0]
        if a.dtype.kind != "f":
            raise ConvertError("tensor '%s' has non-float dtype %s" % (n, a.dtype))
        out[new] = np.ascontiguousarray(a, dtype=np.float32)
    return out


def _describe(a):
    return str(tuple(int(d) for d in a.shape))


def cmd_list(path):
    loaded, fmt, metadata = load_model(path)
    print("# %s: %s, %d tensors" % (path, fmt, len(loaded)))
    for key, val in sorted(metadata.items()):
        print("# metadata %s: %s" % (key, val))
    for name, (a, note) in loaded.items():
        print("%-28s %-18s %s" % (name, _describe(a), note))
    try:
        info = validate_transformer_net(prepare_tensors(loaded))
        print("# TransformerNet: widths %s, decoder %s, %d residual blocks, kernels %s, "
              "%d parameters" % (info["widths"], info["decoder_widths"], info["blocks"],
                                 info["kernels"], info["parameters"]))
    except ConvertError as e:
        print("# not convertible: %s" % e)
    return 0


def cmd_convert(args):
    src, dst = Path(args.input), Path(args.output)
    extra = parse_meta(args.meta)
    if not src.exists():
        raise ConvertError("%s: no such file" % src)
    if dst.exists() and not args.force:
        raise ConvertError("%s exists (use --force to overwrite)" % dst)
    if dst.exists() and not dst.is_file():
        raise ConvertError("%s is not a regular file" % dst)
    folder = dst.resolve().parent
    if not folder.is_dir():
        raise ConvertError("output folder %s does not exist" % folder)

    loaded, _, old = load_model(src)
    tensors = prepare_tensors(loaded)
    info = validate_transformer_net(tensors)

    def pick(given, key, default):
        # explicit option > the input's own metadata (re-conversion) > default
        if given is not None:
            return given
        return old.get(key, default) if old.get("format") == "stylize" else default

    metadata = {
        "format": "stylize",
        "format_version": FORMAT_VERSION,
        "architecture": "transformer_net",
        "style": pick(args.style, "style", src.stem),
        "source": pick(args.source, "source", src.name),
        "license": pick(args.license, "license", "unknown"),
        "converted_by": "tools/convert_model.py",
        "dtype": args.dtype,
    }
    # descriptive entries (copyright, origin, training, ...): a re-converted
    # file keeps its own, --meta adds or replaces
    if old.get("format") == "stylize":
        for key, val in old.items():
            metadata.setdefault(key, val)
    metadata.update(extra)
    try:
        st.write(dst, tensors, metadata, dtype=DTYPES[args.dtype])
    except ValueError as e:  # e.g. a weight that does not fit in fp16
        raise ConvertError(str(e)) from None
    print("%s -> %s: %d tensors, %d parameters, %d residual blocks, widths %s, %s"
          % (src, dst, len(tensors), info["parameters"], info["blocks"],
             "/".join(map(str, info["widths"])), args.dtype), file=sys.stderr)
    return 0


# Metadata keys the converter owns: they describe the file, not the model.
RESERVED_META = ("format", "format_version", "architecture", "converted_by", "dtype")


def parse_meta(items):
    """--meta KEY=VALUE options -> dict; refuses malformed and reserved keys."""
    out = {}
    for item in items:
        key, eq, val = item.partition("=")
        if not eq or not key or key != key.strip():
            raise ConvertError("--meta %r: expected KEY=VALUE" % item)
        if key in RESERVED_META:
            raise ConvertError("--meta %s: this key is set by the converter" % key)
        if key in ("style", "source", "license"):
            raise ConvertError("--meta %s: use --%s" % (key, key))
        out[key] = val
    return out


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # usage errors exit 1 too, in our message format
        self.print_usage(sys.stderr)
        sys.stderr.write("%s: %s\n" % (PROG, message))
        sys.exit(1)


def build_parser():
    p = _Parser(
        prog="convert_model.py",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Convert a fast-neural-style TransformerNet (pytorch/examples "
                    "layout) to the .safetensors file that the stylize filter loads.",
        epilog="""inputs (detected from the content):
  .pth   a pytorch/examples state_dict, torch.save zip format or the legacy
         (pre-1.6) pickle format; read with a restricted unpickler that refuses
         any pickled object but tensors, so untrusted files are safe, and
         without importing torch. running_mean / running_var /
         num_batches_tracked buffers are dropped, upstream's conv names
         (conv1.conv2d.weight) become conv1.conv.weight, and a DataParallel
         "module." prefix is removed.
  .onnx  an ONNX export (e.g. the ONNX model zoo's fast_neural_style opset 8/9
         models; needs python3-onnx). Weights are matched to layers by graph
         order, whatever the initializer names: the Conv nodes in order are
         conv1, conv2, conv3, res1.conv1, res1.conv2, ..., deconv1..3, the
         InstanceNormalization nodes in1, in2, in3, res1.in1, ..., in4, in5.
  .safetensors  a file in this format (to change its dtype or metadata; its
         metadata entries are kept unless given again).

The result must be a TransformerNet: any channel widths, any number (>= 1) of
residual blocks, odd first/last kernel sizes. The output holds the tensors
under stylize's names (conv1.conv.weight, in1.weight, res1.in2.bias, ...) and
__metadata__ format=stylize, format_version=1, architecture=transformer_net,
style, source, license, converted_by, dtype, and any --meta entries.

exit status: 0 on success, 1 on any error (message on stderr); on error no
output file is written, and an existing output is never replaced without
--force.

examples:
  tools/convert_model.py candy.pth -o models/candy.safetensors --dtype fp16 \\
      --source "pytorch/examples fast_neural_style" --license BSD-3-Clause
  tools/convert_model.py mosaic-9.onnx -o models/mosaic.safetensors --style mosaic
  tools/convert_model.py --list candy.pth""")
    p.add_argument("input", help="model to convert (.pth, .onnx or .safetensors)")
    p.add_argument("-o", "--output", metavar="OUT.safetensors",
                   help="file to write (required unless --list)")
    p.add_argument("--dtype", choices=sorted(DTYPES), default="fp32",
                   help="storage type of the weights: fp32 (default, exact), fp16 "
                        "or bf16 (half the size; rounded to nearest even; a weight "
                        "that would overflow fp16 is an error)")
    p.add_argument("--style", metavar="NAME",
                   help="style name stored in the metadata (default: the input "
                        "file name without its extension)")
    p.add_argument("--source", metavar="TEXT",
                   help="where the weights come from (default: the input file name)")
    p.add_argument("--license", metavar="TEXT",
                   help="licence of the weights (default: unknown)")
    p.add_argument("--meta", metavar="KEY=VALUE", action="append", default=[],
                   help="another metadata entry, e.g. copyright=... or origin=... "
                        "(repeatable; replaces the input's own entry of that key)")
    p.add_argument("--force", action="store_true",
                   help="overwrite OUT if it exists (atomically)")
    p.add_argument("--list", action="store_true",
                   help="print the input's tensor names and shapes (and for ONNX "
                        "the initializer each maps from), then exit; writes nothing")
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        if args.list:
            return cmd_list(args.input)
        if not args.output:
            raise ConvertError("no output file: give -o OUT.safetensors (or --list)")
        return cmd_convert(args)
    except ConvertError as e:
        msg = str(e)
    except BrokenPipeError:  # --list piped into head
        return 1
    except MemoryError:
        msg = "out of memory (corrupt input?)"
    except OSError as e:
        msg = "%s%s" % (e.strerror or e, ": %s" % e.filename if e.filename else "")
    except Exception as e:  # a malformed input we did not anticipate
        msg = "%s: %s: %s" % (args.input, type(e).__name__, e)
    sys.stderr.write("%s: %s\n" % (PROG, msg))
    return 1


if __name__ == "__main__":
    sys.exit(main())
