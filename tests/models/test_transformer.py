"""advcourse.models.transformer: shapes, masking, positions, equivariance, schedule, and equality with PyTorch."""

import math

import pytest
import torch

from advcourse.models.transformer import (
    DecoderLayer,
    EncoderLayer,
    Transformer,
    TransformerConfig,
    sinusoidal_positions,
    warmup_schedule,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tiny models: threads only add overhead

SMALL = {"src_vocab": 11, "tgt_vocab": 13, "d_model": 32, "n_heads": 4, "d_ff": 64, "n_enc_layers": 2,
         "n_dec_layers": 2, "dropout": 0.1, "max_len": 24}


def _model(norm_first=False, **kw):
    torch.manual_seed(0)
    return Transformer(TransformerConfig(**{**SMALL, "norm_first": norm_first, **kw})).eval()


@pytest.mark.parametrize("norm_first", [False, True])
def test_shapes(norm_first):
    model = _model(norm_first)
    src, tgt = torch.randint(0, 11, (3, 9)), torch.randint(0, 13, (3, 6))
    assert model(src, tgt).shape == (3, 6, 13)
    assert model.encode(src).shape == (3, 9, 32)


@pytest.mark.parametrize("norm_first", [False, True])
def test_causal_mask_stops_information_from_the_future(norm_first):
    model = _model(norm_first)
    src, tgt = torch.randint(0, 11, (2, 8)), torch.randint(0, 13, (2, 10))
    base = model(src, tgt)
    for t in range(9):
        changed = tgt.clone()
        changed[:, t + 1] = (changed[:, t + 1] + 1) % 13
        out = model(src, changed)
        assert torch.allclose(out[:, : t + 1], base[:, : t + 1], atol=1e-6, rtol=0), t
        assert not torch.allclose(out[:, t + 1], base[:, t + 1])  # the changed position itself does see it


@pytest.mark.parametrize("norm_first", [False, True])
def test_padding_is_ignored(norm_first):
    model = _model(norm_first)
    src, tgt = torch.randint(1, 11, (2, 6)), torch.randint(1, 13, (2, 5))
    base = model(src, tgt)
    # Append padding to the source (any ids), masked: the logits do not move.
    padded = torch.cat([src, torch.randint(0, 11, (2, 4))], dim=1)
    pad = torch.zeros(2, 10, dtype=torch.bool)
    pad[:, 6:] = True
    assert torch.allclose(model(padded, tgt, src_pad_mask=pad), base, atol=1e-5, rtol=0)
    # Without the mask the padding does change them.
    assert not torch.allclose(model(padded, tgt), base, atol=1e-5, rtol=0)
    # Padded target positions do not affect the non-padded ones either.
    tgt_pad = torch.zeros(2, 5, dtype=torch.bool)
    tgt_pad[0, 3:] = True
    out = model(src, tgt, tgt_pad_mask=tgt_pad)
    other = tgt.clone()
    other[0, 3:] = 0
    assert torch.allclose(model(src, other, tgt_pad_mask=tgt_pad)[0, :3], out[0, :3], atol=1e-6, rtol=0)


def test_sinusoidal_positions_match_formula():
    pe = sinusoidal_positions(50, 16)
    assert pe.shape == (50, 16) and pe.abs().max() <= 1
    for pos in (0, 1, 7, 49):
        for i in range(8):
            angle = pos / 10000 ** (2 * i / 16)
            assert pe[pos, 2 * i].item() == pytest.approx(math.sin(angle), abs=1e-6)
            assert pe[pos, 2 * i + 1].item() == pytest.approx(math.cos(angle), abs=1e-6)


def test_sinusoidal_offset_is_a_rotation():
    """PE[pos + k] is a fixed linear map of PE[pos] (why the paper chose sinusoids, §3.5)."""
    pe = sinusoidal_positions(40, 8).double()
    k = 3
    M = torch.linalg.lstsq(pe[:30], pe[k:30 + k]).solution  # one matrix for all positions
    assert torch.allclose(pe[:30] @ M, pe[k:30 + k], atol=1e-5)


@pytest.mark.parametrize("norm_first", [False, True])
def test_encoder_layer_is_permutation_equivariant(norm_first):
    torch.manual_seed(0)
    layer = EncoderLayer(32, 4, 64, dropout=0.0, norm_first=norm_first).eval()
    x = torch.randn(2, 9, 32)
    perm = torch.randperm(9)
    assert torch.allclose(layer(x)[:, perm], layer(x[:, perm]), atol=1e-5, rtol=0)


def _to_torch_names(state):
    return {k.replace("ffn.", "").replace("cross_attn", "multihead_attn"): v for k, v in state.items()}


@pytest.mark.parametrize("norm_first", [False, True])
def test_layers_equal_torch_transformer_layers(norm_first):
    torch.manual_seed(0)
    ours_enc = EncoderLayer(32, 4, 64, dropout=0.0, norm_first=norm_first).eval()
    ref_enc = torch.nn.TransformerEncoderLayer(32, 4, 64, dropout=0.0, batch_first=True,
                                               norm_first=norm_first).eval()
    ref_enc.load_state_dict(_to_torch_names(ours_enc.state_dict()), strict=True)
    ours_dec = DecoderLayer(32, 4, 64, dropout=0.0, norm_first=norm_first).eval()
    ref_dec = torch.nn.TransformerDecoderLayer(32, 4, 64, dropout=0.0, batch_first=True,
                                               norm_first=norm_first).eval()
    ref_dec.load_state_dict(_to_torch_names(ours_dec.state_dict()), strict=True)
    x, mem = torch.randn(2, 7, 32), torch.randn(2, 5, 32)
    src_pad = torch.zeros(2, 5, dtype=torch.bool)
    src_pad[1, 3:] = True
    causal = torch.nn.Transformer.generate_square_subsequent_mask(7)  # float form, −inf above the diagonal
    assert torch.allclose(ours_enc(mem, src_pad), ref_enc(mem, src_key_padding_mask=src_pad), atol=1e-5, rtol=0)
    assert torch.allclose(ours_dec(x, mem, causal, None, src_pad),
                          ref_dec(x, mem, tgt_mask=causal, memory_key_padding_mask=src_pad), atol=1e-5, rtol=0)


def test_embeddings_scaled_and_tied():
    model = _model()
    assert model.generator.weight is model.tgt_embed.weight
    untied = _model(tie_output=False)
    assert untied.generator.weight is not untied.tgt_embed.weight
    shared = _model(src_vocab=13, share_embeddings=True)
    assert shared.src_embed is shared.tgt_embed
    # Embedding · √d has about unit scale per coordinate, like the positions.
    scaled = model.tgt_embed.weight * math.sqrt(32)
    assert 0.8 < scaled.std().item() < 1.2


def test_warmup_schedule_peaks_at_warmup():
    d, warmup = 512, 4000
    lrate = warmup_schedule(d, warmup)
    rates = [lrate(s) for s in range(1, 3 * warmup)]
    assert max(range(len(rates)), key=rates.__getitem__) + 1 == warmup
    assert lrate(warmup) == pytest.approx(d ** -0.5 * warmup ** -0.5)
    assert lrate(0) == lrate(1) > 0
    assert lrate(100) == pytest.approx(100 * lrate(1))  # linear warm-up
    assert lrate(4 * warmup) == pytest.approx(lrate(warmup) / 2)  # then ∝ step^−1/2
    # With LambdaLR and lr=1 the optimiser follows the schedule.
    opt = torch.optim.Adam([torch.zeros(1, requires_grad=True)], lr=1.0, betas=(0.9, 0.98), eps=1e-9)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, warmup_schedule(d, 10))
    seen = []
    for _ in range(20):
        seen.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert seen[10] == max(seen) == pytest.approx(warmup_schedule(d, 10)(10))


def test_greedy_decode_is_argmax_of_forward():
    model = _model()
    src = torch.randint(0, 11, (3, 7))
    ys = model.greedy_decode(src, bos_id=1, eos_id=2, max_len=8, pad_id=0)
    assert ys.shape[0] == 3 and ys.shape[1] <= 8 and (ys[:, 0] == 1).all()
    for t in range(1, ys.shape[1]):
        prefix = ys[:, :t]
        finished = (prefix[:, 1:] == 2).any(dim=1)
        expected = model(src, prefix)[:, -1].argmax(-1)
        assert torch.equal(ys[~finished, t], expected[~finished])
        assert (ys[finished, t] == 0).all()  # after eos: padding


def test_training_step_reduces_loss():
    """A copy task: a few Adam steps at a warm-up schedule lower the cross-entropy (it can learn)."""
    torch.manual_seed(0)
    model = Transformer(TransformerConfig(**{**SMALL, "src_vocab": 13, "dropout": 0.0}))
    src = torch.randint(3, 13, (16, 6))
    tgt = torch.cat([torch.ones(16, 1, dtype=torch.long), src], dim=1)  # bos then a copy of the source
    opt = torch.optim.Adam(model.parameters(), lr=1.0, betas=(0.9, 0.98), eps=1e-9)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, warmup_schedule(32, 10))
    losses = []
    for _ in range(30):
        logits = model(src, tgt[:, :-1])
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, 13), tgt[:, 1:].reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0]


@pytest.mark.parametrize("kw, name", [({"d_model": 30}, "d_model must be divisible"),
                                      ({"dropout": 1.0}, "dropout"),
                                      ({"share_embeddings": True}, "share_embeddings"),
                                      ({"n_enc_layers": -1}, "n_enc_layers")])
def test_bad_config_raises(kw, name):
    with pytest.raises(ValueError, match=name):
        TransformerConfig(**{**SMALL, **kw})


def test_too_long_raises():
    with pytest.raises(ValueError, match="max_len"):
        _model()(torch.zeros(1, 25, dtype=torch.long), torch.zeros(1, 3, dtype=torch.long))
