"""MPT's source training, prompt distillation (Wang et al., ICLR 2023, Sec. 3.1): two tiny teachers on two tasks."""

from __future__ import annotations

import pytest
import torch

from softprompt.adapter import load_adapter, save_adapter
from softprompt.cli import main
from softprompt.tasks import get_task
from softprompt.train.mpt_distill import MPTDistillation, MPTDistillConfig, task_batches
from tests.core.helpers import build

TASKS = ("rte", "cb")
LENGTH = 4
LAMBDA, TEMPERATURE = 0.7, 2.0  # not 1: a swapped or dropped factor shows


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny matrices: one thread is faster on a shared machine (and the same numbers)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def teachers(tmp_path_factory):
    """Two prompt-tuning teachers on tiny-llama: a run folder (adapter/ inside) and a bare adapter folder."""
    root = tmp_path_factory.mktemp("teachers")
    folders = []
    for i, task in enumerate(TASKS):
        model = build("tiny-llama", "prompt-tuning", num_labels=get_task(task).num_labels, seed=10 + i,
                      producer={"num_tokens": LENGTH})
        with torch.no_grad():
            model.producer.prompt.normal_(0.0, 0.5)
        target = root / task / "adapter" if i == 0 else root / task
        save_adapter(model, target, task=task, label_names=list(get_task(task).label_names))
        folders.append(str(root / task))
    return folders


def distillation(teachers, out, data_dir, **changes) -> MPTDistillation:
    settings = dict(teachers=teachers, output_dir=str(out), data_dir=str(data_dir), train_limit=40, eval_limit=8,
                    epochs=1, batch_size=8, max_length=24, lr=0.05, warmup_ratio=0.0, log_every=1, progress=False,
                    backbone_dropout=False, distill_weight=LAMBDA, temperature=TEMPERATURE)
    return MPTDistillation(MPTDistillConfig(**{**settings, **changes}), log=lambda *a: None).setup()


def hf_final_states(backbone, prompt, ids, mask):
    """Final hidden states of the plain HF model reading [prompt; text] (independent of softprompt's runner)."""
    inner = backbone.model.model
    words = inner.embed_tokens(ids)
    embeds = torch.cat([prompt.unsqueeze(0).expand(ids.shape[0], -1, -1), words], 1)
    full = torch.cat([torch.ones(ids.shape[0], prompt.shape[0], dtype=mask.dtype), mask], 1)
    positions = (full.cumsum(1) - 1).clamp(min=0)
    hidden = inner(inputs_embeds=embeds, attention_mask=full, position_ids=positions).last_hidden_state
    return hidden[:, prompt.shape[0]:][mask.bool()]  # (text tokens, d), row by row


def last_token(states, mask):
    ends = mask.sum(1).cumsum(0) - 1
    return states[ends]


def test_one_batch_loss_is_the_papers_equation(teachers, tmp_path, data_dir):
    run = distillation(teachers, tmp_path / "out", data_dir)
    distiller = run.distiller.eval()
    batches = run.batches(0)
    first = len(run.sources[0].train)  # task 0's examples are 0..first-1, task 1's follow
    assert all(len({i < first for i in b}) == 1 for b in batches)
    assert {run.collate(b)["task"] for b in batches} == {0, 1}  # both tasks, one per batch
    batch = run.collate(batches[0])
    k = batch["task"]
    teacher, student = distiller.teachers[k], distiller.students[k]
    ids, mask, labels = batch["input_ids"], batch["attention_mask"], batch["labels"].long()
    with torch.no_grad():
        got = distiller.losses(batch)
        # P̂_k = P* ∘ (U_k V_k), P* one tensor for every task
        shared, u, v = distiller.shared, student.producer.cols, student.producer.rows
        assert all(s.producer.shared is shared for s in distiller.students)
        assert torch.allclose(student.producer()[0], shared * (u @ v))
        h_t = hf_final_states(run.backbone, teacher.producer.prompt, ids, mask)
        h_s = hf_final_states(run.backbone, shared * (u @ v), ids, mask)
        head = teacher.head.out  # the teacher's own frozen head, last text token
        z_t = last_token(h_t, mask) @ head.weight.T + head.bias
        z_s = last_token(h_s, mask) @ head.weight.T + head.bias
        log_p = z_s.log_softmax(-1)
        task = -log_p[torch.arange(len(labels)), labels].mean()
        p_t = (z_t / TEMPERATURE).softmax(-1)
        kl = (p_t * (p_t.log() - (z_s / TEMPERATURE).log_softmax(-1))).sum(-1).mean()
        hidden = ((h_s - h_t) ** 2).mean()
        want = task + LAMBDA * (kl + hidden)
    assert kl > 0 and hidden > 0
    for name, value in (("task", task), ("logits", kl), ("hidden", hidden), ("loss", want)):
        assert torch.allclose(got[name], value, rtol=1e-4, atol=1e-6), name


def test_a_few_steps_lower_the_loss_and_the_output_loads_into_the_mpt_producer(teachers, tmp_path, data_dir):
    out = tmp_path / "out"
    run = distillation(teachers, out, data_dir)
    fixed = [run.collate(b) for b in run.batches(0)]

    def mean_loss():
        run.distiller.eval()
        with torch.no_grad():
            return sum(run.distiller.losses(b)["loss"].item() for b in fixed) / len(fixed)

    before = mean_loss()
    summary = run.run()
    after = mean_loss()
    assert summary["steps"] == len(fixed) >= 8
    assert after < before - 0.02, (before, after)
    # the one evaluation (end of the one epoch) saved the final P* and the mean U, V
    students = run.distiller.students
    target = build("tiny-llama", "mpt", seed=5, producer={"num_tokens": LENGTH, "shared_from": str(out)})
    assert torch.equal(target.producer.shared, run.distiller.shared.detach())
    assert torch.allclose(target.producer.cols, torch.stack([s.producer.cols for s in students]).mean(0))
    assert torch.allclose(target.producer.rows, torch.stack([s.producer.rows for s in students]).mean(0))
    # each task's student is a full adapter: P*, its own U_k, V_k, its teacher's head
    for task, student in zip(TASKS, students):
        loaded = load_adapter(out / "tasks" / task, run.backbone)
        assert torch.equal(loaded.producer(), student.producer().detach())
        assert torch.equal(loaded.head.out.weight, student.head.out.weight)
        exact = build("tiny-llama", "mpt", producer={"num_tokens": LENGTH, "shared_from": str(out / "tasks" / task)})
        assert torch.equal(exact.producer.cols, student.producer.cols.detach())


def test_batches_take_one_task_each_in_proportion_or_in_turn():
    sizes = [30, 10]
    mixed = task_batches(sizes, 5, 0, 0, "proportional")
    assert sorted(i for b in mixed for i in b) == list(range(40))
    assert all(len({i >= 30 for i in b}) == 1 for b in mixed)
    turns = task_batches(sizes, 5, 0, 0, "round_robin")
    assert [b[0] >= 30 for b in turns[:4]] == [False, True, False, True]


def test_config_errors_name_the_field(tmp_path, capsys, teachers):
    assert main(["mpt-distill", "--teachers", "[]"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "teachers" in err[0]
    assert main(["mpt-distill", "--teachers", f"[{tmp_path}]"]) == 2
    assert "teachers[0]" in capsys.readouterr().err
    assert main(["mpt-distill", "--teachers", f"[{teachers[0]}, {teachers[0]}]"]) == 2
    assert "teachers[1]: a second teacher for task 'rte'" in capsys.readouterr().err
    assert main(["mpt-distill", "--teachers", f"[{teachers[0]}]", "--temperature", "0"]) == 2
    assert "temperature" in capsys.readouterr().err


def test_generation_teacher_distils_through_the_lm_head(tmp_path, data_dir):
    """e2e (decoder LM head over the target tokens) beside a classification task: a student whose P* ∘ (U V)
    is its teacher's prompt has nothing to distil, and its task term is the model's own LM loss."""
    from softprompt.backbones import load_backbone
    from softprompt.methods import method_config
    from softprompt.model import SoftPromptModel

    folders = []
    for i, name in enumerate(("e2e", "rte")):
        task = get_task(name)
        torch.manual_seed(i)
        model = SoftPromptModel(load_backbone("tiny-llama"), method_config("prompt-tuning", producer={"num_tokens": LENGTH}),
                                task.num_labels, task.is_regression, list(task.verbalizer), generative=task.is_generation)
        save_adapter(model, tmp_path / name, task=name, label_names=list(task.label_names))
        folders.append(str(tmp_path / name))
    run = distillation(folders, tmp_path / "out", data_dir, train_limit=16, eval_limit=4, selection_split="validation")
    distiller = run.distiller.eval()
    teacher, student = distiller.teachers[0], distiller.students[0]
    with torch.no_grad():
        distiller.shared.copy_(teacher.producer.prompt)
        student.producer.cols.fill_(1.0)
        student.producer.rows.fill_(1.0)
    batch = run.collate(next(b for b in run.batches(0) if b[0] < len(run.sources[0].train)))
    assert batch["task"] == 0 and "source_mask" in batch
    with torch.no_grad():
        got = distiller.losses(batch)
        own = teacher(batch["input_ids"], batch["attention_mask"], labels=batch["labels"],
                      source_mask=batch["source_mask"]).loss
    assert got["logits"].abs() < 1e-6 and got["hidden"].abs() < 1e-10
    assert torch.allclose(got["loss"], own, atol=1e-5) and torch.allclose(got["task"], own, atol=1e-5)
