"""Zero-shot prompting baseline: an instruction to an instruction-tuned model, the label read off
the verbalizer words' log-probabilities at the answer position. Nothing is trained.

* Prompt: the task's natural question and the input in the tokenizer's chat template, the
  assistant turn opened with the task's answer prefix ("The sentiment of this text is"); tasks
  without a question get a generic instruction. Without a chat template: "...\\n<prefix or Answer:>".
  Long inputs are shortened in the *input text* only (the longer segment first for pairs); the
  instruction and the assistant turn are always kept.
* Label tokens: the tokens the rendered answer "prompt + word" actually has after the prompt
  (" negative" after an answer prefix or "Answer:"; "negative" right after a bare "assistant\\n");
  multi-token words score all their tokens.
* Calibration removes the model's prior for one label word: "batch" (Zhou et al. 2023, Batch
  Calibration) subtracts the mean label scores over the evaluated inputs (no labels used);
  "content-free" (Zhao et al. 2021) subtracts the scores of a content-free input ("N/A").
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from softprompt.heads import VerbalizerHead
from softprompt.methods.config import method_config
from softprompt.model import SoftPromptModel
from softprompt.tasks import Example, Task
from softprompt.tasks.chat import has_chat_template, render_user
from softprompt.train.batches import Encoded
from softprompt.train.calibration import batch_calibrate, calibrate, calibration_mode

CONTENT_FREE = "N/A"


def instruction(task: Task, example: Example) -> str:
    """The task's natural question over the text, or else the generic one-word instruction."""
    if task.question:
        return f"{task.question}\n\n{_body(example)}"
    return one_word_instruction(task, example)


def one_word_instruction(task: Task, example: Example) -> str:
    """Asks for one label word, which a parser can read back from generated text."""
    options = " or ".join(f'"{w}"' for w in task.verbalizer)
    return f"Task: {task.description}.\nInput: {_body(example)}\nAnswer with one word, {options}."


def _body(example: Example) -> str:
    return example.text if example.text_pair is None else f"{example.text}\n{example.text_pair}"


def render(task: Task, tokenizer, example: Example) -> str:
    """The whole prompt up to the answer position."""
    text = instruction(task, example)
    if has_chat_template(tokenizer):
        return render_user(tokenizer, text) + task.answer_prefix
    return text + "\n" + (task.answer_prefix or "Answer:")


def _ids(tokenizer, text: str) -> list[int]:
    # a chat template writes its own special tokens; a plain prompt gets the tokenizer's usual ones
    return tokenizer(text, add_special_tokens=not has_chat_template(tokenizer))["input_ids"]


def answer_separator(task: Task, tokenizer) -> str:
    """Right after the assistant header no space; after an answer prefix or "Answer:" one."""
    return "" if has_chat_template(tokenizer) and not task.answer_prefix else " "


def label_token_ids(task: Task, tokenizer) -> list[list[int]]:
    """Each verbalizer word's tokens as they come out of tokenizing "prompt + word"."""
    prompt = render(task, tokenizer, Example(CONTENT_FREE, CONTENT_FREE if task.is_pair else None, None, None, "-"))
    base = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    out = []
    for word in task.verbalizer:
        full = tokenizer(prompt + answer_separator(task, tokenizer) + word, add_special_tokens=False)["input_ids"]
        if full[: len(base)] != base or len(full) == len(base):
            raise ValueError(f"label word {word!r} merges with the end of the prompt; cannot score it at the answer position")
        out.append(full[len(base):])
    return out


def _shrink(lengths: list[int], budget: int) -> list[int]:
    """Token counts per segment summing to <= budget, cutting the longest segment first."""
    keep = list(lengths)
    while sum(keep) > max(budget, 0):
        i = int(np.argmax(keep))
        over = sum(keep) - max(budget, 0)
        second = max([k for j, k in enumerate(keep) if j != i], default=0)
        keep[i] -= min(over, max(keep[i] - second, 1))
    return keep


def _cut(tokenizer, text: str, n_tokens: int) -> str:
    """The longest prefix of `text` ending at a token edge that re-tokenizes to <= n_tokens tokens."""
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    if n_tokens >= len(enc["input_ids"]):
        return text
    for k in range(n_tokens, 0, -1):  # a cut inside a multi-byte character can re-tokenize longer
        prefix = text[: enc["offset_mapping"][k - 1][1]]
        if len(tokenizer(prefix, add_special_tokens=False)["input_ids"]) <= n_tokens:
            return prefix
    return ""


def fit_input(task: Task, tokenizer, example: Example, max_length: int) -> tuple[list[int], bool]:
    """Prompt ids within max_length, shortening only the input text; (ids, whether it was cut)."""
    ids = _ids(tokenizer, render(task, tokenizer, example))
    if len(ids) <= max_length:
        return ids, False
    segments = [example.text] + ([example.text_pair] if example.text_pair is not None else [])
    for _ in range(8):  # tokens at the segment edges may merge differently in context: re-measure
        lengths = [len(tokenizer(s, add_special_tokens=False)["input_ids"]) for s in segments]
        keep = _shrink(lengths, sum(lengths) - (len(ids) - max_length))
        segments = [_cut(tokenizer, s, k) for s, k in zip(segments, keep)]
        example = replace(example, text=segments[0], text_pair=segments[1] if len(segments) > 1 else None)
        ids = _ids(tokenizer, render(task, tokenizer, example))
        if len(ids) <= max_length:
            return ids, True
        if not any(segments):
            break
    raise ValueError(f"max_length {max_length} is too short for the {task.name} instruction and chat template "
                     f"({len(ids)} tokens with an empty input)")


def encode_prompts(task: Task, tokenizer, examples: list[Example], max_length: int) -> Encoded:
    fitted = [fit_input(task, tokenizer, e, max_length) for e in examples]
    labels = np.array([np.nan if e.label is None else e.label for e in examples], dtype=np.float64)
    return Encoded([ids for ids, _ in fitted], None, labels, [e.group for e in examples], sum(cut for _, cut in fitted))


def content_free(task: Task) -> Example:
    return Example(CONTENT_FREE, CONTENT_FREE if task.is_pair else None, 0, None, "content-free")


def zero_shot_model(backbone, task: Task) -> SoftPromptModel:
    model = SoftPromptModel(backbone, method_config("zero-shot"), task.num_labels, False, list(task.verbalizer))
    if backbone.kind == "decoder":
        device = model.runner.word_embeddings.weight.device
        model.head = VerbalizerHead(model.runner.lm_head(), label_token_ids(task, backbone.tokenizer)).to(device)
    return model.eval()


def zero_shot_logits(model, task: Task, enc: Encoded, max_length: int, batch_size: int,
                     calibrated: bool | str) -> np.ndarray:
    """Label-word scores per example, calibrated as `calibration_mode(calibrated)` says."""
    from softprompt.train.evaluate import predict_logits

    mode = calibration_mode(calibrated)
    tokenizer = model.backbone.tokenizer
    logits = predict_logits(model, enc, batch_size, tokenizer)
    if mode == "batch":
        return batch_calibrate(logits)
    if mode == "none":
        return logits
    blank = encode_prompts(task, tokenizer, [content_free(task)], max_length)
    return calibrate(logits, predict_logits(model, blank, 1, tokenizer)[0])
