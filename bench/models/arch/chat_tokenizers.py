"""Offline tokenizers of the chat language models that encode prompts for the 2025 image
models: Qwen's (Qwen-Image's Qwen2.5-VL, Z-Image's and FLUX.2 [klein]'s Qwen3) and Mistral's
Tekken (FLUX.2 [dev]'s Mistral Small 3.1), with the chat templates their pipelines apply.

As in :mod:`bench.models.arch.tokenizers`: the real ``transformers`` classes and algorithm
(byte-level BPE after the model's own pre-tokenization pattern), a small vocabulary learned
here, deterministically, from the benchmark prompts and the text the pipelines wrap around
them (Qwen-Image's description instruction, FLUX.2's system message, the chat markup), so each
word of that corpus is one token, as in the real 151k- and 131k-token vocabularies, and other
text falls back to bytes.

Why the token counts matter: Qwen-Image cuts its instruction back off by position (the first
34 tokens, ``prompt_template_encode_start_idx``), which the vocabulary here reproduces exactly;
Z-Image and Qwen-Image give the transformer the prompt's tokens only (their length follows the
prompt); FLUX.2 pads to 512.

Special tokens: Qwen's ``<|endoftext|>``, ``<|im_start|>``, ``<|im_end|>``, ``<think>`` and
``</think>`` follow the learned vocabulary (the ids differ from the real 151643...; nothing
depends on them); Tekken's first 1000 ids are control tokens, with the real ids for the ones
the pipeline uses (``<s>`` 1, ``</s>`` 2, ``[INST]`` 3, ``[/INST]`` 4, ``[IMG]`` 10, ``<pad>``
11, ``[IMG_BREAK]`` 12, ``[IMG_END]`` 13, ``[SYSTEM_PROMPT]`` 17, ``[/SYSTEM_PROMPT]`` 18).
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

from bench.models.arch.tokenizers import corpus, learn_bpe

#: Qwen2.5 and Qwen3 vocabulary sizes (the text encoders' embedding rows).
QWEN25_VOCAB_SIZE = 152064
QWEN3_VOCAB_SIZE = 151936
#: Mistral Small 3.1's Tekken vocabulary size.
TEKKEN_VOCAB_SIZE = 131072

#: Qwen-Image's prompt template (``QwenImagePipeline.prompt_template_encode``); its first 34
#: tokens, the instruction, are cut back off after encoding.
QWEN_IMAGE_TEMPLATE = (
    "<|im_start|>system\nDescribe the image by detailing the color, shape, size, texture, "
    "quantity, text, spatial relationships of the objects and background:<|im_end|>\n"
    "<|im_start|>user\n{}<|im_end|>\n<|im_start|>assistant\n"
)
QWEN_IMAGE_DROP = 34

QWEN_SPECIAL = ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<think>", "</think>")

#: Qwen3's chat template for text messages (the real one's output for a conversation without
#: tools: ``enable_thinking=False`` adds the empty thinking block to the generation prompt).
QWEN3_CHAT_TEMPLATE = (
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}"
    "{%- if enable_thinking is defined and enable_thinking is false %}"
    "{{- '<think>\\n\\n</think>\\n\\n' }}{%- endif %}{%- endif %}"
)

#: Mistral Small 3.1's chat template for text messages (content as a string or as a list of
#: ``{"type": "text"}`` parts, the form FLUX.2's pipeline sends).
MISTRAL_CHAT_TEMPLATE = (
    "{{- bos_token }}"
    "{%- for message in messages %}"
    "{%- if message['content'] is string %}{%- set text = message['content'] %}"
    "{%- else %}{%- set text = message['content'] | selectattr('type', 'equalto', 'text')"
    " | map(attribute='text') | join('') %}{%- endif %}"
    "{%- if message['role'] == 'system' %}{{- '[SYSTEM_PROMPT]' + text + '[/SYSTEM_PROMPT]' }}"
    "{%- elif message['role'] == 'user' %}{{- '[INST]' + text + '[/INST]' }}"
    "{%- else %}{{- text + eos_token }}{%- endif %}"
    "{%- endfor %}"
)

#: Tekken's control tokens the pipelines use, at their real ids.
TEKKEN_CONTROL = {"<unk>": 0, "<s>": 1, "</s>": 2, "[INST]": 3, "[/INST]": 4, "[IMG]": 10,
                  "<pad>": 11, "[IMG_BREAK]": 12, "[IMG_END]": 13, "[SYSTEM_PROMPT]": 17,
                  "[/SYSTEM_PROMPT]": 18}
TEKKEN_CONTROL_IDS = 1000
#: Tekken's pre-tokenization pattern (cased words, single digits, punctuation runs, spaces).
TEKKEN_PATTERN = (
    r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+|"
    r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*|\p{N}|"
    r" ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)


def pipeline_texts() -> tuple[str, ...]:
    """What the pipelines put around a prompt: Qwen-Image's encoding template, FLUX.2's system
    message (read from the installed diffusers), the chat roles and Qwen3's empty thinking
    block; special tokens are left out (they are never split)."""
    from diffusers.pipelines.flux2.system_messages import SYSTEM_MESSAGE

    texts = (QWEN_IMAGE_TEMPLATE.format(""), SYSTEM_MESSAGE, "system user assistant",
             "<think>\n\n</think>\n\n")
    specials = re.compile("|".join(re.escape(t) for t in (*QWEN_SPECIAL, *TEKKEN_CONTROL)))
    return tuple(specials.sub("\n", text) for text in texts)


def _byte_level_bpe(pre_tokenizer: Any) -> tuple[tuple[str, ...], tuple[tuple[str, str], ...]]:
    """The byte alphabet and the merges that make every pre-token of the corpus one token."""
    from tokenizers import pre_tokenizers

    words = {tuple(token) for text in (*corpus(), *pipeline_texts())
             for token, _ in pre_tokenizer.pre_tokenize_str(text)}
    return tuple(sorted(pre_tokenizers.ByteLevel.alphabet())), tuple(learn_bpe(words))


def _qwen_pre_tokenizer():
    from tokenizers import Regex, pre_tokenizers
    from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX

    return pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])


@lru_cache(maxsize=1)
def _qwen_vocab() -> tuple[tuple[tuple[str, int], ...], tuple[tuple[str, str], ...]]:
    alphabet, merges = _byte_level_bpe(_qwen_pre_tokenizer())
    vocab: dict[str, int] = {c: i for i, c in enumerate(alphabet)}
    for a, b in merges:
        vocab.setdefault(a + b, len(vocab))
    for token in QWEN_SPECIAL:
        vocab[token] = len(vocab)
    return tuple(vocab.items()), merges


def qwen_tokenizer():
    """A ``Qwen2Tokenizer`` (byte-level BPE after Qwen's pre-tokenization pattern, no start
    token, padding with ``<|endoftext|>``) carrying Qwen3's chat template."""
    from tokenizers import AddedToken
    from transformers import Qwen2Tokenizer

    vocab, merges = _qwen_vocab()
    tok = Qwen2Tokenizer(vocab=dict(vocab), merges=list(merges),
                         model_max_length=131072)
    tok.add_tokens([AddedToken(t, special=True, normalized=False) for t in QWEN_SPECIAL])
    tok.chat_template = QWEN3_CHAT_TEMPLATE
    return tok


def qwen_vocab_size() -> int:
    """Ids the offline Qwen tokenizer can produce."""
    return len(_qwen_vocab()[0])


def _tekken_pre_tokenizer():
    from tokenizers import Regex, pre_tokenizers

    return pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(TEKKEN_PATTERN), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])


@lru_cache(maxsize=1)
def _tekken_vocab() -> tuple[tuple[tuple[str, int], ...], tuple[tuple[str, str], ...]]:
    alphabet, merges = _byte_level_bpe(_tekken_pre_tokenizer())
    by_id = {i: t for t, i in TEKKEN_CONTROL.items()}
    vocab = {by_id.get(i, f"<SPECIAL_{i}>"): i for i in range(TEKKEN_CONTROL_IDS)}
    for c in alphabet:
        vocab[c] = len(vocab)
    for a, b in merges:
        vocab.setdefault(a + b, len(vocab))
    return tuple(vocab.items()), merges


def mistral_tokenizer():
    """Mistral Small 3.1's tokenizer: byte-level BPE after Tekken's pattern, ``<s>`` first,
    its 1000 control tokens never split, Mistral's chat template.

    FLUX.2 [dev]'s pipeline holds it where the published model has a ``PixtralProcessor``:
    text-to-image calls only the chat template and the tokenizer, which are these; the
    processor adds Pixtral's image path (editing with reference images), which needs
    torchvision and which text-to-image does not use."""
    from tokenizers import AddedToken, Tokenizer, decoders, models
    from tokenizers.processors import TemplateProcessing
    from transformers import PreTrainedTokenizerFast

    vocab, merges = _tekken_vocab()
    backend = Tokenizer(models.BPE(vocab=dict(vocab), merges=list(merges), fuse_unk=False))
    backend.pre_tokenizer = _tekken_pre_tokenizer()
    backend.decoder = decoders.ByteLevel()
    backend.add_special_tokens([AddedToken(t, special=True, normalized=False)
                                for t, i in vocab[:TEKKEN_CONTROL_IDS]])
    tok = PreTrainedTokenizerFast(
        tokenizer_object=backend, bos_token="<s>", eos_token="</s>", unk_token="<unk>",
        pad_token="<pad>", model_max_length=131072, chat_template=MISTRAL_CHAT_TEMPLATE)
    tok._tokenizer.post_processor = TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    return tok


def mistral_vocab_size() -> int:
    """Ids the offline Mistral tokenizer can produce."""
    return len(_tekken_vocab()[0])


__all__ = ["QWEN_IMAGE_DROP", "QWEN_IMAGE_TEMPLATE", "QWEN25_VOCAB_SIZE", "QWEN3_VOCAB_SIZE", "TEKKEN_VOCAB_SIZE", "mistral_tokenizer", "mistral_vocab_size", "pipeline_texts", "qwen_tokenizer",
           "qwen_vocab_size"]
