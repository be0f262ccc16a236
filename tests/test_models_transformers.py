"""Swin-T and ViTAE-S encoders of P3M-Net: key names, sizes, shapes, masks, Performer (`ViTAE-Transformer/P3M-Net`
core/network/)."""

from __future__ import annotations

import io
import math
import warnings

import pytest
import torch
import torch.nn.functional as F

from p3m.models.swin import (
    MASK_VALUE,
    DropPath,
    SwinBlock,
    SwinStemPoolingEncoder,
    relative_position_index,
    swin_t_encoder,
    window_attention_mask,
)
from p3m.models.vitae import (
    Attention,
    NormalCell,
    PerformerAttention,
    ViTAENoRCMaxPoolingEncoder,
    vitae_s_encoder,
)

torch.set_num_threads(1)

SWIN_ENCODER_PARAMS = 26_475_354  # 45,128,206 (the IJCV paper's parameter count) minus the 18,652,852-parameter decoder
VITAE_ENCODER_PARAMS = 19_166_312  # 27,463,052 (the IJCV paper's parameter count) minus the 8,296,740-parameter decoder


def n_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def prefix_counts(keys, depth: int) -> dict[str, int]:
    counts: dict[str, int] = {}
    for key in keys:
        prefix = ".".join(key.split(".")[:depth])
        counts[prefix] = counts.get(prefix, 0) + 1
    return counts


@pytest.fixture(scope="module")
def swin() -> SwinStemPoolingEncoder:
    torch.manual_seed(0)
    return swin_t_encoder().eval()


@pytest.fixture(scope="module")
def vitae() -> ViTAENoRCMaxPoolingEncoder:
    torch.manual_seed(0)
    return vitae_s_encoder(seed=0).eval()


# ---------------------------------------------------------------- key names and sizes


def expected_swin_keys() -> list[str]:
    keys = [f"patch_embed.{p}.{t}" for p in ("proj1", "proj2", "proj3") for t in ("weight", "bias")]
    keys += ["patch_embed.norm.weight", "patch_embed.norm.bias"]
    block = [
        "attn_mask", "norm1.weight", "norm1.bias", "attn.relative_position_bias_table",
        "attn.relative_position_index", "attn.qkv.weight", "attn.qkv.bias", "attn.proj.weight",
        "attn.proj.bias", "norm2.weight", "norm2.bias", "mlp.fc1.weight", "mlp.fc1.bias",
        "mlp.fc2.weight", "mlp.fc2.bias",
    ]  # fmt: skip
    for s, depth in enumerate((2, 2, 6, 2)):
        keys += [f"layers.{s}.blocks.{j}.{k}" for j in range(depth) for k in block]
        if s < 3:
            keys += [f"layers.{s}.downsample.{k}" for k in ("norm.weight", "norm.bias", "linear.weight")]
    return [*keys, "norm.weight", "norm.bias"]


def expected_vitae_keys() -> list[str]:
    bn = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
    pcm = [f"PCM.{i}.{t}" for i in (0, 3, 6) for t in ("weight", "bias")]
    pcm += [f"PCM.{i}.{t}" for i in (1, 4) for t in bn]
    wb = ("weight", "bias")
    keys = [f"layers.0.RC.{p}.{t}" for p in ("proj1", "proj2", "proj3", "norm") for t in wb]
    performer = ("norm1", "attn.kqv", "attn.proj", "attn.norm1", "norm2", "mlp.fc1", "mlp.fc2")
    standard = ("norm1", "attn.qkv", "attn.proj", "norm2", "mlp.fc1", "mlp.fc2")
    for i in range(2):
        keys += [f"layers.0.NC.{i}.{m}.{t}" for m in performer for t in wb]
        keys += [f"layers.0.NC.{i}.{k}" for k in pcm]
    for s, depth in ((1, 2), (2, 12), (3, 2)):
        keys += [f"layers.{s}.RC.norm.weight", f"layers.{s}.RC.norm.bias", f"layers.{s}.RC.linear.weight"]
        for i in range(depth):
            keys += [f"layers.{s}.NC.{i}.{m}.{t}" for m in standard for t in wb]
            keys += [f"layers.{s}.NC.{i}.{k}" for k in pcm]
    return [*keys, "head.weight", "head.bias"]


def test_swin_state_dict_keys_and_counts(swin):
    keys = list(swin.state_dict())
    assert len(keys) == 199 == len(set(keys))
    assert set(keys) == set(expected_swin_keys())
    counts = prefix_counts(keys, 2)
    assert [counts[f"layers.{s}"] for s in range(4)] == [33, 33, 93, 30]
    assert sum(v for k, v in counts.items() if k.startswith("patch_embed")) == 8
    assert counts["norm.weight"] + counts["norm.bias"] == 2


def test_swin_parameter_count_and_buffer_shapes(swin):
    assert n_params(swin) == SWIN_ENCODER_PARAMS
    sd = swin.state_dict()
    windows = {0: 361, 1: 100, 2: 25, 3: 9}  # 128, 64, 32, 16 tokens padded to 133, 70, 35, 21
    heads = {0: 3, 1: 6, 2: 12, 3: 24}
    for s, depth in enumerate((2, 2, 6, 2)):
        for j in range(depth):
            p = f"layers.{s}.blocks.{j}."
            assert sd[p + "attn_mask"].shape == (windows[s], 49, 49)
            assert sd[p + "attn.relative_position_index"].shape == (49, 49)
            assert sd[p + "attn.relative_position_bias_table"].shape == (169, heads[s])
            assert swin.layers[s].blocks[j].shift_size == (0 if j % 2 == 0 else 3)
    # drop path linear over the 12 blocks, 0 -> 0.2
    rates = [b.drop_path.drop_prob for stage in swin.layers for b in stage.blocks]
    assert rates == pytest.approx([0.2 * i / 11 for i in range(12)])


def test_vitae_state_dict_keys_and_counts(vitae):
    keys = list(vitae.state_dict())
    assert len(keys) == 527 == len(set(keys))
    assert set(keys) == set(expected_vitae_keys())
    counts = prefix_counts(keys, 2)
    assert [counts[f"layers.{s}"] for s in range(4)] == [68, 59, 339, 59]
    assert counts["head.weight"] + counts["head.bias"] == 2


def test_vitae_parameter_count_and_performer_buffer(vitae):
    assert n_params(vitae) == VITAE_ENCODER_PARAMS
    assert n_params(vitae.head) == 513_000
    sd = vitae.state_dict()
    assert not any(k.endswith(".w") for k in sd)
    buffers = dict(vitae.named_buffers())
    assert sorted(k for k in buffers if k.endswith(".w")) == ["layers.0.NC.0.attn.w", "layers.0.NC.1.attn.w"]
    for i in range(2):
        w = vitae.layers[0].NC[i].attn.w
        assert w.shape == (1, 32, 64)
        # orthogonal rows, each of norm sqrt(m) = sqrt(32)
        torch.testing.assert_close(w[0] @ w[0].T, 32 * torch.eye(32), atol=1e-4, rtol=0)
    assert not torch.equal(vitae.layers[0].NC[0].attn.w, vitae.layers[0].NC[1].attn.w)
    # LayerNorm eps: stem 1e-5, every cell norm (incl. the unused attn.norm1) 1e-6
    assert vitae.layers[0].RC.norm.eps == 1e-5
    cell_norms = [m for n, m in vitae.named_modules() if ".NC." in n and isinstance(m, torch.nn.LayerNorm)]
    assert len(cell_norms) == 2 * 18 + 2 and all(m.eps == 1e-6 for m in cell_norms)
    # PCM groups per stage
    groups = [vitae.layers[s].NC[0].PCM[0].groups for s in range(4)]
    assert groups == [1, 32, 64, 128]


@pytest.mark.slow  # keeps the fast loop under a minute (about 1 s of CPU); make test runs it
def test_full_models_via_registry():
    models = pytest.importorskip("p3m.models")
    for name, n_keys, n_enc, total in (
        ("p3m-swin-t", 480, 199, 45_128_206),
        ("p3m-vitae-s", 808, 527, 27_463_052),
    ):
        model = models.create(name)
        keys = list(model.state_dict())
        assert len(keys) == n_keys, name
        assert sum(k.startswith("encoder.") for k in keys) == n_enc, name
        assert sum(k.startswith("decoder.") for k in keys) == 281, name
        assert n_params(model) == total, name
        assert n_params(model.encoder) == (SWIN_ENCODER_PARAMS if "swin" in name else VITAE_ENCODER_PARAMS)


# ---------------------------------------------------------------- output shapes


def check_outputs(out, height, width, deep, index_ch, fea_ch):
    x, indices, feas = out
    assert x.shape == (2, deep, height // 32, width // 32)
    assert len(indices) == 5 and len(feas) == 5
    for k, (idx, c) in enumerate(zip(indices, index_ch, strict=True)):
        assert idx.shape == (2, c, height // 2 ** (k + 1), width // 2 ** (k + 1)) and idx.dtype == torch.int64
    for k, (fea, c) in enumerate(zip(feas, fea_ch, strict=True)):
        assert fea.shape == (2, c, height // 2**k, width // 2**k)
    # each index tensor unpools the next-deeper scale back onto its skip feature's grid
    for k in range(4):
        up = F.max_unpool2d(torch.ones_like(indices[k], dtype=torch.float32), indices[k], 2, 2)
        assert up.shape[-2:] == feas[k].shape[-2:]


def test_swin_output_shapes_non_square(swin):
    with torch.no_grad():
        out = swin(torch.randn(2, 3, 96, 64))
    check_outputs(out, 96, 64, 768, [48, 96, 96, 192, 384], [48, 96, 96, 192, 384])


def test_vitae_output_shapes_non_square(vitae):
    with torch.no_grad():
        out = vitae(torch.randn(2, 3, 64, 96))
    check_outputs(out, 64, 96, 512, [32, 64, 64, 128, 256], [32, 64, 64, 128, 256])


@pytest.mark.parametrize("build", [swin_t_encoder, vitae_s_encoder])
def test_rejects_sizes_not_multiple_of_32(build):
    with pytest.raises(ValueError, match="multiples of 32"):
        build()(torch.zeros(1, 3, 100, 64))


def test_batch_items_are_independent(swin, vitae):
    x = torch.randn(2, 3, 64, 96)
    for model in (swin, vitae):
        with torch.no_grad():
            both = model(x)[0]
            first = model(x[:1])[0]
            second = model(x[1:])[0]
        torch.testing.assert_close(both, torch.cat([first, second]), atol=1e-4, rtol=1e-4)


# ---------------------------------------------------------------- Swin masks and padding


def reference_mask(height: int, width: int, ws: int, shift: int) -> torch.Tensor:
    """Literal loops over windows and token pairs: two tokens of a (shifted) window may attend iff both
    are image tokens and neither or both wrapped around in the cyclic shift, on each axis."""
    hp, wp = math.ceil(height / ws) * ws, math.ceil(width / ws) * ws

    def label(r: int, c: int):
        orig_r, orig_c = (r + shift) % hp, (c + shift) % wp
        if orig_r >= height or orig_c >= width:
            return "padding"
        return (r + shift >= hp, c + shift >= wp)

    masks = []
    for wr in range(hp // ws):
        for wc in range(wp // ws):
            tokens = [(wr * ws + i, wc * ws + j) for i in range(ws) for j in range(ws)]
            m = torch.zeros(ws * ws, ws * ws)
            for a, ta in enumerate(tokens):
                for b, tb in enumerate(tokens):
                    if label(*ta) != label(*tb):
                        m[a, b] = -100.0
            masks.append(m)
    return torch.stack(masks)


@pytest.mark.parametrize(
    "height,width,shift", [(10, 9, 0), (10, 9, 3), (14, 21, 3), (4, 4, 3), (16, 16, 0), (16, 16, 3)]
)
def test_window_mask_matches_literal_reference(height, width, shift):
    torch.testing.assert_close(window_attention_mask(height, width, 7, shift), reference_mask(height, width, 7, shift))


def test_window_mask_structure():
    # unshifted, no padding needed: no mask entry at all
    assert not (window_attention_mask(14, 21, 7, 0) == MASK_VALUE).any()
    # shifted, no padding: only windows of the last window row / column are masked
    mask = window_attention_mask(14, 21, 7, 3).view(2, 3, 49, 49)
    masked = (mask == MASK_VALUE).flatten(2).any(-1)
    assert masked.tolist() == [[False, False, True], [True, True, True]]
    # unshifted with padding (512 construction, stage 0: 128 -> 133): only the last row/column of
    # windows holds padding; there, image tokens never attend to padding tokens
    mask = window_attention_mask(128, 128, 7, 0).view(19, 19, 49, 49)
    masked = (mask == MASK_VALUE).flatten(2).any(-1)
    assert masked[:18, :18].sum() == 0 and masked[18, :].all() and masked[:, 18].all()
    corner = mask[18, 18]  # tokens (r, c) with r, c < 2 are image, the rest padding
    image = torch.tensor([r < 2 and c < 2 for r in range(7) for c in range(7)])
    assert (corner[image][:, ~image] == MASK_VALUE).all()
    assert (corner[image][:, image] == 0).all() and (corner[~image][:, ~image] == 0).all()


def test_stored_masks_equal_recomputation_at_512(swin):
    for stage in swin.layers:
        for block in stage.blocks:
            h, w = block.input_resolution
            recomputed = window_attention_mask(h, w, 7, block.shift_size)
            assert torch.equal(block.attn_mask, recomputed)
            assert block.mask_for(h, w, torch.device("cpu")) is block.attn_mask  # buffer used as is
            assert torch.equal(block.attn.relative_position_index, relative_position_index(7))
    assert [b.input_resolution for b in (s.blocks[0] for s in swin.layers)] == [
        (128, 128), (64, 64), (32, 32), (16, 16)
    ]  # fmt: skip


def test_masks_recomputed_and_cached_at_other_sizes(swin):
    block = swin.layers[0].blocks[1]
    first = block.mask_for(80, 64, torch.device("cpu"))
    assert first.shape == (12 * 10, 49, 49)
    assert block.mask_for(80, 64, torch.device("cpu")) is first
    assert torch.equal(first, reference_mask(80, 64, 7, 3))


def test_swin_runs_at_320x256_on_cpu(swin):
    with torch.no_grad():
        out = swin(torch.randn(1, 3, 320, 256))
    x, indices, feas = out
    assert x.shape == (1, 768, 10, 8) and torch.isfinite(x).all()
    assert [tuple(f.shape[1:]) for f in feas] == [
        (48, 320, 256), (96, 160, 128), (96, 80, 64), (192, 40, 32), (384, 20, 16)
    ]  # fmt: skip
    assert [tuple(i.shape[1:]) for i in indices] == [
        (48, 160, 128), (96, 80, 64), (96, 40, 32), (192, 20, 16), (384, 10, 8)
    ]  # fmt: skip


def reference_swin_block(block: SwinBlock, x: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Literal Swin block for one sample [H*W, C]: for every window of the shifted, padded map, image
    tokens attend only to image tokens of the same window with the same wrap-around status; the
    relative position bias is read from the table with the textbook formula."""
    ws, shift = block.window_size, block.shift_size
    hp, wp = math.ceil(height / ws) * ws, math.ceil(width / ws) * ws
    attn = block.attn
    heads, c = attn.num_heads, x.shape[-1]
    d = c // heads
    y = block.norm1(x).view(height, width, c)
    out = torch.zeros(height, width, c)
    for wr in range(hp // ws):
        for wc in range(wp // ws):
            members = []  # (local row, local col, original row, original col, wrapped r, wrapped c)
            for i in range(ws):
                for j in range(ws):
                    r, cc = wr * ws + i, wc * ws + j
                    orig_r, orig_c = (r + shift) % hp, (cc + shift) % wp
                    if orig_r < height and orig_c < width:
                        members.append((i, j, orig_r, orig_c, r + shift >= hp, cc + shift >= wp))
            for a in members:
                qkv_a = attn.qkv(y[a[2], a[3]])
                result = []
                for h in range(heads):
                    q = qkv_a[h * d : (h + 1) * d] * d**-0.5
                    logits, values = [], []
                    for b in members:
                        if (a[4], a[5]) != (b[4], b[5]):
                            continue
                        qkv_b = attn.qkv(y[b[2], b[3]])
                        k = qkv_b[c + h * d : c + (h + 1) * d]
                        v = qkv_b[2 * c + h * d : 2 * c + (h + 1) * d]
                        row = (a[0] - b[0] + ws - 1) * (2 * ws - 1) + (a[1] - b[1] + ws - 1)
                        logits.append(q @ k + attn.relative_position_bias_table[row, h])
                        values.append(v)
                    weights = torch.softmax(torch.stack(logits), 0)
                    result.append((weights[:, None] * torch.stack(values)).sum(0))
                out[a[2], a[3]] = attn.proj(torch.cat(result))
    x = x + out.view(height * width, c)
    return x + block.mlp(block.norm2(x))


@pytest.mark.parametrize("height,width,shift", [(10, 9, 0), (10, 9, 3), (7, 14, 3), (4, 5, 3)])
def test_swin_block_matches_literal_reference(height, width, shift):
    torch.manual_seed(1)
    block = SwinBlock(8, (16, 16), num_heads=2, window_size=7, shift_size=shift).eval()
    with torch.no_grad():
        for p in block.parameters():  # non-trivial LayerNorm affine and biases
            p.add_(0.1 * torch.randn_like(p))
        x = torch.randn(1, height * width, 8)
        got = block(x, (height, width))[0]
        want = reference_swin_block(block, x[0], height, width)
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-4)


def test_drop_path():
    x = torch.ones(1000, 4)
    layer = DropPath(0.25)
    assert layer.eval()(x) is x
    y = layer.train()(x)
    kept = y[:, 0] != 0
    assert torch.equal(y[kept], torch.full_like(y[kept], 1 / 0.75))
    assert (y[~kept] == 0).all() and 150 < int((~kept).sum()) < 350


# ---------------------------------------------------------------- ViTAE attention and cells


def test_performer_attention_matches_literal_formula():
    torch.manual_seed(2)
    generator = torch.Generator().manual_seed(5)
    attn = PerformerAttention(8, num_heads=2, generator=generator).double()
    assert attn.w.shape == (2, 2, 4)  # m = 0.5 * head_dim
    x = torch.randn(1, 5, 8, dtype=torch.float64) * 0.5
    with torch.no_grad():
        got = attn(x)[0]
        kqv = attn.kqv(x[0])  # [T, 3C]: k, q, v in that order
        w = attn.w
        m = w.shape[1]

        def phi(u, h):
            return torch.exp(w[h] @ u - (u @ u) / 2) / math.sqrt(m)

        heads = []
        for h in range(2):
            sl = slice(4 * h, 4 * h + 4)
            k, q, v = kqv[:, 0:8][:, sl], kqv[:, 8:16][:, sl], kqv[:, 16:24][:, sl]
            sum_kv = sum(torch.outer(phi(k[t], h), v[t]) for t in range(5))  # [m, d]
            sum_k = sum(phi(k[t], h) for t in range(5))
            heads.append(torch.stack([(phi(q[t], h) @ sum_kv) / (phi(q[t], h) @ sum_k + 1e-8) for t in range(5)]))
        want = attn.proj(torch.cat(heads, dim=1))
    torch.testing.assert_close(got, want)


def test_standard_attention_matches_softmax_formula():
    torch.manual_seed(3)
    attn = Attention(8, num_heads=2)
    x = torch.randn(1, 6, 8)
    with torch.no_grad():
        q, k, v = attn.qkv(x[0]).split(8, dim=1)
        heads = []
        for h in range(2):
            sl = slice(4 * h, 4 * h + 4)
            weights = torch.softmax(q[:, sl] @ k[:, sl].T / 2.0, dim=1)
            heads.append(weights @ v[:, sl])
        want = attn.proj(torch.cat(heads, dim=1))
        torch.testing.assert_close(attn(x)[0], want, atol=1e-6, rtol=1e-5)


def test_normal_cell_composition():
    torch.manual_seed(4)
    cell = NormalCell(16, num_heads=2, groups=4).eval()
    x = torch.randn(1, 12, 16)
    with torch.no_grad():
        conv = cell.PCM(x.transpose(1, 2).reshape(1, 16, 3, 4)).flatten(2).transpose(1, 2)
        y = x + cell.attn(cell.norm1(x)) + conv
        want = y + cell.mlp(cell.norm2(y))
        torch.testing.assert_close(cell(x, (3, 4)), want)
    assert isinstance(cell.PCM[:3], torch.nn.Sequential)  # plain Sequential: slicing works


@pytest.mark.slow  # keeps the fast loop under a minute (about 1 s of CPU); make test runs it
def test_vitae_seed_fixes_outputs(vitae):
    x = torch.randn(1, 3, 64, 64)
    state = vitae.state_dict()
    same = vitae_s_encoder(seed=0).eval()
    other = vitae_s_encoder(seed=1).eval()
    same.load_state_dict(state, strict=True)
    other.load_state_dict(state, strict=True)
    with torch.no_grad():
        ref = vitae(x)[0]
        torch.testing.assert_close(same(x)[0], ref, atol=0, rtol=0)
        assert not torch.equal(other(x)[0], ref)
    assert torch.equal(same.layers[0].NC[0].attn.w, vitae.layers[0].NC[0].attn.w)
    assert not torch.equal(other.layers[0].NC[0].attn.w, vitae.layers[0].NC[0].attn.w)


# ---------------------------------------------------------------- state dict round trip, autocast


def roundtrip(model: torch.nn.Module, fresh: torch.nn.Module) -> torch.nn.Module:
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    buffer.seek(0)
    fresh.load_state_dict(torch.load(buffer, weights_only=True), strict=True)
    return fresh.eval()


@pytest.mark.slow  # keeps the fast loop under a minute (about 1 s of CPU); make test runs it
def test_state_dict_roundtrip_swin(swin):
    loaded = roundtrip(swin, swin_t_encoder())
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        for a, b in zip(swin(x)[2] + [swin(x)[0]], loaded(x)[2] + [loaded(x)[0]], strict=True):
            torch.testing.assert_close(a, b, atol=0, rtol=0)


def test_state_dict_roundtrip_vitae(vitae):
    loaded = roundtrip(vitae, vitae_s_encoder(seed=0))
    x = torch.randn(1, 3, 96, 64)
    with torch.no_grad():
        torch.testing.assert_close(vitae(x)[0], loaded(x)[0], atol=0, rtol=0)


def test_bfloat16_autocast_runs(swin, vitae):
    x = torch.randn(1, 3, 64, 64)
    for model in (swin, vitae):
        with torch.no_grad():
            ref = model(x)[0]
            with torch.autocast("cpu", dtype=torch.bfloat16):
                low = model(x)[0].float()
        assert torch.isfinite(low).all()
        assert (low - ref).abs().max() < 0.25 * ref.abs().max()


@pytest.mark.slow
@pytest.mark.parametrize("build", [swin_t_encoder, vitae_s_encoder])
def test_onnx_export_matches_eager(build):
    """Fixed-size export (the Swin masks become constants); includes a 1-window shifted stage."""
    ort = pytest.importorskip("onnxruntime")
    torch.manual_seed(0)
    model = build().eval()

    class Flat(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.encoder = model

        def forward(self, x):
            deep, indices, feas = self.encoder(x)
            return (deep, *indices, *feas)

    x = torch.randn(1, 3, 64, 96)
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(Flat().eval(), (x,), buffer, opset_version=17, dynamo=False)
    session = ort.InferenceSession(buffer.getvalue())
    got = session.run(None, {session.get_inputs()[0].name: x.numpy()})
    with torch.no_grad():
        want = Flat().eval()(x)
    assert len(got) == 11
    for g, w in zip(got, want, strict=True):
        assert g.shape == tuple(w.shape)
        assert abs(g - w.numpy()).max() < 1e-4
