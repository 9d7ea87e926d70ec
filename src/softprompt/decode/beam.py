"""Beam search on a lane: `num_beams` hypotheses per row, scored by sum log p / length ** length_penalty."""

from __future__ import annotations

import torch


def beam_search(lane, k: int, max_new_tokens: int, length_penalty: float, eos: int | None) -> list[list[int]]:
    """The best hypothesis per row (its tokens, eos included where it ended there)."""
    bsz, vocab = lane.logits.shape
    device = lane.logits.device
    scores, first = lane.logits.float().log_softmax(-1).topk(k, dim=-1)  # (B, k)
    lane.keep(torch.arange(bsz, device=device).repeat_interleave(k))
    beams = [[[int(first[b, j])] for j in range(k)] for b in range(bsz)]
    done: list[list[tuple[float, list[int]]]] = [[] for _ in range(bsz)]
    live = torch.ones(bsz, k, dtype=torch.bool, device=device)
    for b in range(bsz):
        for j in range(k):
            if beams[b][j][-1] == eos:
                done[b].append((float(scores[b, j]), beams[b][j]))
                live[b, j] = False
    scores = scores.masked_fill(~live, float("-inf"))
    for _ in range(max_new_tokens - 1):
        if all(len(d) >= k for d in done) or not bool(live.any()):
            break
        lane.step(torch.tensor([beam[-1] for row in beams for beam in row], device=device))
        cand = (scores[:, :, None] + lane.logits.float().log_softmax(-1).view(bsz, k, vocab)).view(bsz, k * vocab)
        top_s, top_i = cand.topk(2 * k, dim=-1)
        parents, beams, new_scores = _extend(beams, done, top_s.tolist(), top_i.tolist(), k, vocab, eos,
                                             length_penalty)
        lane.keep(torch.tensor(parents, device=device))
        scores = torch.tensor(new_scores, device=device)
    results = []
    for b in range(bsz):
        hyps = list(done[b]) + [(float(scores[b, j]) / len(beams[b][j]) ** length_penalty, beams[b][j])
                                for j in range(k) if scores[b, j] != float("-inf")]
        results.append(max(hyps, key=lambda h: h[0])[1])
    return results


def _extend(beams, done, top_s, top_i, k, vocab, eos, length_penalty):
    """The k best live continuations per row (finished ones go to `done`); dead slots score -inf."""
    parents, new_beams, new_scores = [], [], []
    for b in range(len(beams)):
        row_beams, row_scores = [], []
        for s, i in zip(top_s[b], top_i[b]):
            if s == float("-inf") or len(row_beams) == k:
                break
            parent, tok = divmod(i, vocab)
            seq = beams[b][parent] + [tok]
            if tok == eos:
                if len(done[b]) < k:
                    done[b].append((s / len(seq) ** length_penalty, seq))
                continue
            row_beams.append(seq)
            row_scores.append(s)
            parents.append(b * k + parent)
        while len(row_beams) < k:  # keep the batch rectangular: dead beams score -inf
            row_beams.append(beams[b][0] + [eos if eos is not None else 0])
            row_scores.append(float("-inf"))
            parents.append(b * k)
        new_beams.append(row_beams)
        new_scores.append(row_scores)
    return parents, new_beams, new_scores
