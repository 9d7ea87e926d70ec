"""Each soft-prompt producer against its published equations, written out here in plain torch.

Sources: LPT github.com/xyltt/LPT (models/modeling_roberta.py), SMoP github.com/jyjohnchoi/SMoP
(tuners/prompt_routing.py), DePT github.com/ZhengxiangShi/DePT (tuners/prompt_tuning_lora.py),
ID-SPAM /work/shared/seeds/001_* eq. (1)-(2), Prompt Tuning Lester et al. 2021 Sec. 3.2.
"""

import contextlib
import itertools
import math

import pytest
import torch
from torch import nn

from softprompt.errors import ConfigError
from softprompt.producers import ProducerInput
from softprompt.producers.attention import AttentionConfig, AttentionPromptGenerator
from softprompt.producers.decomposed import DecomposedConfig, DecomposedPrompt
from softprompt.producers.pooled import PooledConfig, PooledPromptGenerator
from softprompt.producers.router import RoutedPrompt, RouterConfig
from softprompt.producers.static import StaticConfig, StaticPrompt, sample_vocab
from tests.core.helpers import SOFT, TEXTS, batch, build

D = 16
LENGTHS = [7, 3, 5]  # real tokens per row; rows are right-padded to 7


def right_padded(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    e = torch.randn(len(LENGTHS), max(LENGTHS), D, generator=g)
    h = torch.randn(len(LENGTHS), max(LENGTHS), D, generator=g)
    mask = torch.arange(max(LENGTHS))[None, :] < torch.tensor(LENGTHS)[:, None]
    return e, h, mask


def linear(x, layer: nn.Linear):
    out = x @ layer.weight.T
    return out if layer.bias is None else out + layer.bias


def segments(length: int, t: int):
    """Adaptive pooling windows: [floor(i L / t), ceil((i + 1) L / t))."""
    return [(math.floor(i * length / t), math.ceil((i + 1) * length / t)) for i in range(t)]


# -- LPT --------------------------------------------------------------------------------------
def test_lpt_npg_reads_cls_then_down_relu_up_with_dropout():
    gen = PooledPromptGenerator(PooledConfig(num_tokens=4, bottleneck=8), D, D).eval()
    assert gen.cfg.generator == "npg" and gen.cfg.dropout == 0.1
    _, h, mask = right_padded()
    with torch.no_grad():
        got = gen(ProducerInput(None, h, mask))
        for b, n in enumerate(LENGTHS):
            for read_first, pos in ((True, 0), (False, n - 1)):  # encoder [CLS] / decoder last token
                gen.read_first = read_first
                expected = linear(torch.relu(linear(h[b, pos], gen.down)), gen.up).view(4, D)
                assert torch.allclose(gen(ProducerInput(None, h, mask))[b], expected, atol=1e-6)
    assert got.shape == (3, 4, D)
    gen.train()
    dropped = gen(ProducerInput(None, h, mask))
    assert 0.02 < float((dropped == 0).float().mean()) < 0.3  # dropout 0.1 on the generated prompt


@pytest.mark.parametrize("generator,reduce", [("appg", torch.mean), ("mppg", torch.amax)])
def test_lpt_pooling_generators_pool_projected_tokens_into_t_segments(generator, reduce):
    t = 4
    gen = PooledPromptGenerator(PooledConfig(num_tokens=t, bottleneck=8, generator=generator), D, D).eval()
    _, h, mask = right_padded(1)
    with torch.no_grad():
        got = gen(ProducerInput(None, h, mask))
        for b, n in enumerate(LENGTHS):  # length 3 < t: windows overlap, as adaptive pooling does
            x = linear(h[b, :n], gen.down)
            pooled = torch.stack([reduce(x[lo:hi], dim=0) for lo, hi in segments(n, t)])
            expected = linear(torch.relu(pooled), gen.up)
            assert torch.allclose(got[b], expected, atol=1e-6), (generator, b)
        # left padding: the same real tokens give the same prompt
        left = torch.zeros_like(h)
        left_mask = torch.zeros_like(mask)
        for b, n in enumerate(LENGTHS):
            left[b, h.shape[1] - n:] = h[b, :n]
            left_mask[b, h.shape[1] - n:] = True
        assert torch.allclose(gen(ProducerInput(None, left, left_mask)), got, atol=1e-6)
    assert gen.up.out_features == D  # one up-projection per pooled token


# -- SMoP -------------------------------------------------------------------------------------
def test_smop_router_relative_noise_and_weighted_sum_of_top_k():
    k, t = 4, 3
    gen = RoutedPrompt(RouterConfig(num_tokens=t, num_prompts=k, top_k=2), D, D)
    assert gen.router.bias is None
    w = gen.router.weight
    assert torch.allclose(w @ w.T, torch.eye(k), atol=1e-5)  # orthogonal init
    e, _, mask = right_padded(2)
    sentence = torch.stack([e[b, :n].mean(0) for b, n in enumerate(LENGTHS)])

    def reference(logits):
        p = logits.softmax(-1)
        top_p, top_i = p.topk(2, dim=-1)
        return torch.stack([sum(top_p[b, j] * gen.prompts[top_i[b, j]] for j in range(2)) for b in range(len(LENGTHS))])

    with torch.no_grad():
        z = sentence @ w.T
        gen.eval()
        assert torch.allclose(gen(ProducerInput(e, e, mask)), reference(z), atol=1e-6)
        gen.train()
        torch.manual_seed(7)
        got = gen(ProducerInput(e, e, mask))
        torch.manual_seed(7)
        eps = torch.randn(len(LENGTHS), k)
        assert torch.allclose(got, reference(z + 1.0 * eps * (1.0 * z)), atol=1e-6)  # GaussianNoise, sigma 1
    assert got.shape == (3, t, D) and gen.num_tokens == t  # summed, not concatenated


# -- DePT -------------------------------------------------------------------------------------
def test_dept_scaled_low_rank_update_of_the_input_embeddings():
    gen = DecomposedPrompt(DecomposedConfig(num_tokens=4, rank=3, max_length=10), D, D)
    assert float(gen.lora_b.detach().abs().max()) == 0.0
    assert float(gen.lora_a.detach().abs().max()) <= 1 / math.sqrt(3)  # Kaiming-uniform, a = sqrt(5)
    with torch.no_grad():
        gen.lora_b.normal_()
    e, _, mask = right_padded(3)
    with torch.no_grad():
        got = gen.adjust_embeddings(e, mask)
    update = (8.0 / math.sqrt(3)) * (gen.lora_a @ gen.lora_b)  # lora_alpha / sqrt(r) * A B
    for b, n in enumerate(LENGTHS):
        assert torch.allclose(got[b, :n], e[b, :n] + update[:n], atol=1e-5)
        assert torch.equal(got[b, n:], e[b, n:])  # padding untouched
    assert gen(None).shape == (1, 4, D)


def test_dept_sizes_a_by_the_run_and_refuses_an_unfitted_config():
    assert DecomposedConfig().fit(128).max_length == 128
    assert DecomposedConfig(max_length=32).fit(128).max_length == 32  # an explicit value stays
    with pytest.raises(ConfigError, match="method.producer.max_length"):
        DecomposedPrompt(DecomposedConfig(), D, D)
    model = build("tiny-bert", "dept", producer={"max_length": 40})
    assert model.producer.lora_a.shape[0] == 40


@pytest.mark.parametrize("max_length,rank", [(256, 30), (512, 24)])
def test_dept_default_rank_keeps_the_budget_of_100_prompt_tokens(max_length, rank):
    # the reference's T5-base checkpoints: m 60 with r 30 at s 256, r 24 at s 512 (d 768)
    gen = DecomposedPrompt(DecomposedConfig(max_length=max_length), 768, 768)
    assert (gen.num_tokens, gen.rank) == (60, rank)
    assert sum(p.numel() for p in gen.parameters()) == 100 * 768


# -- ID-SPAM ----------------------------------------------------------------------------------
def test_id_spam_default_path_is_equations_1_and_2():
    t, c = 3, 5
    gen = AttentionPromptGenerator(AttentionConfig(num_tokens=t, bottleneck=c), D, D).eval()
    e, _, mask = right_padded(4)
    with torch.no_grad():
        got = gen(ProducerInput(e, e, mask))
        for b, n in enumerate(LENGTHS):
            x = e[b, :n]
            q, k, v = x @ gen.wq.weight.T, x @ gen.wk.weight.T, x @ gen.wv.weight.T
            a = (torch.softmax(q @ k.T / math.sqrt(D), dim=-1) @ v).mean(0)  # eq. (1)
            s = torch.relu(linear(torch.relu(linear(a, gen.down)), gen.up))  # eq. (2), both ReLUs
            assert torch.allclose(got[b], s.view(t, D), atol=1e-5)


# -- Prompt Tuning initialisation ---------------------------------------------------------------
def bert_like_tokenizer(tmp_path, words: int = 6000):
    """A WordPiece vocabulary laid out like BERT's: [unusedN] slots, specials, characters, words."""
    from transformers import BertTokenizer

    chars = list("!\"#$%&'()*+,-./0123456789:;<=>?@[\\]^_`{|}~") + [chr(c) for c in range(97, 123)]
    word_list = ["".join(p) for p in itertools.islice(itertools.product("abcdefghij", repeat=4), words)]
    vocab = (["[PAD]"] + [f"[unused{i}]" for i in range(99)] + ["[UNK]", "[CLS]", "[SEP]", "[MASK]"]
             + [f"[unused{i}]" for i in range(99, 994)] + chars + ["##" + c for c in chars] + word_list)
    (tmp_path / "vocab.txt").write_text("\n".join(vocab) + "\n")
    return BertTokenizer(str(tmp_path / "vocab.txt")), vocab


def test_vocab_init_samples_frequent_real_words_never_special_or_unused(tmp_path):
    tok, vocab = bert_like_tokenizer(tmp_path)
    special = set(tok.all_special_ids)
    def is_word(w):
        return not w.startswith("[") and len(w.removeprefix("##")) >= 2 and w.removeprefix("##").isalpha()

    cutoff = [i for i, w in enumerate(vocab) if is_word(w)][4999]  # the 5,000th word token
    for seed in range(5):
        ids = sample_vocab(tok, 300, seed).tolist()
        assert len(set(ids)) == 300  # without replacement
        for i in ids:
            assert i not in special and not vocab[i].startswith("[unused") and is_word(vocab[i]), vocab[i]
            assert i <= cutoff
    emb = nn.Embedding(len(vocab), 8)
    prompts = []
    for seed in (1, 2):
        torch.manual_seed(seed)  # the trainer seeds torch with the run seed
        p = StaticPrompt(StaticConfig(num_tokens=20, init="vocab"), 8, 8)
        p.init_from_words(emb, tok)
        with torch.no_grad():
            assert torch.equal(p.prompt, emb(sample_vocab(tok, 20, seed)))
        prompts.append(p.prompt.detach().clone())
    assert not torch.equal(prompts[0], prompts[1])  # the run seed, not a fixed one
    fixed = [StaticPrompt(StaticConfig(num_tokens=20, init="vocab", init_seed=3), 8, 8) for _ in range(2)]
    for i, p in enumerate(fixed):
        torch.manual_seed(i)
        p.init_from_words(emb, tok)
    assert torch.equal(fixed[0].prompt, fixed[1].prompt)


def test_vocab_init_on_the_real_bert_vocabulary():
    from softprompt.errors import BackboneError

    try:
        from transformers import AutoTokenizer

        from softprompt.backbones.packaged import minilm_folder

        tok = AutoTokenizer.from_pretrained(minilm_folder())
    except (BackboneError, OSError) as err:
        pytest.skip(f"minilm-l6 (BERT vocabulary) not installed: {err}")
    ids = sample_vocab(tok, 2000, 0).tolist()
    tokens = tok.convert_ids_to_tokens(ids)
    assert not [t for t in tokens if len(t.removeprefix("##")) < 2 or not t.removeprefix("##").isalpha()]
    assert min(ids) >= tok.convert_tokens_to_ids("the") == 1996  # BERT's words start after its character block


def test_label_init_is_the_label_words_embeddings():
    words = ["terrible", "great"]
    model = build("tiny-bert", "prompt-tuning", producer={"num_tokens": 5, "init": "labels", "label_words": words})
    tok, emb = model.backbone.tokenizer, model.runner.word_embeddings
    with torch.no_grad():
        ids = [torch.tensor(tok(w, add_special_tokens=False)["input_ids"]) for w in words]
        expected = torch.stack([emb(i).mean(0) for i in ids])  # a multi-token label word: mean
        prompt = model.producer.prompt
        assert torch.allclose(prompt[:2], expected, atol=1e-6)
        # the rest: sampled vocabulary (Lester et al.), seeded by the run seed (build seeds torch with 0)
        assert torch.equal(prompt[2:], emb(sample_vocab(tok, 3, 0)))
    cycled = build("tiny-bert", "prompt-tuning",
                   producer={"num_tokens": 5, "init": "labels", "label_words": words, "label_fill": "cycle"})
    assert torch.allclose(cycled.producer.prompt.detach(), expected[[0, 1, 0, 1, 0]], atol=1e-6)
    with pytest.raises(ConfigError, match="method.producer.label_words"):
        build("tiny-bert", "prompt-tuning", producer={"init": "labels"})


# -- every preset trains through its producer ------------------------------------------------------
@contextlib.contextmanager
def prompt_zeroed(producer):
    """The producer's contribution removed: zero prompts, no embedding edit (DePT)."""
    hook = producer.register_forward_hook(lambda module, args, out: torch.zeros_like(out))
    producer.adjust_embeddings = lambda token_embeds, mask: token_embeds
    try:
        yield
    finally:
        hook.remove()
        del producer.adjust_embeddings


@pytest.mark.parametrize("method", SOFT)
def test_trained_prompt_beats_a_zeroed_one_and_every_producer_weight_moves(method):
    model = build("tiny-bert", method)
    ids, mask, types = batch(model.backbone.tokenizer, TEXTS)
    labels = torch.tensor([1, 0, 1, 0])
    before = {n: p.detach().clone() for n, p in model.producer.named_parameters()}
    model.train()
    model.head.dropout.p = 0.0
    opt = torch.optim.Adam(model.producer.parameters(), lr=1e-2)  # the head stays as built
    for _ in range(30):
        model(ids, mask, types, labels=labels).loss.backward()
        opt.step()
        model.zero_grad()
    model.eval()
    with torch.no_grad():
        trained = float(model(ids, mask, types, labels=labels).loss)
        with prompt_zeroed(model.producer):
            zeroed = float(model(ids, mask, types, labels=labels).loss)
    assert trained < zeroed, (method, trained, zeroed)
    unchanged = [n for n, p in model.producer.named_parameters() if torch.equal(p, before[n])]
    assert not unchanged, (method, unchanged)
