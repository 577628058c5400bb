"""Phone (or HMM-state) duration model for TTS, learned from alignments.

One Gaussian (or log-normal) per unit, where a unit is a phone, or a phone in its left/right
context (``context="triphone"``) backed off to the phone and then to all phones when seen too
rarely. Prediction follows HTS: the duration of unit ``k`` (each state, for ``n_states > 1``)
is ``mean_k + rho * variance_k`` frames, with the speaking-rate parameter ``rho`` either given
or solved from a target total length (``rho = (T - sum mean) / sum variance``), then rounded
to whole frames carrying the rounding remainder forward so the total is preserved.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Dict, List, NamedTuple, Optional, Sequence, Tuple

import torch

from ..errors import HMMTypeError, HMMValueError
from ..io.model_file import ModelFileMixin
from ..models._common import check_count, check_real

__all__ = ["DurationModel", "DurationPrediction"]

_BOS, _EOS = "<s>", "</s>"


class DurationPrediction(NamedTuple):
    """Predicted durations.

    Attributes:
        durations: int64 frames, ``(K,)`` or ``(K, n_states)``.
        means: float64 continuous durations before rounding, ``mean + rho * variance`` for a
            Gaussian, ``exp(mu + rho * sigma^2)`` for a log-normal (same shape).
        variances: the units' variances (frames^2; log-domain for a log-normal).
        rho: the speaking-rate parameter used.
        units: the model unit each phone used (e.g. ``"a-b+c"``, ``"b"`` or ``"*"``).
    """

    durations: torch.Tensor
    means: torch.Tensor
    variances: torch.Tensor
    rho: float
    units: List[str]


@dataclass
class _Stats:
    count: int
    total: torch.Tensor  # (S,)
    total_sq: torch.Tensor  # (S,)


class DurationModel(ModelFileMixin):
    """Gaussian / log-normal duration model per phone, optionally in triphone context.

    Args:
        n_states: durations per phone (1 for phone durations, 5 for 5-state HSMM states).
        distribution: ``"gaussian"`` (durations in frames) or ``"lognormal"`` (Gaussian on
            ``ln(max(d, 1))``).
        context: ``"none"`` (monophone) or ``"triphone"`` (``left-phone+right``, backed off to
            the monophone when seen fewer than ``min_count`` times).
        min_count: fewest training tokens for a unit to be used; rarer units back off
            (triphone -> phone -> global model ``"*"``).
        variance_floor: variances are floored at ``variance_floor`` times the global variance.
        min_duration: fewest frames a predicted phone/state gets.

    Files: ``save(path)`` / ``DurationModel.load(path)`` (the library's model file, see
    :mod:`pytorch_hmm.io.model_file`); :meth:`to_dict` / :meth:`from_dict` for plain JSON.

    Example::

        model = DurationModel().fit(phone_lists, duration_tensors)
        pred = model.predict(["pau", "hh", "iy", "pau"], rho=0.0)
        pred.durations  # (4,) frames
    """

    def __init__(
        self,
        *,
        n_states: int = 1,
        distribution: str = "gaussian",
        context: str = "none",
        min_count: int = 2,
        variance_floor: float = 0.01,
        min_duration: int = 1,
    ) -> None:
        n_states = check_count("n_states", n_states)
        min_count = check_count("min_count", min_count)
        min_duration = check_count("min_duration", min_duration, minimum=0)
        variance_floor = check_real("variance_floor", variance_floor, low=0.0, low_open=True)
        if distribution not in ("gaussian", "lognormal"):
            raise HMMValueError(
                f"distribution must be 'gaussian' or 'lognormal', got {distribution!r}"
            )
        if context not in ("none", "triphone"):
            raise HMMValueError(f"context must be 'none' or 'triphone', got {context!r}")
        self.n_states = n_states
        self.distribution = distribution
        self.context = context
        self.min_count = min_count
        self.variance_floor = variance_floor
        self.min_duration = min_duration
        self.means: Dict[str, torch.Tensor] = {}
        self.variances: Dict[str, torch.Tensor] = {}
        self.counts: Dict[str, int] = {}

    # ------------------------------------------------------------------ training
    @staticmethod
    def _triphone(phones: Sequence[str], k: int) -> str:
        left = phones[k - 1] if k > 0 else _BOS
        right = phones[k + 1] if k + 1 < len(phones) else _EOS
        return f"{left}-{phones[k]}+{right}"

    def _as_durations(self, d, n_phones: int, i: int) -> torch.Tensor:
        from ..models.base import as_tensor_arg

        t = as_tensor_arg(f"durations[{i}]", d).to(torch.float64)
        want = (n_phones,) if self.n_states == 1 else (n_phones, self.n_states)
        if self.n_states == 1 and t.dim() == 2 and t.shape[1] == 1:
            t = t[:, 0]
        if tuple(t.shape) != want:
            raise HMMValueError(
                f"durations[{i}] must have shape {want} for {n_phones} phones and n_states="
                f"{self.n_states}, got {tuple(t.shape)}"
            )
        if bool((t < 0).any()) or not bool(torch.isfinite(t).all()):
            raise HMMValueError(f"durations[{i}] must be finite and >= 0")
        return t.reshape(n_phones, self.n_states)

    def _transform(self, d: torch.Tensor) -> torch.Tensor:
        return torch.log(d.clamp(min=1.0)) if self.distribution == "lognormal" else d

    def fit(
        self,
        phone_sequences: Sequence[Sequence[str]],
        durations: Sequence[torch.Tensor],
    ) -> DurationModel:
        """Estimate the units' means and variances (maximum likelihood) from alignments.

        Args:
            phone_sequences: per utterance, the phone labels (e.g. from
                :func:`pytorch_hmm.io.read_lab` / :func:`~pytorch_hmm.io.segments_to_durations`).
            durations: per utterance, frames per phone ``(K,)`` or per state ``(K, n_states)``.

        Returns:
            ``self``; on any error (nothing is changed before every utterance is checked) the
            model is as it was.
        """
        for name, v in (("phone_sequences", phone_sequences), ("durations", durations)):
            if v is None or isinstance(v, (str, bytes)) or not hasattr(v, "__len__"):
                raise HMMTypeError(
                    f"{name} must be a sequence with one entry per utterance, got {v!r:.80}"
                )
        if len(phone_sequences) != len(durations):
            raise HMMValueError(
                f"got {len(phone_sequences)} phone sequences but {len(durations)} duration arrays"
            )
        stats: Dict[str, _Stats] = {}

        def add(key: str, x: torch.Tensor) -> None:
            s = stats.get(key)
            if s is None:
                stats[key] = _Stats(1, x.clone(), x * x)
            else:
                s.count += 1
                s.total += x
                s.total_sq += x * x

        n_tokens = 0
        for i, (phones, d) in enumerate(zip(phone_sequences, durations)):
            if isinstance(phones, str) or not hasattr(phones, "__iter__"):
                raise HMMTypeError(
                    f"phone_sequences[{i}] must be a sequence of labels, got {phones!r:.80}"
                )
            phones = list(phones)
            if not all(isinstance(p, str) for p in phones):
                bad = next(p for p in phones if not isinstance(p, str))
                raise HMMTypeError(
                    f"phone_sequences[{i}] must hold str labels, got {type(bad).__name__} {bad!r}"
                )
            x = self._transform(self._as_durations(d, len(phones), i))
            for k, p in enumerate(phones):
                add("*", x[k])
                add(p, x[k])
                if self.context == "triphone":
                    add(self._triphone(phones, k), x[k])
                n_tokens += 1
        if n_tokens == 0:
            raise HMMValueError("no training phones given")
        g = stats["*"]
        g_mean = g.total / g.count
        g_var = (g.total_sq / g.count - g_mean**2).clamp(min=0)
        floor = (self.variance_floor * g_var).clamp(min=1e-8)
        self.means, self.variances, self.counts = {}, {}, {}
        for key, s in stats.items():
            mean = s.total / s.count
            var = (s.total_sq / s.count - mean**2).clamp(min=0)
            self.means[key] = mean
            self.variances[key] = torch.maximum(var, floor)
            self.counts[key] = s.count
        return self

    # ---------------------------------------------------------------- prediction
    @property
    def phone_set(self) -> List[str]:
        """Phones seen in training."""
        return sorted(k for k in self.means if k != "*" and "+" not in k)

    def unit_for(self, phones: Sequence[str], k: int) -> str:
        """The model unit used for phone ``k`` of ``phones`` after back-off."""
        if not self.means:
            raise RuntimeError("the DurationModel is not fitted; call fit() first")
        if self.context == "triphone":
            tri = self._triphone(phones, k)
            if self.counts.get(tri, 0) >= self.min_count:
                return tri
        if self.counts.get(phones[k], 0) >= self.min_count:
            return phones[k]
        return "*"

    def unit_parameters(
        self, phones: Sequence[str]
    ) -> Tuple[torch.Tensor, torch.Tensor, List[str]]:
        """Means and variances ``(K, n_states)`` of the units for ``phones`` and unit names."""
        phones = list(phones)
        units = [self.unit_for(phones, k) for k in range(len(phones))]
        if not units:
            empty = torch.zeros(0, self.n_states, dtype=torch.float64)
            return empty, empty.clone(), units
        mean = torch.stack([self.means[u] for u in units])
        var = torch.stack([self.variances[u] for u in units])
        return mean, var, units

    def _continuous(self, mean: torch.Tensor, var: torch.Tensor, rho: float) -> torch.Tensor:
        if self.distribution == "gaussian":
            return mean + rho * var
        return torch.exp(mean + rho * var)

    def _solve_rho(self, mean: torch.Tensor, var: torch.Tensor, total: float) -> float:
        if self.distribution == "gaussian":
            return float((total - mean.sum()) / var.sum())
        # sum exp(mu + rho s2) is increasing in rho: Newton from rho = 0 on its log, then check
        rho = 0.0
        for _ in range(100):
            f = torch.exp(mean + rho * var)
            g = float(f.sum())
            step = (math.log(total) - math.log(g)) * g / float((f * var).sum())
            rho += step
            if abs(step) < 1e-12:
                break
        return rho

    def _round(self, cont: torch.Tensor) -> torch.Tensor:
        flat = cont.reshape(-1).tolist()
        out, acc, assigned = [], 0.0, 0
        for v in flat:
            acc += v
            n = max(self.min_duration, int(math.floor(acc - assigned + 0.5)))
            out.append(n)
            assigned += n
        return torch.tensor(out, dtype=torch.long).reshape(cont.shape)

    def predict(
        self,
        phones: Sequence[str],
        *,
        rho: float = 0.0,
        total_frames: Optional[float] = None,
    ) -> DurationPrediction:
        """Durations in frames for a phone sequence.

        Args:
            phones: K phone labels.
            rho: speaking-rate control (HTS): every duration becomes ``mean + rho * variance``
                (log domain for a log-normal); ``rho > 0`` slows down, ``rho < 0`` speeds up.
            total_frames: instead of ``rho``, the target total length; ``rho`` is solved so the
                continuous durations sum to it (``(T - sum mean) / sum var`` for a Gaussian).

        Returns:
            :class:`DurationPrediction` with ``durations`` ``(K,)`` (``(K, n_states)`` when
            ``n_states > 1``), rounded with the remainder carried forward (so their sum is
            ``round(sum of continuous durations)`` unless ``min_duration`` lifts short ones).
        """
        if isinstance(phones, str):
            raise HMMTypeError("phones must be a sequence of labels, not a str")
        if phones is None or not hasattr(phones, "__iter__"):
            raise HMMTypeError(f"phones must be a sequence of labels, got {phones!r:.80}")
        rho = check_real("rho", rho)
        mean, var, units = self.unit_parameters(phones)
        if total_frames is not None:
            if check_real("total_frames", total_frames) <= 0:
                raise HMMValueError(f"total_frames must be > 0, got {total_frames}")
            rho = self._solve_rho(mean, var, float(total_frames)) if units else 0.0
        cont = self._continuous(mean, var, rho).clamp(min=0)
        dur = self._round(cont)
        if self.n_states == 1:
            cont, var, dur = cont[:, 0], var[:, 0], dur[:, 0]
        return DurationPrediction(dur, cont, var, float(rho), units)

    def predict_batch(
        self, phone_sequences: Sequence[Sequence[str]], *, rho: float = 0.0
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Predict for several sequences: durations ``(B, K_max[, n_states])`` zero-padded and
        ``lengths`` ``(B,)`` phones per sequence."""
        preds = [self.predict(p, rho=rho).durations for p in phone_sequences]
        lengths = torch.tensor([len(p) for p in preds], dtype=torch.long)
        k = int(lengths.max()) if len(preds) else 0
        shape = (len(preds), k) + ((self.n_states,) if self.n_states > 1 else ())
        out = torch.zeros(shape, dtype=torch.long)
        for b, p in enumerate(preds):
            out[b, : len(p)] = p
        return out, lengths

    # ---------------------------------------------------------------- persistence
    def to_dict(self) -> Dict[str, Any]:
        """Plain-Python state (JSON-serialisable)."""
        return {
            "config": self._config(),
            "units": {
                k: {
                    "mean": self.means[k].tolist(),
                    "variance": self.variances[k].tolist(),
                    "count": self.counts[k],
                }
                for k in self.means
            },
        }

    @classmethod
    def from_dict(cls, state: Dict[str, Any]) -> DurationModel:
        """Inverse of :meth:`to_dict`."""
        model = cls(**state["config"])
        model._set_file_state({}, state)
        return model

    def _config(self) -> Dict[str, Any]:
        return {
            "n_states": self.n_states,
            "distribution": self.distribution,
            "context": self.context,
            "min_count": self.min_count,
            "variance_floor": self.variance_floor,
            "min_duration": self.min_duration,
        }

    def _file_state(self):
        return {}, {"units": self.to_dict()["units"]}

    def _set_file_state(self, state_dict, extra) -> None:
        for k, u in extra["units"].items():
            self.means[k] = torch.tensor(u["mean"], dtype=torch.float64)
            self.variances[k] = torch.tensor(u["variance"], dtype=torch.float64)
            self.counts[k] = int(u["count"])
