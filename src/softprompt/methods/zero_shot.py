"""Zero-shot prompting baseline: an instruction to an instruction-tuned model, the label read off
the verbalizer words' log-probabilities at the answer position. Nothing is trained."""

from __future__ import annotations

from softprompt.methods.presets import method_config
from softprompt.model import SoftPromptModel
from softprompt.tasks import Example, Task


def instruction(task: Task, example: Example) -> str:
    options = " or ".join(f'"{w}"' for w in task.verbalizer)
    body = example.text if example.text_pair is None else f"{example.text}\n{example.text_pair}"
    return f"Task: {task.description}.\nInput: {body}\nAnswer with one word, {options}."


def template_for(task: Task, tokenizer):
    """Example -> (prompt text, None); uses the tokenizer's chat template when it has one."""

    def render(example: Example):
        text = instruction(task, example)
        if getattr(tokenizer, "chat_template", None):
            msgs = [{"role": "user", "content": text}]
            text = tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
        else:
            text = text + "\nAnswer:"
        return text, None

    return render


def zero_shot_model(backbone, task: Task) -> SoftPromptModel:
    model = SoftPromptModel(backbone, method_config("zero-shot"), task.num_labels, False, list(task.verbalizer))
    return model.eval()
