"""The entry points of :mod:`pytorch_hmm.export`: model -> snapshot module -> TorchScript /
ONNX (documented in the package's docstring)."""

from __future__ import annotations

import os
import warnings
from typing import Any, Dict, List, Tuple, Union

import torch
from torch import nn

from ..errors import HMMTypeError, HMMValueError
from . import _modules as m

METHODS = ("log_likelihood", "viterbi", "streaming_step")

#: ONNX input and output names of each method, and their dynamic axes
ONNX_SIGNATURES: Dict[str, Dict[str, Any]] = {
    "log_likelihood": {
        "inputs": ["x", "lengths"],
        "outputs": ["log_likelihood"],
        "axes": {
            "x": {0: "batch", 1: "time"},
            "lengths": {0: "batch"},
            "log_likelihood": {0: "batch"},
        },
    },
    "viterbi": {
        "inputs": ["x", "lengths"],
        "outputs": ["path", "score"],
        "axes": {
            "x": {0: "batch", 1: "time"},
            "lengths": {0: "batch"},
            "path": {0: "batch", 1: "time"},
            "score": {0: "batch"},
        },
    },
    "streaming_step": {
        "inputs": [
            "x",
            "lengths",
            "frames",
            "forward_scores",
            "forward_offset",
            "viterbi_scores",
        ],
        "outputs": [
            "forward_scores_out",
            "forward_offset_out",
            "viterbi_scores_out",
            "back",
            "current_state",
            "confidence",
            "posteriors",
            "log_likelihood",
            "frames_out",
        ],
        "axes": {
            "x": {0: "batch", 1: "chunk"},
            "lengths": {0: "batch"},
            "frames": {0: "batch"},
            "forward_scores": {0: "batch"},
            "forward_offset": {0: "batch"},
            "viterbi_scores": {0: "batch"},
            "forward_scores_out": {0: "batch"},
            "forward_offset_out": {0: "batch"},
            "viterbi_scores_out": {0: "batch"},
            "back": {0: "batch", 1: "chunk"},
            "current_state": {0: "batch"},
            "confidence": {0: "batch"},
            "posteriors": {0: "batch"},
            "log_likelihood": {0: "batch"},
            "frames_out": {0: "batch"},
        },
    },
}


def _check_method(method: Any) -> str:
    if not isinstance(method, str) or method not in METHODS:
        raise HMMValueError(f"method must be one of {METHODS}, got {method!r}")
    return method


def _emissions(em: nn.Module) -> nn.Module:
    """A snapshot module of ``em``'s emission densities."""
    from ..models import GaussianHMM, HMMPyTorch, MixtureGaussianHMM

    with torch.no_grad():
        if isinstance(em, HMMPyTorch):
            return m.GivenEmissions()
        K = em.num_states
        if isinstance(em, GaussianHMM):
            w = torch.zeros(K, dtype=em.means.dtype, device=em.means.device)
            if em.covariance_type == "diag":
                return m.DiagGaussianEmissions(em.means.detach(), em.log_covars.detach(), w, K)
            return m.FullGaussianEmissions(em.means.detach(), em.scale_tril().detach(), w, K)
        if isinstance(em, MixtureGaussianHMM):
            M, D = em.num_mixtures, em.feature_dim
            mu = em.means.detach().reshape(K * M, D)
            lw = em.log_weights().detach()
            if em.covariance_type == "diag":
                lv = em.log_covars.detach().reshape(K * M, D)
                return m.DiagGaussianEmissions(mu, lv, lw, K)
            L = em.scale_tril().detach().reshape(K * M, D, D)
            return m.FullGaussianEmissions(mu, L, lw, K)
    raise _unsupported(em)


def _unsupported(model: Any) -> HMMValueError:
    from ..models import NeuralHMM

    name = type(model).__name__
    if isinstance(model, NeuralHMM):
        return HMMValueError(
            "NeuralHMM cannot be exported by pytorch_hmm.export: its emissions and "
            "time-varying transitions come from networks run over an input symbol sequence "
            "(and, autoregressively, over the previous output frame), which no fixed "
            "snapshot of parameters describes. Export its networks with torch.onnx / "
            "torch.jit directly and run the engine in Python, or decode with a GaussianHMM, "
            "MixtureGaussianHMM, HMMPyTorch or HSMM"
        )
    if not isinstance(model, nn.Module):
        return HMMTypeError(
            f"model must be a pytorch_hmm model (GaussianHMM, MixtureGaussianHMM, HMMPyTorch, "
            f"HSMM) or a StreamingHMMProcessor, got {name}"
        )
    return HMMValueError(
        f"{name} cannot be exported: pytorch_hmm.export knows GaussianHMM, MixtureGaussianHMM "
        "and HMMPyTorch (emissions given), HSMM (Gaussian or mixture emissions) and "
        "StreamingHMMProcessor over one of the HMMs; a subclass with its own "
        "emission_log_likelihood needs its own exportable module"
    )


def _model_dtype(model: nn.Module) -> torch.dtype:
    return model.start_logits.dtype


def export_module(model: Any, method: str = "viterbi") -> nn.Module:
    """The plain (not yet scripted) snapshot module of ``model`` for ``method``: an
    ``nn.Module`` holding copies of the parameters as buffers (later training of ``model``
    does not change it). See :mod:`pytorch_hmm.export`."""
    from ..models import HSMM, BaseHMM
    from ..streaming import StreamingHMMProcessor

    method = _check_method(method)
    beam = float("inf")
    if isinstance(model, StreamingHMMProcessor):
        if method != "streaming_step":
            raise HMMValueError(
                f"a StreamingHMMProcessor exports method='streaming_step', got {method!r}; "
                "export its .model for whole-sequence log_likelihood or viterbi"
            )
        if model.beam is not None:
            beam = float(model.beam)
        model = model.model
    with torch.no_grad():
        if isinstance(model, HSMM):
            if method == "streaming_step":
                raise HMMValueError(
                    "HSMM has no streaming step: pytorch_hmm streams HMMs "
                    "(StreamingHMMProcessor); export its log_likelihood or viterbi"
                )
            lpi, lA = model.log_initial().detach(), model.log_transitions().detach()
            ldur = model.log_durations().detach()
            dend = ldur
            if model.right_censored:  # log P(D >= d), in the model's dtype as the engine
                dend = torch.logcumsumexp(ldur.flip(-1), -1).flip(-1)
            args = (_emissions(model.emission), lpi, lA, ldur, dend, model.log_final().detach())
            if method == "log_likelihood":
                return m.HSMMLogLikelihood(*args)
            return m.HSMMViterbi(*args)
        if isinstance(model, BaseHMM):
            em = _emissions(model)
            lpi, lA = model.log_initial().detach(), model.log_transitions().detach()
            if method == "log_likelihood":
                return m.HMMLogLikelihood(em, lpi, lA)
            if method == "viterbi":
                return m.HMMViterbi(em, lpi, lA)
            return m.StreamingStep(em, lpi, lA, beam)
    raise _unsupported(model)


def to_torchscript(model: Any, method: str = "viterbi") -> torch.jit.ScriptModule:
    """``torch.jit.script`` of :func:`export_module` (scripted, not traced: the time loop is
    a real loop, so the module takes any number of frames and any batch size). Save it with
    ``.save(path)``; load with ``torch.jit.load`` (no pytorch_hmm needed)."""
    module = export_module(model, method)
    with warnings.catch_warnings():  # torch.jit is deprecated upstream, and still the way
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        return torch.jit.script(module)


def _feature_dim(model: Any) -> int:
    from ..models import HMMPyTorch
    from ..streaming import StreamingHMMProcessor

    if isinstance(model, StreamingHMMProcessor):
        model = model.model
    if isinstance(model, HMMPyTorch):
        return model.num_states
    return int(model.feature_dim)


def _base_model(model: Any) -> nn.Module:
    from ..streaming import StreamingHMMProcessor

    return model.model if isinstance(model, StreamingHMMProcessor) else model


def example_inputs(
    model: Any, method: str = "viterbi", batch: int = 2, length: int = 8, seed: int = 0
) -> Tuple[torch.Tensor, ...]:
    """Inputs of the exported ``method`` (in the order of its ONNX inputs) for ``batch``
    padded sequences of at most ``length`` frames (random features; the second sequence one
    frame shorter; streaming: the first stream fresh, the others continuing)."""
    method = _check_method(method)
    base = _base_model(model)
    dt = _model_dtype(base)
    dev = base.start_logits.device
    g = torch.Generator().manual_seed(seed)
    D = _feature_dim(model)
    x = torch.randn(batch, length, D, generator=g, dtype=torch.float64).to(dev, dt)
    from ..models import HMMPyTorch

    if isinstance(base, HMMPyTorch):
        x = torch.log_softmax(x, -1)
    lengths = torch.full((batch,), length, dtype=torch.long, device=dev)
    if batch > 1:
        lengths[1:] = max(1, length - 1)
    if method != "streaming_step":
        return x, lengths
    c = streaming_carry(model, batch)
    c["frames"][1:] = 3
    return (x, lengths, c["frames"], c["forward_scores"], c["forward_offset"], c["viterbi_scores"])


def streaming_carry(model: Any, num_streams: int) -> Dict[str, torch.Tensor]:
    """The carries of ``num_streams`` new streams for the exported ``streaming_step``:
    ``frames`` (B,) int64 zeros (a stream with 0 frames starts from the initial
    distribution, whatever its carries hold), ``forward_scores`` (B, K) and
    ``viterbi_scores`` (B, K) in the model's dtype, ``forward_offset`` (B,) float64."""
    base = _base_model(model)
    if isinstance(num_streams, bool) or int(num_streams) != num_streams or num_streams < 1:
        raise HMMValueError(f"num_streams must be an integer >= 1, got {num_streams!r}")
    B, K = int(num_streams), int(base.num_states)
    dt, dev = _model_dtype(base), base.start_logits.device
    return {
        "frames": torch.zeros(B, dtype=torch.long, device=dev),
        "forward_scores": torch.zeros(B, K, dtype=dt, device=dev),
        "forward_offset": torch.zeros(B, dtype=torch.float64, device=dev),
        "viterbi_scores": torch.zeros(B, K, dtype=dt, device=dev),
    }


def _check_graph(path: str, method: str) -> None:
    """The exported graph must keep its time axis symbolic and its recursion a Loop."""
    import onnx

    proto = onnx.load(path, load_external_data=False)
    x = next(i for i in proto.graph.input if i.name == "x")
    dims = x.type.tensor_type.shape.dim
    loops = [n for n in proto.graph.node if n.op_type in ("Loop", "Scan")]
    if len(dims) != 3 or not dims[1].dim_param or not dims[0].dim_param or not loops:
        raise HMMValueError(
            f"the ONNX export of {method!r} froze the batch or time axis (no dynamic axis or "
            "no Loop node in the graph): it would only accept inputs of the example's shape. "
            "This torch version's TorchScript-based exporter (dynamo=False) does not keep the "
            "scripted loop; use to_torchscript instead"
        )


def to_onnx(
    model: Any,
    path: Union[str, os.PathLike],
    method: str = "viterbi",
    *,
    opset_version: int = 17,
    example_length: int = 8,
    verify: bool = False,
) -> str:
    """Export ``method`` of ``model`` to an ONNX file at ``path`` (returned as a str), with
    dynamic batch and time axes (input and output names: :mod:`pytorch_hmm.export`).

    The scripted module (:func:`to_torchscript`) goes through the TorchScript-based exporter
    (``torch.onnx.export(..., dynamo=False)``), which turns its time loops into ONNX ``Loop``
    nodes; the graph is then checked to have a symbolic time axis and a Loop.
    ``verify=True`` also runs the file with onnxruntime on two batches of other lengths
    than the example's and compares every output with the TorchScript module's
    (``HMMValueError`` on a mismatch)."""
    try:
        import onnx  # noqa: F401
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError(
            "to_onnx needs onnx (and onnxscript): pip install 'pytorch-hmm[export]'"
        ) from e
    method = _check_method(method)
    if isinstance(example_length, bool) or int(example_length) < 2:
        raise HMMValueError(f"example_length must be an integer >= 2, got {example_length!r}")
    path = os.fspath(path)
    scripted = to_torchscript(model, method)
    args = example_inputs(model, method, 2, int(example_length))
    sig = ONNX_SIGNATURES[method]
    with warnings.catch_warnings():
        # the TorchScript-based exporter is the one that keeps scripted loops (see the docs)
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", category=UserWarning, module="torch.onnx")
        torch.onnx.export(
            scripted,
            args,
            path,
            dynamo=False,
            input_names=sig["inputs"],
            output_names=sig["outputs"],
            dynamic_axes=sig["axes"],
            opset_version=opset_version,
        )
    _check_graph(path, method)
    if verify:
        verify_onnx(model, path, method, scripted=scripted)
    return path


def run_onnx(path: Union[str, os.PathLike], *inputs: torch.Tensor) -> List[torch.Tensor]:
    """Run an exported file with onnxruntime (CPU) on ``inputs`` (tensors, in the order of
    the method's ONNX inputs); the outputs as tensors, in the order of its ONNX outputs."""
    try:
        import onnxruntime as ort
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError("run_onnx needs onnxruntime: pip install 'pytorch-hmm[export]'") from e
    sess = ort.InferenceSession(os.fspath(path), providers=["CPUExecutionProvider"])
    names = [i.name for i in sess.get_inputs()]
    if len(names) != len(inputs):
        raise HMMValueError(
            f"{os.fspath(path)} takes {len(names)} inputs {names}, got {len(inputs)}"
        )
    feed = {n: t.detach().cpu().numpy() for n, t in zip(names, inputs)}
    return [torch.from_numpy(o) for o in sess.run(None, feed)]


def verify_onnx(
    model: Any,
    path: Union[str, os.PathLike],
    method: str = "viterbi",
    *,
    lengths: Tuple[int, ...] = (3, 13),
    rtol: float = 1e-4,
    atol: float = 1e-4,
    scripted: Any = None,
) -> None:
    """Run ``path`` with onnxruntime on batches of padded sequences of each of ``lengths``
    frames and compare every output with the TorchScript module's (integer outputs exactly,
    others within ``rtol`` / ``atol``, -inf where it is); ``HMMValueError`` on a mismatch."""
    method = _check_method(method)
    scripted = to_torchscript(model, method) if scripted is None else scripted
    for i, T in enumerate(lengths):
        args = example_inputs(model, method, 3, int(T), seed=100 + i)
        ref = scripted(*args)
        ref = [ref] if isinstance(ref, torch.Tensor) else list(ref)
        got = run_onnx(path, *args)
        for name, r, o in zip(ONNX_SIGNATURES[method]["outputs"], ref, got):
            r = r.detach().cpu()
            same = r.shape == o.shape and (
                bool(torch.equal(r, o))
                if not r.is_floating_point()
                else bool(torch.allclose(o.to(r.dtype), r, rtol=rtol, atol=atol, equal_nan=True))
            )
            if not same:
                raise HMMValueError(
                    f"the ONNX export of {method!r} at {os.fspath(path)} disagrees with "
                    f"PyTorch on output {name!r} for T={T} frames (shapes {tuple(o.shape)} vs "
                    f"{tuple(r.shape)})"
                )
