"""HMM forced alignment (phone level, like the Montreal Forced Aligner, in-process).

Model
-----
Every phone of an arbitrary phone set (strings: ARPAbet, IPA, Hangul jamo, pinyin with tones)
is a left-to-right HMM of ``states_per_phone`` emitting states (3 by default) with a self-loop
and an advance move; the silence phone (``config.silence_phone``, ``"sil"``) has
``silence_states``. States are tied across utterances: each phone owns its states, whose
emissions are diagonal-covariance Gaussian mixtures over MFCC + delta + delta-delta features
with per-utterance CMVN (:class:`AlignerConfig`).

An utterance HMM is the concatenation of its words' phones. Silence is optional at the start,
at the end and (``optional_silence``) between words: the last state of the phone before an
optional silence may enter it or skip it, so the transitions are a band (offsets 0 to
``silence_states + 1``) and the engine's banded path runs in O(T*K*W). The utterance must end
in the last state of its last phone or of the trailing silence (``log_final``). Graphs are
built directly in the engine's v2 form (:mod:`.graph`: band values, initial and final log
probabilities, the tied state each composite state reads). Utterances of a batch are padded
to a common number of states with unreachable states and aligned at once by
:func:`pytorch_hmm.core.viterbi` (alignment, Viterbi training) or
:func:`pytorch_hmm.core.posteriors` (Baum-Welch E-step). No other forward or Viterbi pass exists
here.

Alternative pronunciations (several lexicon lines for a word) are chosen by Viterbi score: when
the utterance has at most ``max_variants`` combinations they are all aligned and the best is
kept; otherwise each ambiguous word is chosen separately (its alternatives tried with the other
words at their first pronunciation) and the combination is aligned.

Training
--------
:meth:`ForcedAligner.fit` trains flat-start from (features, transcript) pairs: a uniform
segmentation of each utterance's phone states between a leading and a trailing silence (with
``energy_init``, the frames outside the span of speech found by an energy threshold plus a
50 ms margin; no inter-word silence), then EM iterations of Viterbi training or Baum-Welch,
with the self-loop and silence probabilities re-estimated as well, and optionally mixture
splitting (1 -> 2 -> 4 ... Gaussians a state). Statistics and M-steps are
:func:`pytorch_hmm.training.mixture_stats` / :func:`~pytorch_hmm.training.mixture_m_step`
(maximum likelihood; variances floored at ``variance_floor`` times the global variance).
:meth:`ForcedAligner.fit_labelled` instead initialises the states from reference phone
segmentations (each labelled phone split evenly into its states) and can continue with EM.

Accuracy
--------
Flat start on festival-dev (120 utterances, 3 voices; 4 Gaussians a state): 53/80/87/98% of the
phone boundaries within 10/20/25/50 ms, mean error 13.8 ms; CMU ARCTIC a0009 (real speech):
56/74/87/100%, 15.5 ms. See ``examples/forced_alignment.py`` for the tables and the command.

Layout
------
:mod:`.config` (settings, inputs, results), :mod:`.graph` (transcript to graph, batching),
:mod:`.aligner` (:class:`ForcedAligner`: inference), :mod:`.training` (EM and labelled
training); results are written by :mod:`pytorch_hmm.io.alignment_writers`.

Times
-----
Features are centred frames every ``frame_shift`` seconds, so frame ``t`` is centred at
``t * frame_shift``; the boundary between frames ``t-1`` and ``t`` is reported at
``(t - 0.5) * frame_shift + time_offset``, clipped to the audio, and the last segment ends at the
end of the audio.
"""

from .aligner import ForcedAligner
from .config import AlignerConfig, AlignmentError, Utterance, UtteranceAlignment

__all__ = [
    "AlignerConfig",
    "AlignmentError",
    "ForcedAligner",
    "Utterance",
    "UtteranceAlignment",
]
