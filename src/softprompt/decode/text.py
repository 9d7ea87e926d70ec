"""Text of a generation: incremental detokenising and stop strings, one implementation for every caller.

`TextTail` turns each new token into the text it adds, decoding a short window (not the whole
answer) per step, as vLLM and TGI do; `find_stop` finds where a stop string completes (only
where the new text can complete one); `held_back` says how much of a streamed tail must wait
because it may still become a stop string.
"""

from __future__ import annotations


class TextTail:
    """The text of one request's tokens so far, grown one token at a time."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        self.tokens: list[int] = []
        self.text = ""
        self._prefix = 0  # tokens[_prefix:_read] decode to `_before`, the tail of `text`
        self._read = 0
        self._before = ""

    def add(self, token: int, flush: bool = False) -> str:
        """Append a token; the text it adds ("" while a multi-byte character is incomplete, unless `flush`)."""
        self.tokens.append(token)
        now = self.tokenizer.decode(self.tokens[self._prefix:], skip_special_tokens=True)
        before = self._before
        if len(now) > len(before) and (flush or not now.endswith("\ufffd")):
            self._prefix, self._read = self._read, len(self.tokens)
            self._before = self.tokenizer.decode(self.tokens[self._prefix:], skip_special_tokens=True)
            delta = now[len(before):]
            self.text += delta
            return delta
        return ""


def find_stop(text: str, new_from: int, stops: list[str]) -> int:
    """Index in `text` where the earliest stop string starts, searching only where text from `new_from`
    on can complete one; -1 if none."""
    best = -1
    for stop in stops:
        if not stop:
            continue
        at = text.find(stop, max(0, new_from - len(stop) + 1))
        if at >= 0 and (best < 0 or at < best):
            best = at
    return best


def cut_at_stop(text: str, stops: list[str]) -> str:
    """`text` up to the first stop string (all of it if none occurs)."""
    at = find_stop(text, 0, stops)
    return text if at < 0 else text[:at]


def held_back(text: str, stops: list[str]) -> int:
    """Length of the longest tail of `text` that is the start of a stop string (it may become one)."""
    best = 0
    for stop in stops:
        for n in range(min(len(stop) - 1, len(text)), best, -1):
            if text.endswith(stop[:n]):
                best = n
                break
    return best
