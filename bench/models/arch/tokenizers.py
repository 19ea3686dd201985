"""Offline tokenizers for the architecture models: the real tokenizer classes and algorithms
with a small vocabulary made here, so nothing is downloaded.

Each tokenizer is the ``transformers`` class the pipeline expects, running the real model's
algorithm (CLIP's byte-level BPE with ``</w>`` word ends, T5's SentencePiece-style unigram
with ``▁`` word starts, Gemma's byte-fallback BPE on ``▁``-joined text); only the vocabulary is
small. It is learned here, deterministically, from :func:`corpus`: the benchmark prompts
(:data:`bench.models.hub.HUB_PROMPTS`) and the instruction Sana's pipeline puts before every
prompt. Every word of that corpus is a single token, as in the real vocabularies (which hold
common English words whole); other text falls back to characters (CLIP, T5) or bytes (Gemma).

How close the token counts are: for the benchmark prompts the count here is the number of
words plus punctuation marks plus the special tokens (CLIP: start and end, T5: end, Gemma:
start), which is exactly what the real tokenizers give when each word is one token of their
vocabulary. The real 49k-token CLIP, 32k-token T5 and 256k-token Gemma vocabularies keep
common words whole and split rare ones into two or three pieces, so a real count can exceed
the one here by the rare words of a prompt: zero for most benchmark prompts, and an estimated
one or two for the few with compounds (e.g. "windowsill"). The sequence a text encoder sees
does not depend on that: pipelines pad or truncate to a fixed length (CLIP 77, T5 256 in SD3,
512 in Flux.1-dev, 300 in PixArt-Sigma; Gemma the instruction plus 300 in Sana), which
:func:`clip_tokenizer`, :func:`t5_tokenizer` and :func:`gemma_tokenizer` keep.

Special tokens keep the real ids where the model depends on them: CLIP's start and end are
49406 and 49407 (its pooled output is taken at the largest id, the end token), T5's pad,
end and unknown are 0, 1 and 2, Gemma's pad, end, start and unknown are 0, 1, 2 and 3.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from functools import lru_cache

from bench.models.hub import HUB_PROMPTS

#: CLIP's sequence length (its position embeddings).
CLIP_LENGTH = 77
#: CLIP's special tokens and their ids in the real vocabulary.
CLIP_BOS, CLIP_EOS = "<|startoftext|>", "<|endoftext|>"
CLIP_BOS_ID, CLIP_EOS_ID = 49406, 49407
#: The real CLIP vocabulary size (the text encoder's embedding rows).
CLIP_VOCAB_SIZE = 49408

#: T5's special tokens, ids 0, 1, 2 as in the real SentencePiece model.
T5_SPECIAL = ("<pad>", "</s>", "<unk>")
#: The real T5 v1.1 vocabulary size (embedding rows, including padding to a multiple of 128).
T5_VOCAB_SIZE = 32128

#: Gemma's special tokens, ids 0..4 as in the real vocabulary.
GEMMA_SPECIAL = ("<pad>", "<eos>", "<bos>", "<unk>", "<mask>")
#: The real Gemma 2 vocabulary size.
GEMMA_VOCAB_SIZE = 256000

_METASPACE = "\u2581"  # "▁", SentencePiece's word-start mark
#: Characters every vocabulary has, so unknown words fall back to characters.
_ALPHANUMERIC = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"


def sana_instruction() -> list[str]:
    """The instruction lines Sana's pipeline prepends to every prompt (its default
    ``complex_human_instruction``), read from the installed diffusers."""
    import inspect

    from diffusers import SanaPipeline

    default = inspect.signature(SanaPipeline.__call__).parameters["complex_human_instruction"]
    return list(default.default or [])


def corpus(with_instruction: bool = False) -> tuple[str, ...]:
    """The texts the vocabularies are learned from: the benchmark prompts, plus Sana's
    instruction for the Gemma tokenizer (the only one that sees it)."""
    return (*HUB_PROMPTS, *(sana_instruction() if with_instruction else ()))


def learn_bpe(words: Iterable[tuple[str, ...]]) -> list[tuple[str, str]]:
    """Byte-pair merges learned from ``words`` (each a tuple of initial symbols) until every
    word is one symbol.

    The classic BPE training loop: count adjacent symbol pairs over the words (each distinct
    word once), merge the most frequent pair everywhere, repeat. Ties are broken by the pair's
    text, so the result is the same on every run and machine. Encoding a word of ``words``
    with these merges (lowest rank first, as BPE tokenizers do) gives that word whole.
    """
    current = [list(w) for w in sorted(set(words)) if w]
    merges: list[tuple[str, str]] = []
    while True:
        pairs: Counter[tuple[str, str]] = Counter()
        for symbols in current:
            for a, b in zip(symbols, symbols[1:], strict=False):
                pairs[(a, b)] += 1
        if not pairs:
            return merges
        best = max(pairs.items(), key=lambda item: (item[1], _reverse_key(item[0])))[0]
        merges.append(best)
        joined = best[0] + best[1]
        for symbols in current:
            i = 0
            while i < len(symbols) - 1:
                if symbols[i] == best[0] and symbols[i + 1] == best[1]:
                    symbols[i : i + 2] = [joined]
                else:
                    i += 1


def _reverse_key(pair: tuple[str, str]) -> tuple[int, ...]:
    """Sort key that makes ``max`` prefer the lexicographically smallest pair on a tie."""
    text = pair[0] + "\x00" + pair[1]
    return tuple(-ord(c) for c in text)


# -- CLIP ------------------------------------------------------------------------------------
#: CLIP's pre-tokenizer pattern, restricted to the ASCII text of the corpus: letter runs,
#: single digits, runs of other non-space characters.
_CLIP_WORD = re.compile(r"'s|'t|'re|'ve|'m|'ll|'d|[a-z]+|[0-9]|[^\sa-z0-9]+")


@lru_cache(maxsize=1)
def _clip_vocab() -> tuple[tuple[tuple[str, int], ...], tuple[tuple[str, str], ...]]:
    from tokenizers import pre_tokenizers

    words = set()
    for text in corpus():
        for w in _CLIP_WORD.findall(text.lower()):
            words.add((*w[:-1], w[-1] + "</w>"))
    merges = learn_bpe(words)
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab: dict[str, int] = {}
    for c in alphabet:
        vocab[c] = len(vocab)
    for c in alphabet:
        vocab[c + "</w>"] = len(vocab)
    for a, b in merges:
        vocab.setdefault(a + b, len(vocab))
    if len(vocab) >= CLIP_BOS_ID:
        raise RuntimeError("the CLIP vocabulary grew into the special tokens' ids")
    vocab[CLIP_BOS] = CLIP_BOS_ID
    vocab[CLIP_EOS] = CLIP_EOS_ID
    return tuple(vocab.items()), tuple(merges)


def clip_tokenizer(pad_token: str = CLIP_EOS):
    """A ``CLIPTokenizer`` (byte-level BPE, lower-cased, ``</w>`` word ends) padding to 77.

    ``pad_token``: SD 1.5 and the first SDXL/SD3 tokenizer pad with the end token; the
    OpenCLIP bigG tokenizer of SDXL and SD3 pads with ``"!"`` (id 0 in both vocabularies).
    """
    from transformers import CLIPTokenizer

    vocab, merges = _clip_vocab()
    return CLIPTokenizer(
        vocab=dict(vocab),
        merges=list(merges),
        pad_token=pad_token,
        model_max_length=CLIP_LENGTH,
    )


# -- T5 --------------------------------------------------------------------------------------
_WORD = re.compile(r"[A-Za-z]+|[0-9]|[^\sA-Za-z0-9]")


@lru_cache(maxsize=1)
def _t5_vocab() -> tuple[tuple[str, float], ...]:
    words = sorted({w for text in corpus() for w in _WORD.findall(text)})
    chars = sorted(
        {c for text in corpus() for c in text if not c.isspace()} | set(_ALPHANUMERIC)
    )
    pieces: dict[str, float] = {tok: 0.0 for tok in T5_SPECIAL}
    pieces[_METASPACE] = -5.0
    for w in words:
        # Whole words after a space score best, inside a word (after a dash) next.
        pieces.setdefault(_METASPACE + w, -1.0)
    for w in words:
        pieces.setdefault(w, -1.5)
    for c in chars:
        pieces.setdefault(c, -10.0)
    return tuple(pieces.items())


def t5_tokenizer(max_length: int):
    """A ``T5TokenizerFast`` (unigram over ``▁``-marked pieces, ``</s>`` appended, 100
    sentinel tokens) whose ``model_max_length`` is ``max_length``."""
    from transformers import T5TokenizerFast

    tok = T5TokenizerFast(vocab=list(_t5_vocab()), extra_ids=100, model_max_length=max_length)
    if len(tok) > T5_VOCAB_SIZE:
        raise RuntimeError("the T5 vocabulary is larger than the model's embedding")
    return tok


# -- Gemma -----------------------------------------------------------------------------------
@lru_cache(maxsize=1)
def _gemma_vocab() -> tuple[tuple[tuple[str, int], ...], tuple[tuple[str, str], ...]]:
    words = set()
    chars = {"\n"}  # the pipeline joins the instruction's lines with newlines
    for text in corpus(with_instruction=True):
        for w in _WORD.findall(text):
            # Gemma joins words with "▁" and adds no prefix: a word is "▁word" after a space
            # and "word" at the start of the text or after punctuation.
            words.add(tuple(_METASPACE + w) if w.isalnum() else tuple(w))
            words.add(tuple(w))
        chars.update(text)
    merges = learn_bpe(words)
    vocab: dict[str, int] = {tok: i for i, tok in enumerate(GEMMA_SPECIAL)}
    for b in range(256):
        vocab[f"<0x{b:02X}>"] = len(vocab)
    for c in sorted(chars | {_METASPACE} | set(_ALPHANUMERIC)):
        if c != " ":
            vocab.setdefault(c, len(vocab))
    for a, b in merges:
        vocab.setdefault(a + b, len(vocab))
    return tuple(vocab.items()), tuple(merges)


def gemma_tokenizer():
    """A ``GemmaTokenizerFast`` (byte-fallback BPE on ``▁``-joined text, ``<bos>`` first)."""
    from transformers import GemmaTokenizerFast

    vocab, merges = _gemma_vocab()
    return GemmaTokenizerFast(
        vocab=dict(vocab), merges=list(merges), add_bos_token=True, model_max_length=8192
    )


def gemma_vocab_size() -> int:
    """Ids the offline Gemma tokenizer can produce (its vocabulary's size)."""
    return len(_gemma_vocab()[0])


__all__ = [
    "CLIP_LENGTH",
    "CLIP_VOCAB_SIZE",
    "GEMMA_VOCAB_SIZE",
    "T5_VOCAB_SIZE",
    "clip_tokenizer",
    "corpus",
    "gemma_tokenizer",
    "gemma_vocab_size",
    "learn_bpe",
    "sana_instruction",
    "t5_tokenizer",
]
