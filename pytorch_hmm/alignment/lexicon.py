"""Pronunciation lexicons in the Montreal Forced Aligner dictionary format.

One pronunciation a line: the word, then its phones separated by white space. Several lines for
one word are alternative pronunciations, kept in file order (the first is the default). Phones
are arbitrary strings (ARPAbet, IPA, Hangul jamo, pinyin with tones); nothing assumes English.
MFA's optional probability columns (numbers between the word and the phones) are skipped.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from typing import Dict, Iterable, List, Mapping, Sequence, Tuple, Union

from ..errors import HMMError, HMMTypeError, HMMValueError

__all__ = ["Lexicon", "MissingWordError", "read_lexicon"]

Pronunciation = Tuple[str, ...]


class MissingWordError(HMMError, KeyError):
    """A transcript word that the lexicon does not hold (``words`` lists every missing one)."""

    def __init__(self, words: Sequence[str]):
        self.words = list(words)
        super().__init__(f"word(s) not in the lexicon: {', '.join(repr(w) for w in self.words)}")

    def __str__(self) -> str:  # KeyError would quote the whole message
        return self.args[0]


def _is_number(tok: str) -> bool:
    try:
        float(tok)
    except ValueError:
        return False
    return True


class Lexicon:
    """Word -> list of pronunciations (tuples of phone strings), first one the default.

    Args:
        entries: mapping word -> pronunciations, or an iterable of ``(word, phones)`` pairs
            (repeated words add alternatives).
        case_sensitive: if False (default) words are looked up in lower case.
    """

    def __init__(
        self,
        entries: Union[Mapping[str, Sequence[Sequence[str]]], Iterable[Tuple[str, Sequence[str]]]],
        *,
        case_sensitive: bool = False,
    ) -> None:
        self.case_sensitive = case_sensitive
        self._prons: Dict[str, List[Pronunciation]] = OrderedDict()
        items = (
            ((w, p) for w, ps in entries.items() for p in ps)
            if isinstance(entries, Mapping)
            else entries
        )
        for word, phones in items:
            self.add(word, phones)

    def _key(self, word: str) -> str:
        return word if self.case_sensitive else word.lower()

    def add(self, word: str, phones: Sequence[str]) -> None:
        """Add a pronunciation (ignored if the word already has exactly this one)."""
        if not isinstance(word, str) or not word or any(c.isspace() for c in word):
            raise HMMValueError(
                f"a lexicon word must be a non-empty string without spaces: {word!r}"
            )
        if isinstance(phones, str) or phones is None:
            raise HMMTypeError(
                f"the pronunciation of {word!r} must be a list of phones, got {phones!r}"
            )
        pron = tuple(str(p) for p in phones)
        if not pron:
            raise HMMValueError(f"pronunciation of {word!r} has no phones")
        bad = [p for p in pron if not p or any(c.isspace() for c in p)]
        if bad:
            raise HMMValueError(
                f"pronunciation of {word!r}: phones must be non-empty, without spaces: {bad[0]!r}"
            )
        alts = self._prons.setdefault(self._key(word), [])
        if pron not in alts:
            alts.append(pron)

    def __contains__(self, word: str) -> bool:
        return self._key(word) in self._prons

    def __len__(self) -> int:
        return len(self._prons)

    def __getitem__(self, word: str) -> List[Pronunciation]:
        try:
            return list(self._prons[self._key(word)])
        except KeyError:
            raise MissingWordError([word]) from None

    def words(self) -> List[str]:
        return list(self._prons)

    def phones(self) -> List[str]:
        """Every phone used, in order of first appearance."""
        seen: Dict[str, None] = OrderedDict()
        for alts in self._prons.values():
            for pron in alts:
                for p in pron:
                    seen.setdefault(p, None)
        return list(seen)

    def lookup(self, words: Sequence[str]) -> List[List[Pronunciation]]:
        """Pronunciations of each word; raises :class:`MissingWordError` naming all missing."""
        missing = [w for w in words if w not in self]
        if missing:
            raise MissingWordError(list(OrderedDict.fromkeys(missing)))
        return [self[w] for w in words]

    def to_dict(self) -> Dict[str, List[List[str]]]:
        return {w: [list(p) for p in alts] for w, alts in self._prons.items()}

    @classmethod
    def from_dict(cls, d: Mapping[str, Sequence[Sequence[str]]], **kw) -> Lexicon:
        return cls(d, **kw)

    def write(self, path: Union[str, os.PathLike]) -> None:
        from ..io._atomic import atomic_write

        with atomic_write(path, "w") as f:  # the old file stays whole if anything fails
            for w, alts in self._prons.items():
                for pron in alts:
                    f.write(f"{w}\t{' '.join(pron)}\n")

    def __repr__(self) -> str:
        n = sum(len(a) for a in self._prons.values())
        return f"Lexicon({len(self)} words, {n} pronunciations)"


def read_lexicon(path: Union[str, os.PathLike], *, case_sensitive: bool = False) -> Lexicon:
    """Read an MFA-format dictionary (UTF-8). Blank lines and ``#`` / ``;;;`` comments are
    skipped; a line with a word and no phones, a file that is not UTF-8 and a file without
    any pronunciation are errors naming the file (and line)."""
    lex = Lexicon({}, case_sensitive=case_sensitive)
    name = os.fspath(path)
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.readlines()
    except UnicodeDecodeError as err:
        with open(path, "rb") as fb:
            lineno = fb.read()[: err.start].count(b"\n") + 1
        raise HMMValueError(f"{name}:{lineno}: not UTF-8 text ({err.reason})") from err
    for lineno, line in enumerate(lines, start=1):
        s = line.strip()
        if not s or s.startswith("#") or s.startswith(";;;"):
            continue
        parts = s.split()
        word, rest = parts[0], parts[1:]
        # MFA allows pronunciation / silence probabilities before the phones
        nums = 0
        while rest and _is_number(rest[0]):
            rest, nums = rest[1:], nums + 1
        if not rest:
            what = f" (only the number(s) {parts[1:]})" if nums else ""
            raise HMMValueError(f"{os.fspath(path)}:{lineno}: word {word!r} has no phones{what}")
        lex.add(word, rest)
    if len(lex) == 0:
        raise HMMValueError(f"{name}: no pronunciations (empty file, or only comments)")
    return lex
