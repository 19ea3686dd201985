"""The offline Qwen and Mistral tokenizers: the benchmark prompts' words stay whole, the
pipelines' templates come out as the real chat templates write them, Qwen-Image's instruction
is the 34 tokens its pipeline cuts, Tekken's control tokens keep their real ids."""

from __future__ import annotations

from bench.models.arch import chat_tokenizers as C
from bench.models.hub import HUB_PROMPTS

PROMPT = HUB_PROMPTS[0]  # "a photograph of an astronaut riding a horse": 8 words


def test_qwen_keeps_words_whole_and_writes_qwen3_chat():
    tok = C.qwen_tokenizer()
    assert type(tok).__name__ == "Qwen2Tokenizer"
    assert len(tok(PROMPT).input_ids) == 8  # no start token, one token per word
    assert tok.decode(tok(PROMPT).input_ids) == PROMPT
    messages = [{"role": "user", "content": PROMPT}]
    assert tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True,
                                   enable_thinking=False) == (
        f"<|im_start|>user\n{PROMPT}<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n")
    thinking = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True,
                                       enable_thinking=True)
    assert thinking.endswith("<|im_start|>assistant\n")
    # Special tokens are single tokens; unknown text falls back to bytes and round-trips.
    assert len(tok("<|im_start|><|im_end|>").input_ids) == 2
    assert tok.decode(tok("zebra é").input_ids) == "zebra é"
    assert tok.pad_token == "<|endoftext|>" and C.qwen_vocab_size() < C.QWEN3_VOCAB_SIZE


def test_qwen_image_instruction_is_the_34_tokens_its_pipeline_cuts():
    from diffusers import QwenImagePipeline

    tok = C.qwen_tokenizer()
    template = QwenImagePipeline(None, None, None, tok, None).prompt_template_encode
    assert template == C.QWEN_IMAGE_TEMPLATE
    prefix = template.split("{}")[0]
    assert len(tok(prefix).input_ids) == C.QWEN_IMAGE_DROP == 34
    ids = tok(template.format(PROMPT)).input_ids
    assert tok.decode(ids[C.QWEN_IMAGE_DROP:C.QWEN_IMAGE_DROP + 8]) == PROMPT


def test_mistral_writes_flux2_system_message_and_keeps_control_ids():
    from diffusers.pipelines.flux2.pipeline_flux2 import format_input

    tok = C.mistral_tokenizer()
    assert tok(PROMPT).input_ids[0] == 1 and len(tok(PROMPT).input_ids) == 1 + 8
    for token, id_ in C.TEKKEN_CONTROL.items():
        assert tok.convert_tokens_to_ids(token) == id_
    inputs = tok.apply_chat_template(format_input([PROMPT, "a fox"]), add_generation_prompt=False,
                                     tokenize=True, return_dict=True, return_tensors="pt",
                                     padding="max_length", truncation=True, max_length=512)
    assert inputs["input_ids"].shape == (2, 512)
    tokens = tok.convert_ids_to_tokens(inputs["input_ids"][0])
    assert tokens[:2] == ["<s>", "[SYSTEM_PROMPT]"] and "[INST]" in tokens
    # The system message: 26 words and marks plus one newline; each one token.
    text = tok.decode(inputs["input_ids"][0][inputs["attention_mask"][0].bool()])
    assert text.startswith("<s>[SYSTEM_PROMPT]You are an AI") and text.endswith(f"[INST]{PROMPT}[/INST]")
    assert int(inputs["attention_mask"][0].sum()) == 2 + 27 + 1 + 1 + 8 + 1
