"""advcourse.models.attention equals PyTorch's attention, weights and masks included."""

import pytest
import torch
import torch.nn.functional as F

from advcourse.models.attention import (
    MultiHeadAttention,
    causal_mask,
    scaled_dot_product_attention,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tiny models: threads only add overhead

D, H, N, T = 32, 4, 3, 7
TOL = {torch.float32: 1e-6, torch.float64: 1e-12}


def _pair(dtype=torch.float32, bias=True, seed=0):
    """A torch.nn.MultiheadAttention and ours with the same (random, non-zero bias) weights, in eval mode."""
    torch.manual_seed(seed)
    ref = torch.nn.MultiheadAttention(D, H, batch_first=True, bias=bias).to(dtype).eval()
    if bias:  # PyTorch initialises the biases at 0, which would hide a mistake in using them
        with torch.no_grad():
            ref.in_proj_bias.normal_()
            ref.out_proj.bias.normal_()
    ours = MultiHeadAttention(D, H, bias=bias).to(dtype).eval()
    ours.load_state_dict(ref.state_dict(), strict=True)
    return ref, ours


def _pad_mask(S):
    pad = torch.zeros(N, S, dtype=torch.bool)
    pad[0, -2:] = True  # the first sequence ends with two padding tokens, the second with one
    pad[1, -1:] = True
    return pad


MASKS = ["none", "causal", "padding", "both"]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("masks", MASKS)
@pytest.mark.parametrize("as_float", [False, True])
def test_self_attention_matches_torch(dtype, masks, as_float):
    ref, ours = _pair(dtype)
    x = torch.randn(N, T, D, dtype=dtype)
    attn_mask = causal_mask(T) if masks in ("causal", "both") else None
    pad = _pad_mask(T) if masks in ("padding", "both") else None
    if as_float:  # the additive form: 0 keeps, −inf blocks
        attn_mask = None if attn_mask is None else torch.zeros(T, T, dtype=dtype).masked_fill(attn_mask, -torch.inf)
        pad = None if pad is None else torch.zeros(N, T, dtype=dtype).masked_fill(pad, -torch.inf)
    for average in (True, False):
        kwargs = {"key_padding_mask": pad, "attn_mask": attn_mask, "average_attn_weights": average}
        out_ref, w_ref = ref(x, x, x, **kwargs)
        out, w = ours(x, x, x, **kwargs)
        assert out.shape == (N, T, D)
        assert w.shape == ((N, T, T) if average else (N, H, T, T))
        assert (out - out_ref).abs().max() <= TOL[dtype]
        assert (w - w_ref).abs().max() <= TOL[dtype]
    # The need_weights=False path (PyTorch then uses its fused kernel) gives the same output.
    out_ref, _ = ref(x, x, x, key_padding_mask=pad, attn_mask=attn_mask, need_weights=False)
    out, w = ours(x, x, x, key_padding_mask=pad, attn_mask=attn_mask, need_weights=False)
    assert w is None
    assert (out - out_ref).abs().max() <= TOL[dtype]


def test_cross_attention_and_per_head_masks_match_torch():
    ref, ours = _pair(torch.float64)
    S = 5
    q, kv = torch.randn(N, T, D, dtype=torch.float64), torch.randn(N, S, D, dtype=torch.float64)
    per_head = torch.rand(N * H, T, S) < 0.3  # a different mask for each example and head
    per_head[..., 0] = False  # leave every query at least one key
    for kwargs in ({"key_padding_mask": _pad_mask(S)}, {"attn_mask": per_head}):
        out_ref, w_ref = ref(q, kv, kv, average_attn_weights=False, **kwargs)
        out, w = ours(q, kv, kv, average_attn_weights=False, **kwargs)
        assert (out - out_ref).abs().max() <= 1e-12
        assert (w - w_ref).abs().max() <= 1e-12


def test_is_causal_builds_the_causal_mask():
    _, ours = _pair()
    x = torch.randn(N, T, D)
    assert torch.equal(ours(x, x, x, is_causal=True)[0], ours(x, x, x, attn_mask=causal_mask(T))[0])


@pytest.mark.parametrize("bias", [True, False])
def test_state_dict_round_trips_both_ways(bias):
    ref, ours = _pair(bias=bias)
    assert list(ours.state_dict()) == list(ref.state_dict())
    for key, value in ref.state_dict().items():
        assert ours.state_dict()[key].shape == value.shape
    fresh = torch.nn.MultiheadAttention(D, H, batch_first=True, bias=bias)
    fresh.load_state_dict(ours.state_dict(), strict=True)
    x = torch.randn(N, T, D)
    assert torch.allclose(fresh.eval()(x, x, x)[0], ours(x, x, x)[0], atol=1e-6, rtol=0)


def test_torchvision_vit_self_attention_loads():
    from torchvision.models.vision_transformer import EncoderBlock

    block = EncoderBlock(num_heads=H, hidden_dim=D, mlp_dim=2 * D, dropout=0.0, attention_dropout=0.0)
    MultiHeadAttention(D, H).load_state_dict(block.self_attention.state_dict(), strict=True)


def test_weights_are_probabilities_and_blocked_keys_get_zero():
    q, k, v = torch.randn(2, H, T, 8), torch.randn(2, H, T, 8), torch.randn(2, H, T, 16)
    mask = causal_mask(T)
    out, w = scaled_dot_product_attention(q, k, v, mask)
    assert out.shape == (2, H, T, 16) and w.shape == (2, H, T, T)
    assert torch.allclose(w.sum(-1), torch.ones(2, H, T))
    assert (w >= 0).all()
    assert (w[..., mask] == 0).all()  # exactly zero, not just small


def test_scaled_dot_product_matches_torch_functional():
    q, k, v = torch.randn(2, H, T, 8, dtype=torch.float64), torch.randn(2, H, 5, 8, dtype=torch.float64), \
        torch.randn(2, H, 5, 16, dtype=torch.float64)
    blocked = torch.rand(T, 5) < 0.4
    blocked[:, 0] = False
    out, _ = scaled_dot_product_attention(q, k, v)
    assert torch.allclose(out, F.scaled_dot_product_attention(q, k, v), atol=1e-12, rtol=0)
    # PyTorch's functional form uses the opposite boolean convention: True = MAY attend.
    out, _ = scaled_dot_product_attention(q, k, v, blocked)
    assert torch.allclose(out, F.scaled_dot_product_attention(q, k, v, attn_mask=~blocked), atol=1e-12, rtol=0)
    additive = torch.randn(T, 5, dtype=torch.float64)
    out, _ = scaled_dot_product_attention(q, k, v, additive)
    assert torch.allclose(out, F.scaled_dot_product_attention(q, k, v, attn_mask=additive), atol=1e-12, rtol=0)
    q2, k2, v2 = torch.randn(2, H, T, 8), torch.randn(2, H, T, 8), torch.randn(2, H, T, 8)
    out, _ = scaled_dot_product_attention(q2, k2, v2, causal_mask(T))
    assert torch.allclose(out, F.scaled_dot_product_attention(q2, k2, v2, is_causal=True), atol=1e-6, rtol=0)


def test_causal_mask_is_strict_upper_triangle():
    m = causal_mask(4)
    assert m.dtype == torch.bool
    assert m.tolist() == [[False, True, True, True], [False, False, True, True],
                          [False, False, False, True], [False, False, False, False]]


def test_dropout_only_in_training():
    torch.manual_seed(0)
    mha = MultiHeadAttention(D, H, dropout=0.5)
    x = torch.randn(N, T, D)
    mha.eval()
    assert torch.equal(mha(x, x, x)[0], mha(x, x, x)[0])
    mha.train()
    assert not torch.equal(mha(x, x, x)[0], mha(x, x, x)[0])


@pytest.mark.parametrize("kwargs, name", [({"d_model": 30, "n_heads": 4}, "divisible"),
                                          ({"d_model": 32, "n_heads": 0}, "positive"),
                                          ({"d_model": 32, "n_heads": 4, "dropout": 1.0}, "dropout")])
def test_bad_arguments_raise(kwargs, name):
    with pytest.raises(ValueError, match=name):
        MultiHeadAttention(**kwargs)


def test_bad_masks_raise():
    _, ours = _pair()
    x = torch.randn(N, T, D)
    with pytest.raises(ValueError, match="key_padding_mask"):
        ours(x, x, x, key_padding_mask=torch.zeros(N, T + 1, dtype=torch.bool))
    with pytest.raises(ValueError, match="mask must be boolean"):
        ours(x, x, x, attn_mask=torch.zeros(T, T, dtype=torch.long))
