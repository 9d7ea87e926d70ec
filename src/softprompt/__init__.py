"""softprompt: soft-prompt tuning of frozen language models.

A method is a prompt *producer* (how vectors are made) placed at an injection *site*
(where they enter the frozen model), plus a head.

`softprompt.wrap(model, tokenizer, method=...)` puts a soft prompt on your own Hugging Face
causal LM or seq2seq LM (see softprompt/wrap.py); it is imported on first use, so
`import softprompt` stays light (the HTTP client imports no torch).
"""

__version__ = "0.1.0"


def __getattr__(name: str):
    if name == "wrap":  # the callable module softprompt.wrap: softprompt.wrap(model, tok), .from_pretrained(dir)
        import importlib

        return importlib.import_module("softprompt.wrap")
    raise AttributeError(f"module 'softprompt' has no attribute {name!r}")
