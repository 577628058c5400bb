"""One file format for every model of the library and for the forced aligner.

``model.save(path)`` writes, and ``Class.load(path)`` / :func:`pytorch_hmm.load` read, one
layout (format ``pytorch_hmm``, version 1)::

    pytorch_hmm/1\\n                            format name and format version
    {"class": "GaussianHMM", "config": {...},  the header: one line of JSON (UTF-8)
     "library_version": "0.1.0", "payload_bytes": N}\\n
    sha256 <64 hex digits>\\n                   checksum of the header line and the payload
    <payload>                                  N bytes: torch.save({"state_dict": ...,
                                               "extra": ...})

- ``config`` is ``model.get_config()``: the constructor arguments as plain JSON data (dtypes
  as strings, e.g. ``"float32"``), so ``Class.from_config(config)`` rebuilds the model and
  the file alone is enough to load it (``head -2 model.pt`` shows what a file holds).
- ``state_dict`` holds tensors only; ``extra`` holds plain data that are not parameters
  (what ``fit`` leaves: ``n_iter_``, ``converged``, ``log_likelihood_history``; an aligner's
  lexicon; a duration model's tables). The payload is read with
  ``torch.load(weights_only=True)``: no pickled code is ever run.
- Writes are atomic (:mod:`pytorch_hmm.io._atomic`: a temporary file in the same folder,
  fsync-ed, renamed over the target), so a failed save leaves the previous file intact.
- :func:`load_model` refuses, with an :class:`~pytorch_hmm.errors.HMMValueError` naming the
  file: a file that is not a pytorch_hmm model file; a truncated or altered one (checksum);
  a newer format version than this library reads; a class other than the one asked for
  (``GaussianHMM.load`` on an HSMM file says that the file holds an HSMM); a class this
  library does not know; a config or state dict that does not build the model; NaN
  parameters.

Files of the forced aligner's earlier formats (``pytorch_hmm.ForcedAligner/2`` with a
checksum, and the bare ``torch.save`` of format 1) still load, with a warning to re-save.

New classes take part by deriving from :class:`ModelFileMixin` and defining ``_config()``
(and, where the state is not an ``nn.Module``'s, ``_file_state`` / ``_set_file_state``).
"""

from __future__ import annotations

import hashlib
import importlib
import io
import json
import os
import re
from typing import Any, Dict, Optional, Tuple, Union

import torch

from ..errors import HMMTypeError, HMMValueError
from ._atomic import atomic_write

__all__ = [
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "ModelFileMixin",
    "load",
    "load_model",
    "read_header",
    "register_model_class",
    "save_model",
]

PathLike = Union[str, "os.PathLike[str]"]

FORMAT_NAME = "pytorch_hmm"
FORMAT_VERSION = 1
_MAGIC_RE = re.compile(rb"pytorch_hmm/(\d{1,9})\n")
_OLD_ALIGNER_MAGIC = b"pytorch_hmm.ForcedAligner/2\n"

#: The library's classes and their modules, so that a file can be loaded before its class's
#: module was imported (classes register themselves on import: see ``ModelFileMixin``).
_BUILTIN: Dict[str, str] = {
    "BaseHMM": "pytorch_hmm.models.base",
    "HMMPyTorch": "pytorch_hmm.models.base",
    "GaussianHMM": "pytorch_hmm.models.gaussian",
    "MixtureGaussianHMM": "pytorch_hmm.models.mixture",
    "HSMM": "pytorch_hmm.models.hsmm",
    "NeuralHMM": "pytorch_hmm.models.neural",
    "StreamingHMMProcessor": "pytorch_hmm.streaming.processor",
    "DurationModel": "pytorch_hmm.speech.duration",
    "ForcedAligner": "pytorch_hmm.alignment.forced.aligner",
}
_REGISTRY: Dict[str, type] = {}

#: Instance attributes saved (in ``extra``) when an object has them: what ``fit`` leaves and
#: the hmmlearn-like priors when set on the instance.
FITTED_ATTRIBUTES = (
    "n_iter_",
    "converged",
    "log_likelihood_history",
    "startprob_prior",
    "transmat_prior",
    "means_prior",
    "means_weight",
    "covars_prior",
    "covars_weight",
    "weights_prior",
)

_DTYPES = {"float32": torch.float32, "float64": torch.float64}


def register_model_class(cls: type, name: Optional[str] = None) -> type:
    """Make ``cls`` loadable under ``name`` (default: the class name for the library's own
    classes, ``module.QualName`` for others). Subclasses of :class:`ModelFileMixin` are
    registered when they are defined; only registered classes are ever built from a file."""
    if not isinstance(cls, type):
        raise HMMTypeError(f"register_model_class needs a class, got {cls!r}")
    _REGISTRY[name or _class_key(cls)] = cls
    return cls


def _class_key(cls: type) -> str:
    if cls.__module__.split(".")[0] == "pytorch_hmm":
        return cls.__name__
    return f"{cls.__module__}.{cls.__qualname__}"


def _lookup(key: str) -> Optional[type]:
    if key not in _REGISTRY and key in _BUILTIN:
        importlib.import_module(_BUILTIN[key])
    return _REGISTRY.get(key)


# -- plain data --------------------------------------------------------------------------------
def to_plain(value: Any, where: str) -> Any:
    """``value`` as JSON data: dtypes become their names (``"float32"``), tuples lists, numpy
    and 0-d tensor scalars numbers; anything else (tensors, modules, objects) raises
    ``HMMTypeError`` naming ``where``."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, torch.dtype):
        return str(value).replace("torch.", "")
    if isinstance(value, (list, tuple)):
        return [to_plain(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise HMMTypeError(f"{where} has a key {k!r} that is not a string")
            out[k] = to_plain(v, f"{where}[{k!r}]")
        return out
    item = getattr(value, "item", None)
    if callable(item) and getattr(value, "ndim", None) == 0:
        return to_plain(item(), where)
    raise HMMTypeError(
        f"{where} must be plain data (numbers, strings, lists, dicts), got a {type(value).__name__}"
    )


def dtype_from_config(value: Any, where: str = "config['dtype']") -> torch.dtype:
    """A dtype of a config: ``"float32"`` / ``"float64"`` (or a ``torch.dtype``)."""
    if isinstance(value, torch.dtype):
        return value
    if isinstance(value, str) and value.replace("torch.", "") in _DTYPES:
        return _DTYPES[value.replace("torch.", "")]
    raise HMMValueError(f"{where} must be 'float32' or 'float64', got {value!r}")


def nested_config(obj: Any, where: str) -> Dict[str, Any]:
    """``{"class": ..., "config": ...}`` of a part (e.g. a processor's model) that is itself a
    savable class; ``HMMTypeError`` naming ``where`` otherwise."""
    if not isinstance(obj, ModelFileMixin):
        raise HMMTypeError(
            f"{where} is a {type(obj).__name__}, which cannot be saved in a model file (only "
            "the library's models are)"
        )
    return {"class": _class_key(type(obj)), "config": obj.get_config()}


def build_nested(spec: Any, where: str) -> Any:
    """Inverse of :func:`nested_config`."""
    if not isinstance(spec, dict) or "class" not in spec or "config" not in spec:
        raise HMMValueError(f"{where} must be a dict with 'class' and 'config', got {spec!r}")
    cls = _lookup(str(spec["class"]))
    if cls is None:
        raise HMMValueError(f"{where}: unknown class {spec['class']!r}")
    return cls.from_config(spec["config"])


# -- the mixin ---------------------------------------------------------------------------------
class ModelFileMixin:
    """``get_config`` / ``from_config`` / ``save`` / ``load`` for a class (see the module).

    A class defines ``_config()`` (its constructor arguments, as keyword arguments); classes
    whose constructor takes objects rather than plain data override ``_config_kwargs``
    (config -> constructor keyword arguments); classes that are not ``nn.Module`` (or keep
    state outside their ``state_dict``) override ``_file_state`` / ``_set_file_state``."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        register_model_class(cls)

    # configuration ---------------------------------------------------------------------------
    def _config(self) -> Dict[str, Any]:
        raise NotImplementedError(f"{type(self).__name__} does not define _config()")

    def get_config(self) -> Dict[str, Any]:
        """The constructor arguments as plain JSON data (dtypes as strings):
        ``type(m).from_config(m.get_config())`` builds a model of the same structure (its
        parameters come from ``state_dict``, or from a file with :meth:`load`)."""
        return to_plain(self._config(), f"{type(self).__name__}.get_config()")

    @classmethod
    def _config_kwargs(cls, config: Dict[str, Any]) -> Dict[str, Any]:
        kw = dict(config)
        if "dtype" in kw:
            kw["dtype"] = dtype_from_config(kw["dtype"])
        return kw

    @classmethod
    def from_config(cls, config: Dict[str, Any]):
        """A new model from :meth:`get_config`'s dict (``HMMValueError`` naming the class for
        a config that is not a dict or has an argument the constructor does not take)."""
        if not isinstance(config, dict):
            raise HMMTypeError(
                f"{cls.__name__}.from_config needs a dict, got {type(config).__name__}"
            )
        bad = [k for k in config if not isinstance(k, str)]
        if bad:
            raise HMMValueError(f"{cls.__name__}.from_config: config keys must be strings: {bad}")
        kw = cls._config_kwargs(config)
        try:
            return cls(**kw)
        except TypeError as err:
            if isinstance(err, HMMTypeError) or "argument" not in str(err):
                raise
            raise HMMValueError(
                f"{cls.__name__}.from_config: the config does not match the constructor "
                f"({err}); keys: {sorted(config)}"
            ) from None

    # state -----------------------------------------------------------------------------------
    def _file_state(self) -> Tuple[Dict[str, torch.Tensor], Dict[str, Any]]:
        """(tensors, extra plain data) to save: the ``state_dict`` (tensors only; module
        extra states are not saved) and the :data:`FITTED_ATTRIBUTES` the object has."""
        sd = {
            k: v.detach().cpu().clone()
            for k, v in self.state_dict().items()  # type: ignore[attr-defined]
            if isinstance(v, torch.Tensor)
        }
        return sd, fitted_attributes(self)

    def _set_file_state(self, state_dict: Dict[str, torch.Tensor], extra: Dict[str, Any]) -> None:
        """Put loaded state into a freshly built object (inverse of :meth:`_file_state`)."""
        sd = dict(state_dict)
        for k, v in self.state_dict().items():  # type: ignore[attr-defined]
            if k.endswith("_extra_state") and k not in sd:
                sd[k] = v  # a module's transient extra state: the fresh one's
        self.load_state_dict(sd)  # type: ignore[attr-defined]
        set_fitted_attributes(self, extra)

    # files -----------------------------------------------------------------------------------
    def save(self, path: PathLike) -> None:
        """Write the model to ``path`` in the library's model file format (config, tensors,
        fitted attributes, a checksum), atomically: see :mod:`pytorch_hmm.io.model_file`."""
        save_model(self, path)

    @classmethod
    def load(cls, path: PathLike, map_location: Any = "cpu"):
        """The model saved at ``path`` by :meth:`save`, on ``map_location``. The file must
        hold this class or a subclass (``HMMValueError`` saying what it holds otherwise)."""
        return load_model(path, expected_class=cls, map_location=map_location)


def fitted_attributes(obj: Any) -> Dict[str, Any]:
    """The :data:`FITTED_ATTRIBUTES` set on ``obj`` (lists copied)."""
    own = vars(obj)
    out = {}
    for a in FITTED_ATTRIBUTES:
        if a in own:
            v = own[a]
            out[a] = list(v) if isinstance(v, list) else v
    return out


def set_fitted_attributes(obj: Any, extra: Dict[str, Any]) -> None:
    for a in FITTED_ATTRIBUTES:
        if a in extra:
            setattr(obj, a, extra[a])


# -- writing -----------------------------------------------------------------------------------
def _header_line(cls_key: str, config: Dict[str, Any], payload: bytes) -> bytes:
    from .. import __version__

    head = {
        "class": cls_key,
        "library_version": __version__,
        "config": config,
        "payload_bytes": len(payload),
    }
    return json.dumps(head, sort_keys=True, ensure_ascii=True).encode("ascii") + b"\n"


def save_model(obj: Any, path: PathLike) -> None:
    """Save ``obj`` (a :class:`ModelFileMixin`: every model of the library, the forced
    aligner, the duration model, the streaming processor) to ``path``, atomically."""
    if not isinstance(obj, ModelFileMixin):
        raise HMMTypeError(
            f"save_model needs a pytorch_hmm model (a ModelFileMixin), got {type(obj).__name__}"
        )
    if not isinstance(path, (str, os.PathLike)):
        raise HMMTypeError(f"path must be a file name (str or os.PathLike), got {path!r}")
    config = obj.get_config()
    sd, extra = obj._file_state()
    buf = io.BytesIO()
    torch.save({"state_dict": sd, "extra": extra}, buf)
    payload = buf.getvalue()
    header = _header_line(_class_key(type(obj)), config, payload)
    digest = hashlib.sha256(header + payload).hexdigest()
    with atomic_write(path, "wb") as f:
        f.write(b"%s/%d\n" % (FORMAT_NAME.encode("ascii"), FORMAT_VERSION))
        f.write(header)
        f.write(b"sha256 " + digest.encode("ascii") + b"\n")
        f.write(payload)


# -- reading -----------------------------------------------------------------------------------
def _read(path: PathLike) -> Tuple[str, bytes]:
    if not isinstance(path, (str, os.PathLike)):
        raise HMMTypeError(f"path must be a file name (str or os.PathLike), got {path!r}")
    name = os.fspath(path)
    if os.path.isdir(name):
        raise HMMValueError(f"{name} is a folder, not a pytorch_hmm model file")
    with open(name, "rb") as f:  # FileNotFoundError / PermissionError pass through
        return name, f.read()


def _what(expected_class: Optional[type]) -> str:
    return "pytorch_hmm model" if expected_class is None else expected_class.__name__


def _parse(name: str, data: bytes, expected_class: Optional[type]) -> Tuple[Dict[str, Any], bytes]:
    """Check a file's magic, version, header and checksum; (header dict, payload)."""
    what = _what(expected_class)
    m = _MAGIC_RE.match(data)
    if m is None:
        hint = ""
        if data.startswith(b"PK"):
            hint = (
                " (a bare torch.save file, e.g. a state dict: build the model, load_state_dict"
                "(torch.load(path)) and save() it to get a model file)"
            )
        elif data.startswith(b"pytorch_hmm/"):
            hint = " (the first line, the format version, is damaged)"
        raise HMMValueError(f"{name} is not a saved {what}{hint}")
    version = int(m.group(1))
    if version > FORMAT_VERSION:
        raise HMMValueError(
            f"{name} was written by a newer pytorch_hmm (model file format {version}; this "
            f"version reads format {FORMAT_VERSION} and older): upgrade pytorch_hmm to load it"
        )
    rest = data[m.end() :]
    header, sep1, rest = rest.partition(b"\n")
    check, sep2, payload = rest.partition(b"\n")
    if not sep1 or not sep2:
        raise HMMValueError(
            f"{name}: saved {what} truncated in its header ({len(data)} bytes): save it again"
        )
    try:
        head = json.loads(header.decode("utf-8"))
        if not isinstance(head, dict) or not isinstance(head.get("class"), str):
            raise ValueError("not a header")
        n_payload = int(head["payload_bytes"])
    except (ValueError, KeyError, TypeError, UnicodeDecodeError):
        raise HMMValueError(f"{name}: saved {what} with a damaged header") from None
    if not check.startswith(b"sha256 ") or len(check) != 7 + 64:
        raise HMMValueError(f"{name}: saved {what} with a damaged header (no sha256 line)")
    if hashlib.sha256(header + b"\n" + payload).hexdigest().encode("ascii") != check[7:]:
        if len(payload) < n_payload:
            why = f"truncated ({len(payload)} of {n_payload} payload bytes)"
        else:
            why = "altered (the content does not match the checksum it was saved with)"
        raise HMMValueError(
            f"{name}: checksum mismatch: the saved {head['class']} is {why}; save the model again"
        )
    return head, payload


def read_header(path: PathLike) -> Dict[str, Any]:
    """What a model file holds, checked but not built: ``{"format_version", "class",
    "library_version", "config", "payload_bytes"}``."""
    name, data = _read(path)
    head, _ = _parse(name, data, None)
    return {"format_version": int(_MAGIC_RE.match(data).group(1)), **head}


def _check_class(name: str, key: str, expected_class: Optional[type]) -> type:
    cls = _lookup(key)
    if cls is None:
        raise HMMValueError(
            f"{name} holds class {key}, which this library does not know (import the module "
            "that defines it, or register it with register_model_class, before loading)"
        )
    if expected_class is not None and not issubclass(cls, expected_class):
        raise HMMValueError(
            f"{name} holds class {key}, not {expected_class.__name__} (load it with "
            f"{key}.load or pytorch_hmm.load)"
        )
    return cls


def _device(map_location: Any) -> Optional[torch.device]:
    if map_location is None:
        return None
    if isinstance(map_location, (str, torch.device)):
        try:
            return torch.device(map_location)
        except (RuntimeError, ValueError) as err:
            raise HMMValueError(f"map_location: {err}") from None
    raise HMMTypeError(
        f"map_location must be a device (a str such as 'cpu' or 'cuda:0', or a torch.device) "
        f"or None, got {map_location!r}"
    )


def load_model(path: PathLike, expected_class: Optional[type] = None, map_location: Any = "cpu"):
    """The object saved at ``path`` (see the module for the format and what is refused);
    ``expected_class``: the file must hold that class or a subclass. ``map_location``: the
    device the model is moved to (None: left on the CPU)."""
    device = _device(map_location)
    name, data = _read(path)
    if _MAGIC_RE.match(data) is None:
        legacy = _load_legacy(name, data, expected_class)
        if legacy is not None:
            return _to_device(legacy, device)
    head, payload = _parse(name, data, expected_class)
    cls = _check_class(name, head["class"], expected_class)
    try:
        d = torch.load(io.BytesIO(payload), map_location="cpu", weights_only=True)
    except Exception as err:  # unpickling errors of every kind
        raise HMMValueError(f"{name}: unreadable saved {head['class']} ({err})") from err
    if not isinstance(d, dict) or not isinstance(d.get("state_dict"), dict):
        raise HMMValueError(f"{name}: the saved {head['class']} has no state dict")
    sd, extra = d["state_dict"], d.get("extra") or {}
    for k, v in sd.items():
        if isinstance(v, torch.Tensor) and v.is_floating_point() and bool(torch.isnan(v).any()):
            raise HMMValueError(f"{name}: saved parameter {k} contains NaN")
    try:
        obj = cls.from_config(head["config"])
    except (HMMValueError, HMMTypeError, KeyError) as err:
        raise HMMValueError(
            f"{name}: the saved config does not build a {head['class']} ({err})"
        ) from err
    try:
        obj._set_file_state(sd, extra)
    except (KeyError, TypeError, ValueError, RuntimeError, AttributeError) as err:
        raise HMMValueError(f"{name}: inconsistent saved {head['class']} ({err})") from err
    return _to_device(obj, device)


def load(path: PathLike, map_location: Any = "cpu"):
    """Whatever model the file at ``path`` holds (``pytorch_hmm.load``): a GaussianHMM, an
    HSMM, a ForcedAligner, ... as saved by its ``save``."""
    return load_model(path, None, map_location)


def _to_device(obj: Any, device: Optional[torch.device]):
    if device is not None and isinstance(obj, torch.nn.Module) and device.type != "cpu":
        obj.to(device)
    return obj


def _load_legacy(name: str, data: bytes, expected_class: Optional[type]):
    """Files of the forced aligner's own earlier formats (``pytorch_hmm.ForcedAligner/2``,
    and format 1: a bare torch.save); None when ``data`` is neither."""
    if not (data.startswith(_OLD_ALIGNER_MAGIC) or data.startswith(b"PK")):
        return None
    aligner = _lookup("ForcedAligner")
    if expected_class is not None and not issubclass(aligner, expected_class):
        return None
    return aligner._load_legacy(name, data)
