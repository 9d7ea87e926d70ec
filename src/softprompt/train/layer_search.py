"""Automatic choice of the injection layer m by successive halving.

The ID-SPAM paper tunes m by hand. Here every candidate layer trains briefly; the better half
survives to a budget twice as large, until one layer is left. The scores of every round are
kept, so the curve (score vs m) can be reported.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

from softprompt.train.config import TrainConfig


def successive_halving(cfg: TrainConfig, candidates: list[int], backbone=None, min_examples: int = 256,
                       log=print) -> dict:
    """Returns {"layer": best m, "rounds": [{m: score}, ...], "curve": {m: last score seen}}."""
    from softprompt.train.trainer import train

    if not candidates:
        raise ValueError("layer search needs at least one candidate layer")
    total = cfg.train_limit or 4000
    rounds_needed = max(1, math.ceil(math.log2(len(candidates))))
    budget = max(min_examples, total // 2 ** (rounds_needed - 1) // 2)
    alive, rounds, curve = list(candidates), [], {}
    while True:
        scores = {}
        for m in alive:
            method = cfg.method.with_site(kind="layer", layer=m)
            run = dataclasses.replace(cfg, method=method, train_limit=min(budget, total), epochs=1, patience=None,
                                      output_dir=str(Path(cfg.run_dir()) / f"layer-search/b{budget}-m{m}"),
                                      checkpoint_every=0, progress=False)
            scores[m] = train(run, backbone=backbone, log=lambda *a: None)["best"]
            curve[m] = scores[m]
            log(f"  layer {m}: {scores[m]:.2f} ({min(budget, total)} examples)")
        rounds.append(scores)
        if len(alive) == 1 or budget >= total:
            break
        alive = sorted(alive, key=lambda m: (-scores[m], m))[: max(1, len(alive) // 2)]
        if len(alive) == 1:
            break
        budget *= 2
    best = alive[0] if len(alive) == 1 else max(rounds[-1], key=lambda m: (rounds[-1][m], -m))
    return {"layer": best, "rounds": rounds, "curve": dict(sorted(curve.items()))}
