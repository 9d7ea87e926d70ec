"""Zero-shot baseline: input-only truncation, label tokens as the template produces them, calibration."""

import copy
from dataclasses import replace

import numpy as np
import pytest
import torch
from torch import nn

from softprompt.backbones import load_backbone
from softprompt.train import zero_shot as zs
from softprompt.model import Output
from softprompt.tasks import Example, get_task

CHATML = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
          "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
SST2 = get_task("sst2")  # asks its natural question, answer read after "The sentiment of this text is"
GENERIC = replace(SST2, question=None, answer_prefix="")  # a task without a question: generic instruction


@pytest.fixture(scope="module")
def llama():
    return load_backbone("tiny-llama")  # byte-level tokenizer: one token per character


@pytest.fixture()
def chat_tok(llama):
    tok = copy.deepcopy(llama.tokenizer)
    tok.chat_template = CHATML
    return tok


def example(text, label=1, pair=None):
    return Example(text, pair, label, None, "u")


def test_plain_prompt_long_input_keeps_the_instruction_and_answer_cue(llama):
    tok = llama.tokenizer
    ex = example("a" * 300 + "END")
    ids, cut = zs.fit_input(GENERIC, tok, ex, 120)
    assert cut and len(ids) == 120
    text = tok.decode(ids, skip_special_tokens=True)
    assert text.startswith("Task: SST-2 movie-review sentence sentiment.\nInput: aaa")
    assert text.endswith('\nAnswer with one word, "negative" or "positive".\nAnswer:')
    assert "END" not in text
    # everything but the input text is intact: the full prompt with the cut input is the same string
    short = example(text.split("Input: ")[1].split("\nAnswer with")[0])
    assert tok(zs.render(GENERIC, tok, short))["input_ids"] == ids


def test_chat_prompt_keeps_the_assistant_turn(chat_tok):
    ids, cut = zs.fit_input(GENERIC, chat_tok, example("b" * 500), 150)
    assert cut and len(ids) <= 150
    assert chat_tok.decode(ids).endswith('"positive".<|im_end|>\n<|im_start|>assistant\n')


def test_short_inputs_are_untouched_and_pairs_cut_the_longer_segment(llama):
    tok = llama.tokenizer
    ids, cut = zs.fit_input(SST2, tok, example("fine"), 256)
    assert not cut and ids == tok(zs.render(SST2, tok, example("fine")))["input_ids"]
    rte = get_task("rte")
    ex = example("p" * 400, pair="short hypothesis")
    ids, cut = zs.fit_input(rte, tok, ex, 200)
    text = tok.decode(ids, skip_special_tokens=True)
    assert cut and len(ids) <= 200 and "\nshort hypothesis\n" in text


def test_encode_prompts_counts_the_cut_inputs(llama):
    enc = zs.encode_prompts(SST2, llama.tokenizer, [example("x" * 400), example("ok", 0)], 128)
    assert enc.truncated == 1 and max(enc.lengths) <= 128 and enc.labels.tolist() == [1.0, 0.0]


def test_label_tokens_follow_the_chat_template_without_a_leading_space(chat_tok, llama):
    ids = zs.label_token_ids(GENERIC, chat_tok)
    assert ids == [chat_tok("negative", add_special_tokens=False)["input_ids"],
                   chat_tok("positive", add_special_tokens=False)["input_ids"]]
    assert ids[0] != chat_tok(" negative", add_special_tokens=False)["input_ids"]
    # a plain "...Answer:" prompt is answered after a space
    assert zs.label_token_ids(GENERIC, llama.tokenizer)[0] == llama.tokenizer(" negative", add_special_tokens=False)["input_ids"]


def test_question_and_answer_prefix_frame_the_input_and_the_label_words_follow_the_prefix(chat_tok, llama):
    assert zs.render(SST2, llama.tokenizer, example("a fine film")) == (
        "Is the sentiment of this text positive or negative?\n\na fine film\nThe sentiment of this text is")
    chat = zs.render(SST2, chat_tok, example("a fine film"))
    assert chat.endswith("a fine film<|im_end|>\n<|im_start|>assistant\nThe sentiment of this text is")
    ids, cut = zs.fit_input(SST2, chat_tok, example("b" * 500), 150)  # the prefix survives a cut input
    assert cut and chat_tok.decode(ids).endswith("<|im_start|>assistant\nThe sentiment of this text is")
    assert zs.label_token_ids(SST2, chat_tok)[1] == chat_tok(" positive", add_special_tokens=False)["input_ids"]


def test_batch_calibration_centres_each_label_and_flips_biased_predictions():
    raw = np.array([[-1.0, -0.5], [-0.9, -0.6], [-1.2, -0.3], [-1.5, -0.2]])  # always "positive"
    cal = zs.batch_calibrate(raw)
    np.testing.assert_allclose(cal, raw - raw.mean(0))
    np.testing.assert_allclose(cal.mean(0), 0.0, atol=1e-12)
    assert raw.argmax(-1).tolist() == [1, 1, 1, 1] and cal.argmax(-1).tolist() == [0, 0, 1, 1]
    assert zs.calibration_mode(True) == "content-free" and zs.calibration_mode(False) == "none"
    with pytest.raises(ValueError, match="calibration must be one of batch, content-free, none"):
        zs.calibration_mode("platt")


def test_zero_shot_scores_are_the_log_probs_of_the_rendered_answer(llama, chat_tok):
    llama.tokenizer = chat_tok
    model = zs.zero_shot_model(llama, SST2)
    exs = [example("a moving film"), example("dull and long", 0)]
    enc = zs.encode_prompts(SST2, chat_tok, exs, 256)
    got = zs.zero_shot_logits(model, SST2, enc, 256, 8, calibrated=False)
    with torch.no_grad():
        for i, ex in enumerate(exs):
            prompt = zs.render(SST2, chat_tok, ex)
            x = chat_tok(prompt, add_special_tokens=False)["input_ids"]
            for j, word in enumerate(SST2.verbalizer):  # multi-token words (byte-level): every token counts
                full = chat_tok(prompt + zs.answer_separator(SST2, chat_tok) + word, add_special_tokens=False)["input_ids"]
                logp = llama.model(input_ids=torch.tensor([full])).logits.log_softmax(-1)[0]
                expected = sum(logp[k - 1, full[k]] for k in range(len(x), len(full)))
                assert got[i, j] == pytest.approx(float(expected), abs=1e-4), (i, j)


class FixedScores(nn.Module):
    """Stands in for the LM: returns given label scores for each exact prompt."""

    def __init__(self, backbone, table):
        super().__init__()
        self.backbone = backbone
        self.table = table
        self.anchor = nn.Parameter(torch.zeros(1))

    def forward(self, input_ids, attention_mask, token_type_ids=None):
        rows = [tuple(i for i, m in zip(r.tolist(), mk.tolist()) if m) for r, mk in zip(input_ids, attention_mask)]
        return Output(torch.tensor([self.table[r] for r in rows]))


def test_calibration_subtracts_the_content_free_scores_and_flips_biased_predictions(llama):
    tok = llama.tokenizer
    texts = ["one", "two", "three", "four"]
    labels = [0, 0, 1, 1]
    enc = zs.encode_prompts(SST2, tok, [example(t, y) for t, y in zip(texts, labels)], 256)
    blank = zs.encode_prompts(SST2, tok, [zs.content_free(SST2)], 256)
    # a model biased towards "positive": raw scores predict positive for every example
    raw = [[-1.0, -0.5], [-0.9, -0.6], [-1.2, -0.3], [-1.5, -0.2]]
    table = {tuple(ids): s for ids, s in zip(enc.input_ids, raw)}
    table[tuple(blank.input_ids[0])] = [-1.0, -0.4]
    model = FixedScores(llama, table)
    uncal = zs.zero_shot_logits(model, SST2, enc, 256, 2, calibrated=False)
    cal = zs.zero_shot_logits(model, SST2, enc, 256, 2, calibrated=True)
    np.testing.assert_allclose(uncal, raw)
    np.testing.assert_allclose(cal, [[0.0, -0.1], [0.1, -0.2], [-0.2, 0.1], [-0.5, 0.2]], atol=1e-6)
    assert uncal.argmax(-1).tolist() == [1, 1, 1, 1]  # accuracy 50
    assert cal.argmax(-1).tolist() == [0, 0, 1, 1]  # accuracy 100


def test_evaluate_zero_shot_reports_calibrated_and_raw_differently(data_dir, monkeypatch):
    from softprompt.train import inference

    seen = []
    real = zs.calibrate
    monkeypatch.setattr(zs, "calibrate", lambda l, c: seen.append(c) or real(l, c))
    raw = inference.evaluate_zero_shot("tiny-llama", "sst2", "validation", data_dir, limit=12, calibrate=False)
    cal = inference.evaluate_zero_shot("tiny-llama", "sst2", "validation", data_dir, limit=12, calibrate=True)
    assert raw["calibrated"] is False and cal["calibrated"] is True and len(seen) == 1
    assert seen[0].shape == (2,) and np.all(seen[0] < 0)  # log-probs of the content-free prompt
