"""The model side of "one engine, many models": a base class that turns parameters into the
engine's inputs (log initial probabilities, log transitions, emission log-likelihoods) and
offers the familiar hmmlearn-like surface on top of :mod:`pytorch_hmm.core`."""

from __future__ import annotations

import math
from typing import Any, Optional, Sequence, Tuple, Union

import numpy as np
import torch
from torch import nn

from .. import core
from ..core.validation import check_lengths, check_real_frames, mask_padding
from ..errors import HMMTypeError, HMMValueError
from ..io.model_file import ModelFileMixin
from ._common import StateGuard, check_count, restore_on_error

ArrayLike = Union[torch.Tensor, np.ndarray, Sequence]

#: The dtypes every model computes in. One rule for all models: a model is built in float32
#: or float64 (``dtype=``); half precision (float16, bfloat16) is refused at construction with
#: an ``HMMTypeError`` (the engine's recursions, the Gaussian densities' distance products and
#: triangular solves need float32 at least). Inputs of any floating dtype (float16 and
#: bfloat16 included) are converted to the model's dtype, which is exact for half-precision
#: inputs, and results come back in the model's dtype.
MODEL_DTYPES = (torch.float32, torch.float64)


def check_model_dtype(dtype: Any, name: str = "dtype") -> torch.dtype:
    """``dtype`` when it is one of :data:`MODEL_DTYPES`, else ``HMMTypeError`` naming it."""
    if not isinstance(dtype, torch.dtype) or dtype not in MODEL_DTYPES:
        raise HMMTypeError(
            f"{name} must be torch.float32 or torch.float64, got {dtype!r} (half precision is "
            "not supported: build the model in float32; float16/bfloat16 inputs are converted)"
        )
    return dtype


def as_tensor_arg(
    name: str, value: Any, *, floating: bool = False, list_dtype: Any = np.float64
) -> torch.Tensor:
    """``value`` as a tensor: a tensor as it is; a numpy array, a number or a (nested) list or
    tuple of numbers converted (lists to ``list_dtype``; None: numpy's choice). ``None``,
    strings, ragged lists and other objects raise ``HMMTypeError`` naming ``name``, as do
    bool and complex values.
    ``floating=True``: tensors and arrays must hold floating-point values (an integer tensor
    passed as features is refused rather than silently read as numbers)."""
    if isinstance(value, torch.Tensor):
        t = value
    else:
        if value is None or isinstance(value, (str, bytes)):
            raise HMMTypeError(
                f"{name} must be a tensor, an array or a list of numbers, got {value!r}"
            )
        is_list = isinstance(value, (list, tuple))
        try:
            a = np.asarray(value, dtype=list_dtype) if is_list else np.asarray(value)
        except (TypeError, ValueError) as e:
            raise HMMTypeError(
                f"{name} must be a tensor, an array or a (rectangular) list of numbers, got a "
                f"{type(value).__name__} that does not convert ({e})"
            ) from None
        if a.dtype.kind not in "iuf" and not (a.dtype.kind == "b" and not floating):
            raise HMMTypeError(
                f"{name} must hold real numbers, got a {type(value).__name__} of dtype {a.dtype}"
            )
        t = torch.from_numpy(np.ascontiguousarray(a))
    if t.dtype.is_complex or t.dtype == torch.bool or (floating and not t.is_floating_point()):
        raise HMMTypeError(
            f"{name} must hold {'floating-point' if floating else 'real'} values, got dtype "
            f"{t.dtype} (shape {tuple(t.shape)})"
        )
    return t


def as_features(x: Any, like: torch.Tensor, name: str = "x") -> torch.Tensor:
    """Features ``x`` (see :func:`as_tensor_arg`, floating point) on ``like``'s device and in
    its dtype; a batch of no sequences (B=0) is refused with ``HMMValueError``."""
    t = as_tensor_arg(name, x, floating=True)
    if t.dim() == 3 and t.shape[0] == 0:
        raise HMMValueError(
            f"{name} has no sequences (shape {tuple(t.shape)}, B=0): pass at least one sequence"
        )
    return t.to(device=like.device, dtype=like.dtype)


def _as_probs(name: str, p: ArrayLike, shape: Tuple[int, ...]) -> torch.Tensor:
    t = as_tensor_arg(name, p).to(torch.float64)
    if tuple(t.shape) != shape:
        raise HMMValueError(f"{name} must have shape {shape}, got {tuple(t.shape)}")
    if (t < 0).any() or not torch.isfinite(t).all():
        raise HMMValueError(f"{name} must hold finite probabilities >= 0")
    s = t.sum(-1)
    if not torch.allclose(s, torch.ones_like(s), atol=1e-6):
        raise HMMValueError(f"{name} rows must sum to one, got sums {s.flatten()[:5].tolist()}")
    return t


class BaseHMM(ModelFileMixin, StateGuard, nn.Module):
    """An HMM with K states whose start and transition probabilities are parameters.

    Probabilities are stored as unconstrained logits; ``log_initial()`` and
    ``log_transitions()`` apply a (masked) log-softmax, so any ``torch.optim`` optimiser keeps
    them valid, and transitions that start at zero (left-to-right models) stay exactly zero
    (``-inf``) under gradient training and EM alike. Subclasses implement
    :meth:`emission_log_likelihood`.

    Inputs: features as tensors, numpy arrays or lists of floats (None, strings, integer
    tensors and B=0 batches are refused with ``HMMTypeError`` / ``HMMValueError`` naming the
    argument); any layout (transposed, strided). Precision: the model computes in its
    ``dtype``, float32 or float64 (half precision is refused at construction); inputs of
    other floating dtypes, float16 and bfloat16 included, are converted to it first.
    Failing calls change nothing: ``fit``, ``m_step``, the ``set_*`` setters and
    ``load_state_dict`` check first and put the parameters back if a later step fails.
    Files: ``save(path)`` / ``Class.load(path)`` (config, parameters and what ``fit`` leaves;
    see :mod:`pytorch_hmm.io.model_file`); ``get_config()`` / ``from_config(config)``.
    """

    def __init__(
        self,
        num_states: int,
        startprob: Optional[ArrayLike] = None,
        transmat: Optional[ArrayLike] = None,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        super().__init__()
        K = self.num_states = check_count("num_states", num_states)
        check_model_dtype(dtype)
        sp = (
            torch.full((K,), 1.0 / K, dtype=torch.float64)
            if startprob is None
            else _as_probs("startprob", startprob, (K,))
        )
        tm = (
            torch.full((K, K), 1.0 / K, dtype=torch.float64)
            if transmat is None
            else _as_probs("transmat", transmat, (K, K))
        )
        self.start_logits = nn.Parameter(torch.zeros(K, dtype=dtype))
        self.trans_logits = nn.Parameter(torch.zeros(K, K, dtype=dtype))
        self.register_buffer("start_mask", torch.ones(K, dtype=torch.bool))
        self.register_buffer("trans_mask", torch.ones(K, K, dtype=torch.bool))
        self.set_startprob(sp)
        self.set_transmat(tm)

    def _config(self) -> dict:
        return {"num_states": self.num_states, "dtype": self.start_logits.dtype}

    # -- parameters -------------------------------------------------------------------------
    def set_startprob(self, startprob: ArrayLike) -> None:
        """Set start probabilities (K,); zeros become structural zeros (kept by training)."""
        p = _as_probs("startprob", startprob, (self.num_states,))
        with torch.no_grad():
            self.start_mask.copy_(p > 0)
            self.start_logits.copy_(torch.where(p > 0, p.log(), 0.0).to(self.start_logits))

    def set_transmat(self, transmat: ArrayLike) -> None:
        """Set transition probabilities (K, K); zeros become structural zeros."""
        K = self.num_states
        p = _as_probs("transmat", transmat, (K, K))
        with torch.no_grad():
            self.trans_mask.copy_(p > 0)
            self.trans_logits.copy_(torch.where(p > 0, p.log(), 0.0).to(self.trans_logits))

    def log_initial(self) -> torch.Tensor:
        """Log start probabilities (K,), -inf at structural zeros."""
        return torch.log_softmax(self.start_logits.masked_fill(~self.start_mask, -math.inf), -1)

    def log_transitions(self) -> torch.Tensor:
        """Log transition matrix (K, K), rows normalised, -inf at structural zeros."""
        lg = self.trans_logits.masked_fill(~self.trans_mask, -math.inf)
        out = torch.log_softmax(lg, -1)
        # a row with no allowed move (never reached) stays all -inf rather than NaN
        return torch.where(self.trans_mask.any(-1, keepdim=True), out, -math.inf)

    @property
    def startprob(self) -> torch.Tensor:
        return self.log_initial().detach().exp()

    @property
    def transmat(self) -> torch.Tensor:
        return self.log_transitions().detach().exp()

    # -- emissions --------------------------------------------------------------------------
    def emission_log_likelihood(self, x: torch.Tensor) -> torch.Tensor:
        """``log p(x_t | z_t = k)`` for ``x`` (B, T, D) -> (B, T, K)."""
        raise NotImplementedError

    def _prepare_x(
        self, x: ArrayLike, lengths: Optional[ArrayLike] = None
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Accept (T, D) or (B, T, D) features (tensor or array); return (B, T, D), lengths."""
        x = as_features(x, next(self.parameters()))  # refuses None, strings, ints, B=0
        if x.dim() == 2:
            x = x.unsqueeze(0)
        if x.dim() != 3:
            raise HMMValueError(f"x must have shape (T, D) or (B, T, D), got {tuple(x.shape)}")
        self._check_features(x)
        B, T = x.shape[:2]
        if T == 0:
            raise HMMValueError("x has no frames (T=0): sequences must have at least one frame")
        lengths = check_lengths(lengths, B, T, x.device)
        # padding may hold anything (NaN, inf): replaced by 0 first, so it is never checked
        # and cannot poison a matmul; NaN and +-inf in a real frame are refused
        x = mask_padding(x, lengths)
        if not torch.isfinite(x.sum()):  # one reduction finds any NaN or inf
            for what, bad in (("NaN", torch.isnan(x)), ("inf", torch.isinf(x))):
                if bad.any():
                    b, t = torch.nonzero(bad.any(-1))[0].tolist()
                    raise HMMValueError(
                        f"x contains {what} (sequence {b}, frame {t}): a real frame, as "
                        f"lengths[{b}] = {int(lengths[b])}; features must be finite "
                        "(padded frames t >= lengths[b] are never read)"
                    )
        return x, lengths

    def _check_features(self, x: torch.Tensor) -> None:
        pass

    def _engine_inputs(self, x: ArrayLike, lengths: Optional[ArrayLike] = None):
        x, lengths = self._prepare_x(x, lengths)
        return self.emission_log_likelihood(x), self.log_initial(), self.log_transitions(), lengths

    # -- inference (all through the engine) -------------------------------------------------
    def log_likelihood(self, x: ArrayLike, lengths: Optional[ArrayLike] = None) -> torch.Tensor:
        """Log-likelihood of each sequence, (B,); differentiable w.r.t. every parameter."""
        lb, lpi, lA, lengths = self._engine_inputs(x, lengths)
        return core.log_likelihood(lb, lpi, lA, lengths)

    def forward(self, x: ArrayLike, lengths: Optional[ArrayLike] = None) -> torch.Tensor:
        """``model(x)`` is the log-likelihood (B,), e.g. for isolated-word recognition."""
        return self.log_likelihood(x, lengths)

    def posteriors(self, x: ArrayLike, lengths: Optional[ArrayLike] = None) -> core.PosteriorResult:
        with torch.no_grad():  # inference only: no graph through the emissions
            lb, lpi, lA, lengths = self._engine_inputs(x, lengths)
        return core.posteriors(lb.detach(), lpi.detach(), lA.detach(), lengths)

    def viterbi(self, x: ArrayLike, lengths: Optional[ArrayLike] = None) -> core.ViterbiResult:
        with torch.no_grad():  # inference only: no graph through the emissions
            lb, lpi, lA, lengths = self._engine_inputs(x, lengths)
        return core.viterbi(lb.detach(), lpi.detach(), lA.detach(), lengths)

    # hmmlearn-like names ---------------------------------------------------------------------
    def score(self, x: ArrayLike, lengths: Optional[ArrayLike] = None) -> float:
        """Total log-likelihood of all sequences (a float, as hmmlearn's ``score``)."""
        with torch.no_grad():
            return float(self.log_likelihood(x, lengths).double().sum())

    def decode(
        self, x: ArrayLike, lengths: Optional[ArrayLike] = None
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """``(log_prob (B,), states (B, T))`` of the Viterbi path (hmmlearn's ``decode``)."""
        v = self.viterbi(x, lengths)
        return v.score, v.path

    def predict(self, x: ArrayLike, lengths: Optional[ArrayLike] = None) -> torch.Tensor:
        """Viterbi state sequence (B, T), -1 on padding."""
        return self.viterbi(x, lengths).path

    def predict_proba(self, x: ArrayLike, lengths: Optional[ArrayLike] = None) -> torch.Tensor:
        """State posteriors (B, T, K)."""
        return self.posteriors(x, lengths).state_posteriors

    def sample_states(
        self, n_frames: int, num_sequences: int = 1, generator: Optional[torch.Generator] = None
    ) -> torch.Tensor:
        """Draw state paths (num_sequences, n_frames) from the Markov chain's prior."""
        n_frames = check_count("n_frames", n_frames)
        num_sequences = check_count("num_sequences", num_sequences)
        p0 = self.startprob.double()
        A = self.transmat.double()
        z = torch.empty(num_sequences, n_frames, dtype=torch.long)
        z[:, 0] = torch.multinomial(p0.cpu(), num_sequences, replacement=True, generator=generator)
        Ac = A.cpu()
        for t in range(1, n_frames):
            z[:, t] = torch.multinomial(Ac[z[:, t - 1]], 1, generator=generator).squeeze(1)
        return z.to(self.start_logits.device)

    def sample_posterior(
        self,
        x: ArrayLike,
        lengths: Optional[ArrayLike] = None,
        num_samples: int = 1,
        generator: Optional[torch.Generator] = None,
    ) -> torch.Tensor:
        """State paths drawn from ``p(z | x)``: (num_samples, B, T), -1 on padding."""
        with torch.no_grad():  # inference only: no graph through the emissions
            lb, lpi, lA, lengths = self._engine_inputs(x, lengths)
        return core.sample_posterior(
            lb.detach(),
            lpi.detach(),
            lA.detach(),
            lengths,
            num_samples=num_samples,
            generator=generator,
        )

    # -- training: EM as accumulate -> statistics that add up -> m_step -------------------------
    #: letters of the parameters EM may train / initialise ("s" start, "t" transitions, ...)
    default_params = "st"
    #: letters of ``init_params`` that need data (k-means)
    data_init_params = ""
    #: Dirichlet priors of the start and transition M-step (hmmlearn's; 1.0 = none)
    startprob_prior = 1.0
    transmat_prior = 1.0

    def _em_features(self, x: torch.Tensor):
        """Anything EM can compute once from a batch held in memory and reuse at every
        iteration (passed back to ``_emission_forward``); None when nothing."""
        return None

    def _emission_forward(self, x: torch.Tensor, features=None):
        """Emission log-likelihoods (B, T, K) and anything the statistics can reuse."""
        return self.emission_log_likelihood(x), None

    def _emission_stats(self, x, gamma, lengths, cache, params: str):
        """Emission sufficient statistics (subclasses), ``None`` when nothing is trained."""
        return None

    def _emission_m_step(self, stats, params: str) -> None:
        """Update emission parameters from their statistics (subclasses)."""

    def _auto_init_params(self) -> str:
        """``init_params="auto"``: what a fresh model needs initialised from data."""
        return ""

    def accumulate(
        self, x: ArrayLike, lengths: Optional[ArrayLike] = None, params: Optional[str] = None
    ):
        """The E-step on one batch: :class:`~pytorch_hmm.training.stats.HMMStats` (start and
        transition counts, emission statistics, total log-likelihood, frame and sequence
        counts) from ``x`` (B, T, D) (or (T, D)) with ``lengths`` (B,).

        One engine call (:func:`pytorch_hmm.core.posteriors`) for the whole batch, under
        ``torch.no_grad``. Statistics of several batches add up (``a + b``), so a corpus can
        stream through, and ``stats.all_reduce()`` sums them over processes."""
        with torch.no_grad():
            x, lengths = self._prepare_x(x, lengths)
            features = self._em_features(x)  # the same arithmetic as a fit held in memory
        return self._accumulate_prepared(x, lengths, params, features)

    def _accumulate_prepared(
        self, x: torch.Tensor, lengths: torch.Tensor, params=None, features=None
    ):
        """:meth:`accumulate` on features already checked by ``_prepare_x`` (``features``:
        what ``_em_features`` kept of them)."""
        from ..training.stats import HMMStats

        params = self.default_params if params is None else params
        with torch.no_grad():
            lb, cache = self._emission_forward(x, features)
            post = core.posteriors(lb, self.log_initial(), self.log_transitions(), lengths)
            gamma = post.state_posteriors
            em = self._emission_stats(x, gamma, lengths, cache, params)
            return HMMStats(
                start=gamma[:, 0].sum(0),
                trans=post.transition_counts.sum(0),
                emission=em,
                log_likelihood=post.log_likelihood.double().sum(),
                num_frames=lengths.sum(),
                num_sequences=torch.tensor(x.shape[0], device=x.device),
            )

    def _set_logits(self, logits: torch.Tensor, probs: torch.Tensor, mask: torch.Tensor) -> None:
        # probabilities that became zero get a very negative logit (exp underflows to exactly
        # zero) rather than -inf, so gradient training never meets inf - inf
        lg = torch.where(probs > 0, probs.log(), -1e4).clamp(min=-1e4)
        logits.copy_(torch.where(mask, lg, 0.0).to(logits))

    def _check_stats(self, stats, params: str) -> None:
        """Refuse statistics this model cannot use, before anything changes."""
        from ..training.stats import HMMStats, check_stats

        check_stats(stats, HMMStats, self.num_states)
        if stats.emission is not None and any(c in params for c in "mcw"):
            self._check_emission_stats(stats.emission)

    def _check_emission_stats(self, emission) -> None:
        """Shape checks of the emission statistics (subclasses)."""

    def _check_parameters(self) -> None:
        lpi, lA = self.log_initial().detach(), self.log_transitions().detach()
        if not bool(self.start_mask.any()) or bool(torch.isnan(lpi).any()):
            raise HMMValueError("start_mask allows no start state: startprob would be undefined")
        if bool(torch.isnan(lA).any()):
            raise HMMValueError("the transition logits give NaN transition probabilities")

    def m_step(self, stats, params: Optional[str] = None):
        """The M-step: update the parameters named in ``params`` (default all) from summed
        statistics (hmmlearn's update rules, priors included); structural zeros of
        ``startprob`` / ``transmat`` stay zero. Returns ``self``.

        Statistics that are not this model's (wrong type or shape), hold NaN or inf, or hold
        negative counts raise ``HMMValueError`` / ``HMMTypeError`` and nothing changes; an error
        during the update itself also leaves the model as it was."""
        from ..training.em import _resolve_params
        from ..training.stats import markov_m_step

        params = _resolve_params(self, params, "params")
        self._check_stats(stats, params)
        with torch.no_grad(), restore_on_error(self):
            if "s" in params or "t" in params:
                sp, tm = markov_m_step(
                    stats.start.double(),
                    stats.trans.double(),
                    self.start_mask,
                    self.trans_mask,
                    self.startprob_prior,
                    self.transmat_prior,
                    previous=(self.startprob.double(), self.transmat.double()),
                )
                if "s" in params:
                    self._set_logits(self.start_logits, sp, self.start_mask)
                if "t" in params:
                    self._set_logits(self.trans_logits, tm, self.trans_mask)
            self._emission_m_step(stats.emission, params)
        return self

    def init_parameters(
        self,
        frames: Optional[torch.Tensor],
        init_params: str,
        seed: Optional[int] = 0,
        kmeans_backend: str = "torch",
    ) -> None:
        """Initialise the parameters named in ``init_params``: "s" / "t" uniform over allowed
        entries (structural zeros kept); emission letters from ``frames`` (N, D) (subclasses,
        k-means)."""
        with torch.no_grad():
            if "s" in init_params:
                self.start_logits.zero_()
            if "t" in init_params:
                self.trans_logits.zero_()

    def fit(
        self,
        x: Any,
        lengths: Optional[ArrayLike] = None,
        *,
        n_iter: int = 10,
        tol: float = 1e-2,
        params: Optional[str] = None,
        init_params: Optional[str] = "auto",
        verbose: bool = False,
        distributed: bool = False,
        process_group=None,
        seed: Optional[int] = 0,
        kmeans_backend: str = "torch",
    ):
        """Baum-Welch EM; returns ``self``.

        ``x``: (B, T, D) padded features with ``lengths`` (B,); (T, D); a list of (T_i, D)
        sequences; hmmlearn's concatenated (N, D) frames with ``lengths`` summing to N; or a
        re-iterable of batches (``x`` or ``(x, lengths)`` each; a ``DataLoader``; a callable
        returning an iterator) that is streamed through once per iteration.

        ``n_iter`` iterations at most; stops when the log-likelihood gains less than ``tol``
        (hmmlearn's rule). ``params`` / ``init_params``: letters of the parameters to train /
        to initialise before training ("s" start, "t" transitions, "m" means, "c" covariances,
        "w" mixture weights; see ``default_params``). ``init_params="auto"`` initialises the
        emissions (k-means means, data covariance plus ``min_covar``) only when they were
        never set (all means zero); ``""`` starts from the current parameters.
        ``verbose``: a tqdm progress bar. ``distributed=True``: sum the statistics over
        ``process_group`` with ``torch.distributed.all_reduce`` each iteration (each process
        passes its own shard; after an initialisation, rank 0's parameters are broadcast).

        After fitting, ``log_likelihood_history`` holds the total log-likelihood of the data
        before each M-step, ``n_iter_`` the iterations run and ``converged`` whether ``tol``
        stopped it."""
        from ..training.em import fit_em

        return fit_em(
            self,
            x,
            lengths,
            n_iter=n_iter,
            tol=tol,
            params=params,
            init_params=init_params,
            verbose=verbose,
            distributed=distributed,
            process_group=process_group,
            seed=seed,
            kmeans_backend=kmeans_backend,
        )

    def nll(
        self, x: ArrayLike, lengths: Optional[ArrayLike] = None, reduction: str = "frame"
    ) -> torch.Tensor:
        """Negative log-likelihood loss for gradient training (see
        :func:`pytorch_hmm.training.nll_loss`): "frame" (per real frame), "sequence", "sum",
        "none"."""
        from ..training.gradient import nll_loss

        return nll_loss(self, x, lengths, reduction)

    def _to_hmmlearn(self, class_name: str, params: str, **kwargs):
        """An hmmlearn model of class ``class_name`` with this model's start, transition,
        mean and covariance parameters (``kwargs`` go to its constructor)."""
        try:
            from hmmlearn import hmm
        except ImportError as e:  # pragma: no cover - depends on the environment
            raise ImportError("to_hmmlearn needs hmmlearn: pip install hmmlearn") from e
        m = getattr(hmm, class_name)(
            n_components=self.num_states,
            covariance_type=self.covariance_type,
            min_covar=self.min_covar,
            init_params="",
            params=params,
            **kwargs,
        )
        m.n_features = self.feature_dim
        m.startprob_ = self.startprob.double().cpu().numpy()
        m.transmat_ = self.transmat.double().cpu().numpy()
        m.means_ = self.means.detach().double().cpu().numpy()
        m.covars_ = self.covars.double().cpu().numpy()
        return m

    def extra_repr(self) -> str:
        return f"num_states={self.num_states}"


class HMMPyTorch(BaseHMM):
    """A plain HMM over emission scores the caller supplies (the seed's name, kept).

    ``HMMPyTorch(transition_matrix, initial_probs=None)``; then ``log_likelihood``,
    ``viterbi``, ``posteriors``, ``forward_backward`` take ``log_emissions`` (B, T, K) or
    (T, K) instead of features. Example::

        hmm = HMMPyTorch(torch.tensor([[0.9, 0.1], [0.0, 1.0]]))
        path = hmm.viterbi(log_probs).path
    """

    def __init__(
        self,
        transition_matrix: ArrayLike,
        initial_probs: Optional[ArrayLike] = None,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        tm = as_tensor_arg("transition_matrix", transition_matrix)
        if tm.dim() != 2 or tm.shape[0] != tm.shape[1]:
            raise HMMValueError(
                f"transition_matrix must be a square (K, K) matrix, got {tuple(tm.shape)}"
            )
        K = tm.shape[0]
        if initial_probs is None:
            initial_probs = torch.zeros(K, dtype=torch.float64)
            initial_probs[0] = 1.0
        super().__init__(K, initial_probs, tm, dtype=dtype)

    def _config(self) -> dict:
        return {
            "transition_matrix": self.transmat.double().cpu().tolist(),
            "initial_probs": self.startprob.double().cpu().tolist(),
            "dtype": self.start_logits.dtype,
        }

    def _prepare_x(self, x, lengths=None):
        x = as_features(x, self.start_logits, "log_emissions")
        if x.dim() == 2:
            x = x.unsqueeze(0)
        if x.dim() != 3 or x.shape[-1] != self.num_states:
            raise HMMValueError(
                f"log_emissions must have shape (B, T, K) or (T, K) with K={self.num_states}, "
                f"got {tuple(x.shape)}"
            )
        lengths = check_lengths(lengths, x.shape[0], x.shape[1], x.device)
        # padded frames are never read (replaced by 0); -inf in a real frame is "impossible"
        return check_real_frames("log_emissions", x, lengths), lengths

    def emission_log_likelihood(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def forward_backward(
        self, log_emissions: ArrayLike, lengths: Optional[ArrayLike] = None
    ) -> core.PosteriorResult:
        """State posteriors, transition counts and log-likelihood (the E-step)."""
        return self.posteriors(log_emissions, lengths)
