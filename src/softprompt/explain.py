"""Looking inside a trained adapter: generator attention over the input, nearest vocabulary tokens."""

from __future__ import annotations

import torch

from softprompt.producers import ProducerInput


@torch.inference_mode()
def generator_attention(model, text: str, pair: str | None = None) -> tuple[list[str], torch.Tensor]:
    """Tokens and the ID-SPAM generator's attention each input token receives (mean over queries/heads)."""
    producer = model.producer
    if producer is None or not hasattr(producer, "attention_weights") or producer.cfg.pooling != "attention":
        raise ValueError("attention weights exist only for the input-dependent attention producer (id-spam)")
    tok = model.backbone.tokenizer
    enc = tok(text, pair, return_tensors="pt")
    ids = enc["input_ids"]
    e = model.runner.token_embeddings(ids)
    weights = producer.attention_weights(e, torch.ones_like(ids, dtype=torch.bool))  # (1, H, T, T)
    received = weights.mean(dim=(1, 2))[0]  # attention each key token gets, averaged over queries and heads
    return tok.convert_ids_to_tokens(ids[0].tolist()), received


@torch.inference_mode()
def nearest_tokens(model, text: str | None = None, k: int = 5) -> list[list[tuple[str, float]]]:
    """For each prompt vector, the k vocabulary tokens with the highest cosine similarity."""
    producer, site = model.producer, model.site
    if producer is None:
        raise ValueError("this method has no prompt vectors")
    if site.prompt_dim(model.runner) != model.runner.embedding_size:
        raise ValueError(f"prompt vectors for {site.describe()} do not live in the embedding space; nothing to compare with")
    tok = model.backbone.tokenizer
    if producer.input_dependent:
        if text is None:
            raise ValueError("an input-dependent prompt needs an input text")
        ids = tok(text, return_tensors="pt")["input_ids"]
        e = model.runner.token_embeddings(ids)
        prompt = producer(ProducerInput(e, e, torch.ones_like(ids, dtype=torch.bool)))[0]
    else:
        prompt = producer.fold()(None)[0]
    vocab = model.runner.word_embeddings.weight
    sims = torch.nn.functional.normalize(prompt, dim=-1) @ torch.nn.functional.normalize(vocab, dim=-1).T
    top = sims.topk(k, dim=-1)
    return [[(tok.convert_ids_to_tokens(int(i)), float(s)) for s, i in zip(vals, idx)]
            for vals, idx in zip(top.values, top.indices)]


def attention_png(tokens: list[str], received: torch.Tensor, path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(max(4, 0.45 * len(tokens)), 1.8))
    ax.imshow(received[None, :].numpy(), aspect="auto", cmap="viridis")
    ax.set_xticks(range(len(tokens)), tokens, rotation=60, ha="right", fontsize=8)
    ax.set_yticks([])
    ax.set_title("ID-SPAM generator: attention received per input token")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
