"""The architecture matrix: what works on each architecture, measured on a tiny random model of it.

`check_architecture(arch)` runs every check on `tiny-<arch>` and returns the figures; the test
suite asserts them (tests/core/test_architectures.py) and `softprompt models --matrix` writes
them as docs/models.md. Checks, each a number or the reason it does not apply:

- parity: the no-prompt layer loop against the model's own forward (max |diff| of final states);
- one preset per site (embeddings: prompt tuning, layer m: ID-SPAM, key/values: prefix tuning)
  trained 5 AdamW steps on one batch: the loss on that batch (dropout off) before and after (classification for encoders, the LM
  loss on target tokens for decoders and encoder-decoders);
- cached decoding against recomputation (max |diff| of next-token logits over 4 steps, relative to the
  largest logit when that is above 1);
- a mixed batch (two adapters at two sites) against each request alone;
- save/load round trip (`wrap()` + save_pretrained/from_pretrained for generative models);
- peft: greedy tokens of the exported adapter in `PeftModel` against softprompt's.
"""

from __future__ import annotations

import tempfile
import warnings
from dataclasses import dataclass, field

import torch

from softprompt.backbones import load_backbone
from softprompt.errors import SoftPromptError
from softprompt.methods import method_config
from softprompt.model import SoftPromptModel
from softprompt.runners import TESTED, Sequence, runner_for
from softprompt.runners.loop import run_layers
from softprompt.checks.recompute import RecomputedLane

SITE_PRESETS = {"embeddings": "prompt-tuning", "layer": "id-spam", "kv": "prefix-tuning", "adaption": "adaption-prompt",
                "propagate": "prefix-propagation"}
SITE_COLUMNS = {"embeddings": "embeddings", "layer": "layer m", "kv": "key/values", "adaption": "gated attention",
                "propagate": "propagated prefix"}
TEXTS = ["a gripping, beautifully acted film", "dull", "not bad at all, really"]
TARGETS = [" yes", " no way", " fine"]
STEPS = 5


@dataclass
class Report:
    architecture: str
    kind: str = ""
    runner: str = ""
    parity: float | None = None
    training: dict = field(default_factory=dict)  # site -> (first loss, last loss) or the reason it is refused
    cached: float | str | None = None
    mixed: float | str | None = None
    round_trip: float | str | None = None
    peft: dict = field(default_factory=dict)  # preset -> True (same tokens), False, or the reason


def tiny_name(arch: str) -> str:
    return "tiny-gemma3" if arch == "gemma3_text" else f"tiny-{arch}"


def check_architecture(arch: str, only: tuple[str, ...] | None = None) -> Report:
    """Every check (or those in `only`) on tiny-<arch>."""
    bb = load_backbone(tiny_name(arch))
    report = Report(arch, bb.kind, type(runner_for(bb.model, bb.kind)).__name__)
    checks = {"parity": _parity, "training": _training, "cached": _cached, "mixed": _mixed,
              "round_trip": _round_trip, "peft": _peft}
    for name, check in checks.items():
        if only is None or name in only:
            setattr(report, name, check(bb))
    return report


def all_architectures() -> list[str]:
    return [arch for names in TESTED.values() for arch in names]


# ---------------------------------------------------------------------------------------- checks
def _batch(tok, texts=TEXTS, side=None):
    if side:
        tok.padding_side = side
    enc = tok(texts, padding=True, return_tensors="pt")
    return enc["input_ids"], enc["attention_mask"], enc.get("token_type_ids")


@torch.no_grad()
def _parity(bb) -> float:
    runner = runner_for(bb.model, bb.kind)
    worst = 0.0
    for side in ("left", "right") if bb.kind == "decoder" else ("right",):
        ids, mask, types = _batch(bb.tokenizer, side=side)
        seq = Sequence(runner.token_embeddings(ids), mask.bool(), mask.bool(), types)
        seq = seq.with_hidden(runner.embed(seq))
        ours = runner.finish(run_layers(runner, [], seq, seq.hidden, 0, runner.num_layers).hidden)
        if bb.kind == "decoder":
            pos = (mask.cumsum(1) - 1).clamp(min=0)
            ref = bb.model(input_ids=ids, attention_mask=mask, position_ids=pos, output_hidden_states=True)
            ref = ref.hidden_states[-1]
        elif bb.kind == "encoder-decoder":
            ref = bb.model.get_encoder()(input_ids=ids, attention_mask=mask).last_hidden_state
        else:
            ref = bb.model(input_ids=ids, attention_mask=mask, **({"token_type_ids": types} if types is not None
                                                                   else {})).last_hidden_state
        real = mask.bool()
        worst = max(worst, float((ours[real] - ref[real]).abs().max()))
    return worst


def build(bb, preset: str, seed: int = 0, generative: bool | None = None, **overrides) -> SoftPromptModel:
    torch.manual_seed(seed)
    generative = bb.kind != "encoder" if generative is None else generative
    method = method_config(preset, **{"producer": {"num_tokens": 4}, **overrides})
    return SoftPromptModel(bb, method, 0 if generative else 2, generative=generative, max_length=64)


def _lm_batch(tok):
    """Decoders: text + target in one row, labels on the target; encoder-decoders: labels = target ids."""
    tok.padding_side = "right"
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    rows = [(tok(t)["input_ids"], tok(y, add_special_tokens=False)["input_ids"]) for t, y in zip(TEXTS, TARGETS)]
    width = max(len(a) + len(b) for a, b in rows)
    ids = torch.full((len(rows), width), tok.pad_token_id)
    mask, labels = torch.zeros_like(ids), torch.full_like(ids, -100)
    for r, (a, b) in enumerate(rows):
        ids[r, :len(a) + len(b)] = torch.tensor(a + b)
        mask[r, :len(a) + len(b)] = 1
        labels[r, len(a):len(a) + len(b)] = torch.tensor(b)
    return ids, mask, labels


def _training(bb) -> dict:
    out = {}
    for site, preset in SITE_PRESETS.items():
        try:
            model = build(bb, preset, **({"site": {"layer": 1}} if site == "layer" else {}))
        except SoftPromptError as err:
            out[site] = str(err)
            continue
        model.train()
        opt = torch.optim.AdamW(model.adapter_params().values(), lr=1e-2)
        if bb.kind == "encoder":
            ids, mask, types = _batch(bb.tokenizer, side="right")
            labels, kwargs = torch.tensor([1, 0, 1]), {"token_type_ids": types}
        elif bb.kind == "decoder":
            ids, mask, labels = _lm_batch(bb.tokenizer)
            kwargs = {"source_mask": (labels == -100) & mask.bool()}
        else:
            ids, mask, _ = _batch(bb.tokenizer, side="right")
            labels = bb.tokenizer(TARGETS, padding=True, return_tensors="pt")["input_ids"]
            labels[labels == bb.tokenizer.pad_token_id] = -100
            kwargs = {}
        def eval_loss() -> float:  # dropout off: the before/after comparison is not noise
            model.eval()
            with torch.no_grad():
                return float(model(ids, mask, labels=labels, **kwargs).loss)

        before = eval_loss()
        model.train()
        for _ in range(STEPS):
            model(ids, mask, labels=labels, **kwargs).loss.backward()
            opt.step()
            opt.zero_grad()
        losses = [before, eval_loss()]
        out[site] = (losses[0], losses[-1])
    return out


def _perturbed(bb, preset: str, seed: int = 0, **kw) -> SoftPromptModel:
    model = build(bb, preset, seed, **kw).eval()
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():  # every prompt parameter matters (zero-initialised parts too)
        for p in model.producer.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * 0.3)
    return model


@torch.no_grad()
def _cached(bb) -> float | str:
    if bb.kind == "encoder":
        return "n/a: encoders do not decode"
    worst = 0.0
    for preset in ("prompt-tuning", "prefix-tuning"):
        model = _perturbed(bb, preset)
        ids, mask, _ = _batch(bb.tokenizer, side="left" if bb.kind == "decoder" else "right")
        worst = max(worst, _cache_gap(model, ids, mask))
    return worst


def _cache_gap(model, ids, mask) -> float:
    """The cached lane against a lane that reruns the whole sequence each step (greedy, 4 steps)."""
    cached, recomputed, worst = model.lane(ids, mask), RecomputedLane(model, ids, mask), 0.0
    for _ in range(4):
        worst = max(worst, _relative_gap(cached.logits, recomputed.logits))
        nxt = recomputed.logits.argmax(-1)
        cached.step(nxt)
        recomputed.step(nxt)
    return worst


def _relative_gap(logits: torch.Tensor, ref: torch.Tensor) -> float:
    """max |difference| over the logits' own scale (mT5's logits are ~30, T5's ~3: the same float error)."""
    return float((logits - ref).abs().max() / ref.abs().max().clamp(min=1.0))


@torch.no_grad()
def _mixed(bb) -> float | str:
    from softprompt.serve.mixed import Group, mixed_logits

    presets = ("prompt-tuning", "id-spam") if bb.kind == "encoder-decoder" else ("prompt-tuning", "prefix-tuning")
    try:
        models = [_perturbed(bb, p, seed, generative=False, **({"site": {"layer": 1}} if p == "id-spam" else {}))
                  for seed, p in enumerate(presets)]
    except SoftPromptError as err:
        return str(err)
    ids, mask, types = _batch(bb.tokenizer, side="right")
    rows = [torch.tensor([0, 2]), torch.tensor([1])]
    groups = [Group(m, r) for m, r in zip(models, rows)]
    worst = 0.0
    for g, logits in zip(groups, mixed_logits(models[0].runner, groups, ids, mask, types)):
        for j, row in enumerate(g.rows.tolist()):
            n = int(mask[row].sum())
            one = g.model(ids[row:row + 1, :n], mask[row:row + 1, :n],
                          None if types is None else types[row:row + 1, :n]).logits
            worst = max(worst, float((logits[j] - one[0]).abs().max()))
    return worst


def _round_trip(bb) -> float | str:
    """Generative: wrap(), one step, save_pretrained/from_pretrained, same logits; encoders: adapter files."""
    from softprompt.adapter import load_adapter, save_adapter

    with tempfile.TemporaryDirectory() as tmp:
        if bb.kind == "encoder":
            model = _perturbed(bb, "prefix-tuning" if _kv_ok(bb) else "prompt-tuning")
            ids, mask, types = _batch(bb.tokenizer, side="right")
            save_adapter(model, tmp)
            back = load_adapter(tmp, bb).eval()
            with torch.no_grad():
                return float((model(ids, mask, types).logits - back(ids, mask, types).logits).abs().max())
        import softprompt
        from softprompt.wrap import WrappedModel

        torch.manual_seed(0)
        wrapped = softprompt.wrap(bb.model, bb.tokenizer, method="prefix-tuning", producer={"num_tokens": 4})
        ids, mask, labels = _lm_batch(bb.tokenizer)
        if bb.kind == "encoder-decoder":
            labels = bb.tokenizer(TARGETS, padding=True, return_tensors="pt")["input_ids"]
        opt = torch.optim.AdamW([p for p in wrapped.parameters() if p.requires_grad], lr=1e-2)
        wrapped.train()
        wrapped(ids, mask, labels=labels).loss.backward()
        opt.step()
        wrapped.eval()
        wrapped.save_pretrained(tmp)
        back = WrappedModel.from_pretrained(tmp).eval()
        with torch.no_grad():
            a, b = wrapped(ids, mask, labels=labels), back(ids, mask, labels=labels)
            tokens_a = wrapped.generate(ids[:1, :int(mask[0].sum())], max_new_tokens=4, eos_token_id=-1)
            tokens_b = back.generate(ids[:1, :int(mask[0].sum())], max_new_tokens=4, eos_token_id=-1)
        if not torch.equal(tokens_a, tokens_b):
            return "generated tokens differ after the round trip"
        return float((a.loss - b.loss).abs())


def _kv_ok(bb) -> bool:
    try:
        build(bb, "prefix-tuning", generative=False)
        return True
    except SoftPromptError:
        return False


def _peft(bb) -> dict:
    """Greedy tokens of the exported adapter run by peft (PeftModel.generate) against softprompt's."""
    if bb.kind == "encoder":
        return {"prompt-tuning": "n/a: classification export (tests/interop/test_peft.py)"}
    from peft import PeftModel
    from transformers import GenerationConfig

    from softprompt.interop.peft import PeftInteropError, export_peft

    out = {}
    for preset in ("prompt-tuning", "prefix-tuning"):
        model = _perturbed(bb, preset)
        with tempfile.TemporaryDirectory() as tmp:
            try:
                export_peft(model, tmp)
            except PeftInteropError as err:
                out[preset] = str(err).split(": ", 1)[-1]
                continue
            base = load_backbone(tiny_name(bb.family)).model
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                pm = PeftModel.from_pretrained(base, tmp).eval()
        enc = bb.tokenizer([TEXTS[0]], return_tensors="pt")
        ours = model.generate(enc["input_ids"], enc["attention_mask"], max_new_tokens=6, eos_token_id=-1)
        cfg = GenerationConfig(max_new_tokens=6, do_sample=False, pad_token_id=bb.tokenizer.pad_token_id,
                               decoder_start_token_id=getattr(base.config, "decoder_start_token_id", None))
        cfg.eos_token_id = None  # eos is an ordinary token on both sides: all 6 tokens are compared
        base.generation_config.eos_token_id = base.config.eos_token_id = None
        base.generation_config.forced_eos_token_id = base.generation_config.forced_bos_token_id = None
        try:
            with torch.no_grad(), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                theirs = pm.generate(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"],
                                     generation_config=cfg)
        except Exception as err:  # peft itself cannot run this method on this architecture
            out[preset] = f"peft fails: {type(err).__name__}: {str(err).splitlines()[0][:120]}"
            continue
        theirs = theirs[:, enc["input_ids"].shape[1]:] if bb.kind == "decoder" else theirs[:, 1:]
        out[preset] = bool(torch.equal(ours, theirs[:, :6]))
    return out


# ------------------------------------------------------------------------------------------ report
def _cell(value, limit: float = 1e-5) -> str:
    if isinstance(value, str) and value.startswith("n/a"):
        return value
    if isinstance(value, str):
        return f"refused: {value}" if len(value) < 90 else f"refused: {value[:87]}..."
    if isinstance(value, tuple):
        return f"✓ {value[0]:.3f} → {value[1]:.3f}" if value[1] < value[0] else f"✗ {value[0]:.3f} → {value[1]:.3f}"
    if isinstance(value, bool):
        return "✓ same tokens" if value else "✗ tokens differ"
    if value is None:
        return "–"
    return f"{'✓' if value <= limit else '✗'} {value:.1e}"


def markdown(reports: list[Report], command: str) -> str:
    """docs/models.md: one row per architecture, one column per check."""
    lines = [
        "# Architectures softprompt drives", "",
        "Runners find a model's parts by what it exposes (token embeddings, a layer stack called with a mask, a",
        "key/value cache and positions, a final norm, an LM head), so models built the same way work too. Each row",
        "is measured on a tiny random model built from transformers' own config class (`tiny-<architecture>`).",
        f"Rebuilt by `{command}`; the same checks run in `make test` (tests/core/test_architectures.py).", "",
        "Columns: **parity** = max |difference| of final hidden states against the model's own forward (no prompt);",
        "**embeddings / layer m / key-values / gated attention / propagated prefix** = loss (dropout off) before →",
        "after 5 AdamW steps of prompt tuning / ID-SPAM at layer 1 / prefix tuning / adaption prompt (LLaMA-Adapter) /",
        "prefix-propagation on one batch",
        "(classification for encoders, the LM loss on target tokens otherwise); a refusal is the site's one line;",
        "**cached** = max |difference| of next-token logits (relative to the largest logit when above 1), key/value-",
        "cached decoding against recomputation over 4 steps;",
        "**mixed** = a batch of two adapters at two sites against each request alone; **round trip** = save/load",
        "(`wrap()` + `save_pretrained`/`from_pretrained` for generative models); **peft** = greedy tokens of the",
        "exported prompt-tuning / prefix-tuning adapter run by `PeftModel.generate`.", "",
        "| architecture | kind | runner | parity | " + " | ".join(SITE_COLUMNS[s] for s in SITE_PRESETS)
        + " | cached | mixed | round trip | peft prompt | peft prefix |",
        "|---|---|---|---|" + "---|" * len(SITE_PRESETS) + "---|---|---|---|---|",
    ]
    for r in reports:
        t, p = r.training, r.peft
        lines.append(" | ".join([
            f"| `{r.architecture}`", r.kind, r.runner, _cell(r.parity), *(_cell(t.get(s)) for s in SITE_PRESETS),
            _cell(r.cached), _cell(r.mixed), _cell(r.round_trip, 1e-6),
            _cell(p.get("prompt-tuning")), _cell(p.get("prefix-tuning")) + " |"]))
    return "\n".join(lines) + "\n"
