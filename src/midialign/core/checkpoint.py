"""Reading midialign checkpoints without torch.

A checkpoint is what training.model.save_checkpoint writes with torch.save: a zip holding
``<prefix>/data.pkl`` (a pickle of {format_version, configs, state_dict[, extra]}), one file
``<prefix>/data/<key>`` of raw bytes per tensor storage and ``<prefix>/byteorder``.
read_checkpoint unpickles data.pkl with an Unpickler that resolves only the few globals a
state_dict of plain tensors uses, and rebuilds each tensor as a numpy array. Anything else
(code, other classes, the legacy non-zip format) is refused, as torch.load(weights_only=True) would.
"""
from __future__ import annotations

import hashlib
import io
import pickle
import zipfile
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from ..config import DEFAULT_WEIGHTS
from ..errors import InputError

FORMAT_VERSION = 1

# torch's storage classes (pickled by name, e.g. torch.FloatStorage) -> element dtype.
# BFloat16 has no numpy dtype; such a checkpoint is refused.
_STORAGE_DTYPES = {
    "FloatStorage": "f4",
    "DoubleStorage": "f8",
    "HalfStorage": "f2",
    "LongStorage": "i8",
    "IntStorage": "i4",
    "ShortStorage": "i2",
    "CharStorage": "i1",
    "ByteStorage": "u1",
    "BoolStorage": "?",
}


class _Refused(Exception):
    """Something in the pickle that a checkpoint of plain tensors never holds."""


class _OrderedDict(dict):
    """collections.OrderedDict inside the pickle: a dict keeps order too, and, being a subclass,
    takes the attributes (torch's state_dict _metadata) a pickled OrderedDict may carry."""


class _StorageType:
    """Stands in for a torch storage class inside the pickle: remembers its dtype."""

    def __init__(self, dtype: np.dtype) -> None:
        self.dtype = dtype


def _rebuild_tensor(storage: np.ndarray, offset: int, size: tuple, stride: tuple, *_unused: Any) -> np.ndarray:
    """torch._utils._rebuild_tensor_v2 for numpy: the strided view of a storage, copied contiguous.

    The remaining arguments (requires_grad, backward hooks, metadata) mean nothing here.
    """
    if not isinstance(storage, np.ndarray) or not all(isinstance(v, int) for v in (offset, *size, *stride)):
        raise _Refused("malformed tensor")
    if len(size) != len(stride) or offset < 0 or min((*size, *stride, 0)) < 0:
        raise _Refused("malformed tensor")
    if any(n == 0 for n in size):
        return np.zeros(size, storage.dtype)
    last = offset + sum((n - 1) * s for n, s in zip(size, stride))
    if last >= storage.size:  # as_strided would read past the storage
        raise _Refused("tensor outside its storage")
    view = np.lib.stride_tricks.as_strided(storage[offset:], shape=size, strides=[s * storage.itemsize for s in stride])
    return np.array(view, dtype=storage.dtype.newbyteorder("="), order="C")


class _Unpickler(pickle.Unpickler):
    """Resolves only collections.OrderedDict, torch._utils._rebuild_tensor_v2 and torch.*Storage."""

    def __init__(self, data: bytes, *, archive: zipfile.ZipFile, prefix: str, byteorder: str) -> None:
        super().__init__(io.BytesIO(data))
        self._archive = archive
        self._prefix = prefix
        self._byteorder = byteorder
        self._storages: dict[str, np.ndarray] = {}

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == ("collections", "OrderedDict"):
            return _OrderedDict
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _rebuild_tensor
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(np.dtype(_STORAGE_DTYPES[name]).newbyteorder(self._byteorder))
        raise _Refused(f"global {module}.{name} refused")

    def persistent_load(self, pid: Any) -> np.ndarray:
        # ('storage', storage type, key, location, number of elements)
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage" and isinstance(pid[1], _StorageType)):
            raise _Refused("unknown persistent id")
        dtype, key, numel = pid[1].dtype, str(pid[2]), pid[4]
        if key not in self._storages:
            raw = self._archive.read(f"{self._prefix}/data/{key}")
            if not isinstance(numel, int) or len(raw) < numel * dtype.itemsize:
                raise _Refused(f"storage {key} is truncated")
            self._storages[key] = np.frombuffer(raw, dtype=dtype, count=numel)
        return self._storages[key]


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """The unpickled payload of a torch.save zip, tensors as numpy arrays (native byte order, C order).

    Raises InputError "<path>: not a midialign checkpoint (...)" for anything that is not such a zip
    of plain containers and tensors. Checks no keys: load_model does.
    """
    path = Path(path)
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
            pkl = [n for n in names if n.count("/") == 1 and n.endswith("/data.pkl")]
            if len(pkl) != 1:
                raise _Refused("no data.pkl")
            prefix = pkl[0].split("/")[0]
            order = "little"
            if f"{prefix}/byteorder" in names:
                order = archive.read(f"{prefix}/byteorder").decode("ascii").strip()
            if order not in ("little", "big"):
                raise _Refused(f"byte order {order!r}")
            unpickler = _Unpickler(archive.read(pkl[0]), archive=archive, prefix=prefix,
                                   byteorder="<" if order == "little" else ">")
            return unpickler.load()
    except _Refused as exc:
        raise InputError(f"{path}: not a midialign checkpoint ({exc})") from None
    except (OSError, zipfile.BadZipFile, KeyError, EOFError, ValueError, TypeError, AttributeError, IndexError,
            UnicodeDecodeError, pickle.UnpicklingError, RecursionError) as exc:
        raise InputError(f"{path}: not a midialign checkpoint ({type(exc).__name__})") from None


def file_sha256(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def default_weights_path() -> Path:
    """The shipped model, a file in the package's weights/ folder."""
    return Path(str(resources.files("midialign") / "weights" / DEFAULT_WEIGHTS))
