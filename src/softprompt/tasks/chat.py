"""Chat-template rendering, one implementation for training, zero-shot prompts, evaluation and the server."""

from __future__ import annotations


def has_chat_template(tokenizer) -> bool:
    return bool(getattr(tokenizer, "chat_template", None))


def render_messages(tokenizer, messages: list[dict]) -> str:
    """The conversation as text, ending with the assistant's turn opened (the tokenizer's own template)."""
    if not has_chat_template(tokenizer):
        raise ValueError("chat rendering needs a tokenizer with a chat template; this one defines none")
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def render_user(tokenizer, text: str) -> str:
    """One user message, the assistant's turn opened."""
    return render_messages(tokenizer, [{"role": "user", "content": text}])
