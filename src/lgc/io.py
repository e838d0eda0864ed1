"""lgc.save / lgc.load: networks in a versioned, code-free file (docs/networks.md, "File format").

The file is a zip archive (stored, not compressed) holding `manifest.json` (format name and
version, the layers as class name + properties, the connections, the parameter table), one
`.npy` file per array (`np.save` with `allow_pickle=False`) and `manifest.sha256`, the SHA-256
of the manifest bytes; the manifest holds the SHA-256 of every array file. Nothing in the file
is ever executed or unpickled: a layer class is looked up by name among the Layer classes this
process has already imported. Writes go to a temporary file in the target directory, which
replaces `path` only once it is complete (`os.replace`), so a crash mid-save never leaves a
half-written file at `path`.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tempfile
import zipfile

import numpy as np

from . import layers as _layers  # noqa: F401  (registers the MATLAB layer classes)
from .dlarray import DLArray, dlarray
from .errors import LgcError
from .layers.base import Layer
from .table import Table

FORMAT = "lgc-network"
VERSION = 1
MANIFEST = "manifest.json"
CHECKSUM = "manifest.sha256"


class NetworkFileError(LgcError):
    """A network cannot be saved (it holds code) or a file cannot be loaded (not an lgc
    network file, truncated, modified, or written by a newer lgc)."""


# --- encoding ----------------------------------------------------------------------------------


class _Writer:
    def __init__(self):
        self.arrays: list[tuple[str, bytes]] = []
        self.hashes: dict[str, str] = {}

    def array(self, a: np.ndarray) -> str:
        name = f"arrays/{len(self.arrays)}.npy"
        buf = io.BytesIO()
        np.save(buf, np.asarray(a), allow_pickle=False)
        data = buf.getvalue()
        self.arrays.append((name, data))
        self.hashes[name] = hashlib.sha256(data).hexdigest()
        return name

    def value(self, v, where: str):
        """A property as JSON; arrays go to their own files."""
        if v is None or isinstance(v, bool | str):
            return v
        if type(v) in (int, float):
            return v
        if isinstance(v, np.generic):
            return {"__scalar__": self.array(np.asarray(v))}
        if isinstance(v, DLArray):
            if v.is_traced:
                raise NetworkFileError(f"save: {where} is a traced dlarray; save the network "
                                       f"outside dlfeval")
            return {"__dlarray__": self.array(v._data), "fmt": v.fmt}
        if isinstance(v, np.ndarray):
            if v.dtype.kind not in "biuf":
                raise NetworkFileError(f"save: {where} is an array of dtype {v.dtype}, which "
                                       f"the network file format cannot hold")
            return {"__array__": self.array(v)}
        if isinstance(v, tuple):
            return {"__tuple__": [self.value(x, where) for x in v]}
        if isinstance(v, list):
            return [self.value(x, where) for x in v]
        if isinstance(v, dict) and all(isinstance(k, str) for k in v):
            return {"__dict__": {k: self.value(x, f"{where}[{k!r}]") for k, x in v.items()}}
        if callable(v):
            raise NetworkFileError(
                f"save: {where} is Python code ({getattr(v, '__name__', type(v).__name__)}); "
                f"the network file format holds data only, so networks with functionLayer or "
                f"function-handle options cannot be saved. Replace it with a built-in layer or "
                f"option, or save the Learnables with numpy and rebuild the network in code")
        raise NetworkFileError(f"save: {where} is a {type(v).__name__}, which the network "
                               f"file format cannot hold")


def _layer_classes() -> dict[str, type]:
    out, todo = {}, [Layer]
    while todo:
        cls = todo.pop()
        out[f"{cls.__module__}.{cls.__qualname__}"] = cls
        todo.extend(cls.__subclasses__())
    return out


def _class_id(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def save(path, net) -> None:
    """lgc.save(path, net) — write a DLNetwork (or LayerGraph) to exactly `path`.

    The file is lgc's network format (docs/networks.md): JSON + .npy arrays in a zip, no
    pickle, with SHA-256 checksums; it is written atomically. A network holding Python code
    (functionLayer, a callable initializer or normalization) raises NetworkFileError.

    MATLAB difference: MATLAB saves a network into a .mat file with `save`; lgc writes a
    portable file of its own and adds no extension to `path`.
    """
    from .dlnetwork import DLNetwork
    from .network import LayerGraph

    if isinstance(net, DLNetwork):
        lg, kind = net._arch.lg, "dlnetwork"
    elif isinstance(net, LayerGraph):
        lg, kind = net, "layerGraph"
    else:
        raise NetworkFileError(f"save: expected a dlnetwork or a LayerGraph, got "
                               f"{type(net).__name__}")
    w = _Writer()
    layers = []
    for name in lg.graph.nodes:
        la = lg._layer(name)
        layers.append({"class": _class_id(type(la)),
                       "properties": {k: w.value(v, f"layer {name!r} property {k}")
                                      for k, v in vars(la).items()}})
    manifest = {"format": FORMAT, "version": VERSION, "kind": kind, "layers": layers,
                "connections": [list(e) for e in lg._edges()]}
    if kind == "dlnetwork":
        manifest["initialized"] = net.Initialized
        for key, table in (("learnables", net.Learnables), ("state", net.State)):
            manifest[key] = [[la, pa, w.value(v, f"{key} {la}/{pa}")]
                             for la, pa, v in table]
    manifest["arrays"] = w.hashes
    data = json.dumps(manifest, indent=1, allow_nan=True).encode()
    write_zip_atomically(os.fspath(path), [(MANIFEST, data),
                                           (CHECKSUM, hashlib.sha256(data).hexdigest()),
                                           *w.arrays])


def write_zip_atomically(path: str, entries) -> None:
    """A stored (uncompressed) zip of the (name, data) `entries` at `path`, written to a
    temporary file beside it, flushed to disk and renamed over `path`: a reader (or a crash)
    never sees a partial file."""
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{os.path.basename(path)}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            with zipfile.ZipFile(f, "w", zipfile.ZIP_STORED) as z:
                for name, data in entries:
                    z.writestr(name, data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


# --- decoding ----------------------------------------------------------------------------------


class _Reader:
    def __init__(self, z: zipfile.ZipFile, hashes: dict[str, str], path: str):
        self.z, self.hashes, self.path = z, hashes, path

    def array(self, name: str) -> np.ndarray:
        if name not in self.hashes:
            raise NetworkFileError(f"load: {self.path}: array {name!r} is not listed in the "
                                   f"manifest; the file was modified")
        data = _read(self.z, name, self.path)
        if hashlib.sha256(data).hexdigest() != self.hashes[name]:
            raise NetworkFileError(f"load: {self.path}: checksum mismatch for {name}; the file "
                                   f"was modified or damaged")
        try:
            return np.load(io.BytesIO(data), allow_pickle=False)
        except ValueError as e:
            raise NetworkFileError(f"load: {self.path}: {name} is not a plain array: "
                                   f"{e}") from None

    def value(self, v):
        if isinstance(v, list):
            return [self.value(x) for x in v]
        if not isinstance(v, dict):
            return v
        if "__array__" in v:
            return self.array(v["__array__"])
        if "__scalar__" in v:
            return self.array(v["__scalar__"])[()]
        if "__dlarray__" in v:
            return dlarray(self.array(v["__dlarray__"]), v.get("fmt", ""))
        if "__tuple__" in v:
            return tuple(self.value(x) for x in v["__tuple__"])
        if "__dict__" in v:
            return {k: self.value(x) for k, x in v["__dict__"].items()}
        raise NetworkFileError(f"load: {self.path}: unknown value encoding {sorted(v)}")


def _read(z: zipfile.ZipFile, name: str, path: str) -> bytes:
    try:
        return z.read(name)
    except KeyError:
        raise NetworkFileError(f"load: {path}: the file has no {name!r}; it is truncated or "
                               f"not an lgc network file") from None
    except (zipfile.BadZipFile, OSError, EOFError) as e:
        raise NetworkFileError(f"load: {path}: {name} cannot be read ({e}); the file is "
                               f"damaged or was modified") from None


def load(path):
    """net = lgc.load(path) — read a network written by `lgc.save` (a DLNetwork, or a
    LayerGraph if one was saved). Raises NetworkFileError for a file that is not an lgc
    network file, is truncated or modified (checksum mismatch), or comes from a newer lgc."""
    path = os.fspath(path)
    try:
        z = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, EOFError) as e:
        raise NetworkFileError(f"load: {path} is not an lgc network file, or it is truncated "
                               f"({e})") from None
    with z:
        raw = _read(z, MANIFEST, path)
        try:
            manifest = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise NetworkFileError(f"load: {path}: the manifest is not valid JSON ({e}); the "
                                   f"file is damaged or was modified") from None
        found = manifest.get("format") if isinstance(manifest, dict) else None
        if found != FORMAT:
            raise NetworkFileError(f"load: {path} is not an lgc network file (format "
                                   f"{found!r}, expected {FORMAT!r})")
        version = manifest.get("version")
        if not isinstance(version, int) or version > VERSION:
            raise NetworkFileError(f"load: {path} has network file format version {version!r}, "
                                   f"written by a newer lgc; this lgc reads versions up to "
                                   f"{VERSION}. Upgrade lgc to load it")
        stored = _read(z, CHECKSUM, path).decode(errors="replace").strip()
        if hashlib.sha256(raw).hexdigest() != stored:
            raise NetworkFileError(f"load: {path}: checksum mismatch for the manifest; the "
                                   f"file was modified or damaged")
        try:
            return _build(manifest, _Reader(z, manifest["arrays"], path))
        except (KeyError, TypeError, ValueError, IndexError) as e:
            raise NetworkFileError(f"load: {path}: the manifest is inconsistent "
                                   f"({type(e).__name__}: {e})") from None


def _build(manifest: dict, r: _Reader):
    from .analysis import structure
    from .dlnetwork import DLNetwork, _Arch, _raise_errors
    from .network import LayerGraph

    classes = _layer_classes()
    lg = LayerGraph()
    for entry in manifest["layers"]:
        cls = classes.get(entry["class"])
        if cls is None:
            raise NetworkFileError(f"load: {r.path}: layer class {entry['class']!r} is not "
                                   f"available; import the module that defines it first")
        la = cls.__new__(cls)
        la.__dict__.update({k: r.value(v) for k, v in entry["properties"].items()})
        lg.graph.add_node(la.Name, layer=la)
    for s, sp, t, tp in manifest["connections"]:
        lg._connect(s, sp, t, tp)
    if manifest["kind"] == "layerGraph":
        return lg
    issues: list = []
    plan = structure(lg, issues, None, need_inputs=False)
    _raise_errors("load", issues)
    tables = []
    for key in ("learnables", "state"):
        rows = manifest[key]
        values = [r.value(v) for _, _, v in rows]
        tables.append(Table([la for la, _, _ in rows], [pa for _, pa, _ in rows],
                            [v if isinstance(v, DLArray) else dlarray(v) for v in values]))
    return DLNetwork(_Arch(lg, plan), tables[0], tables[1], bool(manifest["initialized"]))
