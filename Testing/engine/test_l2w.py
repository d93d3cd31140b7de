"""Learn-to-weight attention."""

from __future__ import annotations

import torch

from d24fad.models.l2w import LearnToWeight


def _feats(b, k, seed=0):
    g = torch.Generator().manual_seed(seed)
    shapes = [(8, 16, 16), (16, 8, 8), (32, 4, 4)]
    q = [torch.randn(b, *s, generator=g) for s in shapes]
    sup = [torch.randn(k, *s, generator=g) for s in shapes]
    return q, sup


def test_weights_sum_to_one_per_scale():
    l2w = LearnToWeight([8, 16, 32])
    q, sup = _feats(5, 4)
    refs, w = l2w(q, sup)
    assert w.shape == (5, 3, 4)
    assert torch.allclose(w.sum(-1), torch.ones(5, 3), atol=1e-6)
    assert [r.shape for r in refs] == [x.shape for x in q]


def test_identical_supports_get_equal_weights():
    l2w = LearnToWeight([8, 16, 32])
    with torch.no_grad():
        for conv in l2w.key_projections:  # any learnt projection, not only the identity start
            conv.weight.normal_()
    q, sup = _feats(3, 1)
    same = [s.repeat(4, 1, 1, 1) for s in sup]
    refs, w = l2w(q, same)
    assert torch.allclose(w, torch.full_like(w, 0.25), atol=1e-6)
    for r, s in zip(refs, sup):
        assert torch.allclose(r, s.expand_as(r), atol=1e-5)


def test_query_identical_to_a_support_relies_on_it():
    l2w = LearnToWeight([8, 16, 32])
    _, sup = _feats(1, 5, seed=1)
    q = [s[2:3].clone() for s in sup]
    _, w = l2w(q, sup)
    assert (w[0].argmax(-1) == 2).all()
    assert (w[0, :, 2] > 0.9).all()


def test_per_query_supports_match_shared_supports():
    """Episodic training ([B,K,...]) and cached inference ([K,...]) compute the same thing."""
    l2w = LearnToWeight([8, 16, 32])
    q, sup = _feats(3, 4, seed=2)
    refs_shared, w_shared = l2w(q, sup)
    per_query = [s.unsqueeze(0).expand(3, *s.shape) for s in sup]
    refs_ep, w_ep = l2w(q, per_query)
    assert torch.allclose(w_shared, w_ep, atol=1e-6)
    for a, b in zip(refs_shared, refs_ep):
        assert torch.allclose(a, b, atol=1e-5)


def test_uniform_mode_averages_supports():
    l2w = LearnToWeight([8, 16, 32])
    q, sup = _feats(2, 4)
    refs, w = l2w(q, sup, uniform=True)
    assert torch.allclose(w, torch.full_like(w, 0.25))
    assert torch.allclose(refs[0][0], sup[0].mean(0), atol=1e-5)
