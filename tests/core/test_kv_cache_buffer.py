"""KVCache keeps a growing buffer per layer: a decode step writes one column in place."""

import torch

from softprompt.runners.kv_cache import KVCache


def test_update_appends_in_place_and_returns_everything():
    cache = KVCache()
    big = torch.randn(2, 3, 8, 5)  # a shared prefix seen through a view with spare room after it
    prefix, original = big[:, :, :4], big.clone()
    cache.seed(0, prefix, prefix + 1)
    first = torch.randn(2, 3, 6, 5)
    k, v = cache.update(first, first * 2, 0)
    assert torch.equal(k, torch.cat([prefix, first], 2)) and torch.equal(v, torch.cat([prefix + 1, first * 2], 2))
    assert cache.keys[0].shape[2] > 10 and cache.get_seq_length(0) == 10  # room to grow
    buffer = cache.keys[0].data_ptr()
    steps = [torch.randn(2, 3, 1, 5) for _ in range(5)]
    for s in steps:
        k, v = cache.update(s, -s, 0)
    assert cache.keys[0].data_ptr() == buffer  # no copy of the whole cache per step
    assert torch.equal(k, torch.cat([prefix, first, *steps], 2))
    assert torch.equal(v, torch.cat([prefix + 1, first * 2, *[-s for s in steps]], 2))
    assert torch.equal(big, original)  # neither the seeded prefix nor what lies past its view is written


def test_concat_and_select_keep_held_columns_only():
    a, b = KVCache(), KVCache()
    ka, kb = torch.randn(1, 2, 3, 4), torch.randn(1, 2, 5, 4)
    a.update(ka, ka, 0)
    a.update(ka[:, :, :1], ka[:, :, :1], 0)  # a now holds 4 columns in a larger buffer
    b.update(kb, kb, 0)
    from softprompt.runners.kv_cache import Segment
    from softprompt.runners.sequence import Past
    for c, n in ((a, 4), (b, 5)):
        c.segment_of[0] = Segment(Past(torch.ones(1, n, dtype=torch.bool), torch.arange(n)[None]), torch.tensor([n]))
        c.embed_next = torch.tensor([n])
    both = KVCache.concat([a, b])
    k, _ = both.held(0)
    assert k.shape == (2, 2, 5, 4)
    assert torch.equal(k[0, :, 1:], torch.cat([ka, ka[:, :, :1]], 2)[0]) and torch.equal(k[0, :, :1], torch.zeros(2, 1, 4))
    both.select(torch.tensor([1]))
    assert torch.equal(both.held(0)[0], kb)
