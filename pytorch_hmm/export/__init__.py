"""Export of decoding and scoring to TorchScript and ONNX.

Entry points::

    from pytorch_hmm.export import to_onnx, to_torchscript

    ts = to_torchscript(model, method="viterbi")      # a torch.jit.ScriptModule
    path, score = ts(x, lengths)                       # any batch, any number of frames
    ts.save("hmm_viterbi.pt")                          # torch.jit.load() needs no pytorch_hmm

    to_onnx(model, "hmm_ll.onnx", method="log_likelihood")

``model``: a :class:`~pytorch_hmm.GaussianHMM` ("diag" or "full"), a
:class:`~pytorch_hmm.MixtureGaussianHMM` ("diag" or "full"), an
:class:`~pytorch_hmm.HMMPyTorch` (its input is then the emission log-likelihoods (B, T, K)), an
:class:`~pytorch_hmm.HSMM` (Gaussian or mixture emissions, any duration family, either
topology, right-censored or not), or, for ``method="streaming_step"``, a
:class:`~pytorch_hmm.StreamingHMMProcessor` (its model and ``beam``) or one of the HMMs.

What is exported is a snapshot: small self-contained ``nn.Module``\\ s
(:func:`export_module`) that copy the model's parameters into buffers (emission parameters,
``log_initial``, ``log_transitions``, and for an HSMM ``log_durations`` and ``log_final``)
and compute from ``x`` (B, T, D) and ``lengths`` (B,) the emission log-likelihoods and then
the recursion over time. Later training of the model does not change an export.

Methods, and the ONNX names of their inputs and outputs (axis names in brackets: "batch",
"time" and "chunk" are dynamic):

- ``"log_likelihood"``: inputs ``x`` (batch, time, D) in the model's dtype, ``lengths``
  (batch,) int64; output ``log_likelihood`` (batch,): ``model.log_likelihood(x, lengths)``
  (-inf for a sequence no path or segmentation can produce).
- ``"viterbi"``: the same inputs; outputs ``path`` (batch, time) int64, the best state of
  each frame (-1 on padding and for impossible sequences), and ``score`` (batch,), its log
  probability: ``model.viterbi(x, lengths).path`` and ``.score`` (an HSMM's segments follow
  from the path: its states never repeat from one segment to the next).
- ``"streaming_step"`` (HMMs only): one chunk of the online recursions of
  :class:`~pytorch_hmm.StreamingHMMProcessor`, with its carries as inputs and outputs.
  Inputs ``x`` (batch, chunk, D), ``lengths`` (batch,) int64 frames of each stream in this
  chunk (0 allowed: the stream is unchanged), ``frames`` (batch,) int64 frames each stream
  has seen before (0: a new stream, started from the initial distribution; its carries are
  not read), ``forward_scores`` (batch, K), ``forward_offset`` (batch,) float64,
  ``viterbi_scores`` (batch, K). Outputs ``forward_scores_out``, ``forward_offset_out``,
  ``viterbi_scores_out`` (the carries for the next chunk), ``back`` (batch, chunk, K) int64
  (the best predecessor of each state at each frame of the chunk; -1 at a stream's first
  frame and on padding), ``current_state`` (batch,) int64, ``confidence`` (batch,) and
  ``posteriors`` (batch, K) (the filtered distribution ``p(z_t | x_0..x_t)`` of the newest
  frame, -1 / 0 for a stream with no frame yet), ``log_likelihood`` (batch,) float64
  ``log p(x_0..x_t)`` so far, ``frames_out`` (batch,). :func:`streaming_carry` gives the
  carries of new streams. These are the processor's ``current_state``, ``confidence``,
  ``posteriors`` and ``log_likelihood``; its committed states (exact online Viterbi) come
  from feeding ``back``, ``lengths`` and ``viterbi_scores_out`` to
  :class:`~pytorch_hmm.core.online.OnlineViterbi` ``.step`` in Python (the partial
  traceback's variable-length output and growing buffer are bookkeeping, not a recursion,
  and are not exported); with ``max_delay`` set the states it returns as pruned must be set
  to -inf in ``viterbi_scores_out`` before the next chunk. Fixed-lag smoothing
  (``smoothing_lag``) and the audio front end are not exported.

Inputs are not validated by the exported graphs (shapes, dtype, ``1 <= lengths <= T``
(``0 <= lengths`` for streaming), finite features are the caller's: use the model itself
to check). Padded frames may hold anything (they are zeroed before the emissions).

How the time loop survives export (torch 2.13): the modules are scripted
(``torch.jit.script``), never traced, since tracing freezes the loop at the example's
length. :func:`to_onnx` exports the scripted module with the TorchScript-based exporter
(``torch.onnx.export(..., dynamo=False)``, deprecated upstream but the one that turns a
scripted loop into an ONNX ``Loop`` whose trip count is read from the input's shape); the
``torch.export``-based exporter (``dynamo=True``, the default) unrolls a Python loop and
silently specialises the time axis to the example's length. Inside the loops nothing is
updated in place (such updates, and ``list.reverse()``, have been dropped silently by the
exporter), per-frame results go to typed lists stacked after the loop, and every file is
checked after export to have a symbolic time axis and a Loop node (``HMMValueError``
otherwise); ``verify=True`` also runs it with onnxruntime on other lengths.

Precision and agreement: the HMM recursions use the engine's arithmetic (float32 models:
emissions relative to each frame's best state, scores renormalised every frame, offsets
summed in float64; Viterbi scores summed in float64 along the path); the HSMM recursion runs
in float64 as the engine's does. Full covariances use the inverse Cholesky factor, computed
once in float64 at export (ONNX has no triangular solve). Measured against the models' own
``log_likelihood`` and ``viterbi`` (float32, padded batches, lengths other than the
example's): log-likelihoods and scores agree to about 1e-7 relative (tests use 1e-4), paths
are identical (barring exact near-ties, which the float32 rounding could order
differently).

Limits: :class:`~pytorch_hmm.NeuralHMM` is not exportable (its emissions and transitions
come from networks over an input sequence; ``HMMValueError`` says so), nor are other
subclasses with their own emissions, nor posteriors / sampling / training. Cost: the
exported Viterbi keeps O(B*T*K) back-pointers, the HSMM recursion costs O(B*T*K*(Dm + K))
like the engine's torch backend (no compiled kernels).
"""

from __future__ import annotations

from ._api import (
    METHODS,
    ONNX_SIGNATURES,
    example_inputs,
    export_module,
    run_onnx,
    streaming_carry,
    to_onnx,
    to_torchscript,
    verify_onnx,
)

__all__ = [
    "METHODS",
    "ONNX_SIGNATURES",
    "example_inputs",
    "export_module",
    "run_onnx",
    "streaming_carry",
    "to_onnx",
    "to_torchscript",
    "verify_onnx",
]
