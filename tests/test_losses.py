"""P3M-Net's losses (`JizhiziLi/P3M` core/train.py) against literal NumPy re-implementations written here."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from p3m.train import losses

torch.set_num_threads(1)

# Table of §8.3 (5 decimals).
KERNEL_TABLE = np.array(
    [
        [0.00207, 0.02179, 0.05745, 0.02179, 0.00207],
        [0.02179, 0.04151, 0.07718, 0.04151, 0.02179],
        [0.05745, 0.07718, 0.11284, 0.07718, 0.05745],
        [0.02179, 0.04151, 0.07718, 0.04151, 0.02179],
        [0.00207, 0.02179, 0.05745, 0.02179, 0.00207],
    ]
)


# ---------------------------------------------------------------- literal references (NumPy, loops)


def ref_kernel() -> np.ndarray:
    z = 10 * (1 + 2 * math.exp(-1) + 2 * math.exp(-4))
    k = np.zeros((5, 5))
    for i in range(5):
        for j in range(5):
            k[i, j] = (math.exp(-((i - 2) ** 2)) + math.exp(-((j - 2) ** 2))) / z
    return k


def ref_blur(x: np.ndarray) -> np.ndarray:
    """2-D array, replicate pad 2, 5x5 correlation with the kernel (symmetric, so = convolution)."""
    k = ref_kernel()
    h, w = x.shape
    out = np.zeros_like(x)
    for y in range(h):
        for xx in range(w):
            acc = 0.0
            for i in range(5):
                for j in range(5):
                    yy = min(max(y + i - 2, 0), h - 1)
                    xj = min(max(xx + j - 2, 0), w - 1)
                    acc += k[i, j] * x[yy, xj]
            out[y, xx] = acc
    return out


def ref_avgpool(x: np.ndarray) -> np.ndarray:
    h, w = x.shape[0] // 2, x.shape[1] // 2
    out = np.zeros((h, w))
    for y in range(h):
        for xx in range(w):
            out[y, xx] = (x[2 * y, 2 * xx] + x[2 * y + 1, 2 * xx] + x[2 * y, 2 * xx + 1] + x[2 * y + 1, 2 * xx + 1]) / 4
    return out


def ref_pyramid(x: np.ndarray, levels: int = 5) -> list[np.ndarray]:
    terms, cur = [], x
    for _ in range(levels):
        b = ref_blur(cur)
        terms.append(cur - b)
        cur = ref_avgpool(b)
    terms.append(cur)
    return terms


def ref_lap(p: np.ndarray, t: np.ndarray) -> float:
    """p, t: [B, H, W]; mean |.| per term over batch and pixels, summed over terms."""
    total = 0.0
    per_image = [list(zip(ref_pyramid(p[b]), ref_pyramid(t[b]), strict=True)) for b in range(p.shape[0])]
    for level in range(6):
        diffs = [np.abs(a - c) for a, c in (per_image[b][level] for b in range(p.shape[0]))]
        total += float(np.mean(np.stack(diffs)))
    return total


def ref_ce(logits: np.ndarray, classes: np.ndarray) -> float:
    """logits [B,3,H,W], classes [B,H,W]; mean of -log softmax at the target class."""
    b, _, h, w = logits.shape
    acc = 0.0
    for n in range(b):
        for y in range(h):
            for x in range(w):
                z = logits[n, :, y, x]
                m = z.max()
                lse = m + math.log(sum(math.exp(v - m) for v in z))
                acc += lse - z[classes[n, y, x]]
    return acc / (b * h * w)


def ref_classes_ijcv(trimap: np.ndarray) -> np.ndarray:
    out = np.ones(trimap.shape, dtype=np.int64)
    out[trimap == 0] = 0
    out[trimap == 255] = 2
    return out


# ---------------------------------------------------------------- fixtures


@pytest.fixture()
def batch():
    rng = np.random.default_rng(0)
    b, h, w = 2, 32, 32
    alpha = rng.random((b, 1, h, w))
    alpha[:, :, :, :8] = 0.0
    alpha[:, :, :, 24:] = 1.0
    trimap = np.full((b, 1, h, w), 128.0)
    trimap[:, :, :, :6] = 0
    trimap[:, :, :, 26:] = 255
    local = rng.random((b, 1, h, w))
    fused = rng.random((b, 1, h, w))
    logits = [rng.normal(size=(b, 3, h, w)) for _ in range(4)]
    image, fg, bg = (rng.normal(size=(b, 3, h, w)) for _ in range(3))
    return dict(alpha=alpha, trimap=trimap, local=local, fused=fused, logits=logits, image=image, fg=fg, bg=bg)


def t(x: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.asarray(x, dtype=np.float32))


# ---------------------------------------------------------------- tests


def test_kernel_matches_table_and_sums_to_one():
    k = losses.laplacian_kernel(torch.float64).numpy()
    np.testing.assert_allclose(k, KERNEL_TABLE, atol=1e-5)
    np.testing.assert_allclose(k, ref_kernel(), atol=1e-12)
    assert abs(k.sum() - 1.0) < 1e-12
    # a product of Gaussians would give a near-zero corner; the sum gives 0.00207
    assert k[0, 0] == pytest.approx(0.00207, abs=1e-5)


def test_pyramid_matches_literal_reference():
    rng = np.random.default_rng(1)
    x = rng.random((32, 32))
    got = losses.laplacian_pyramid(torch.from_numpy(x)[None, None])
    want = ref_pyramid(x)
    assert len(got) == 6
    assert [tuple(g.shape[-2:]) for g in got] == [(32, 32), (16, 16), (8, 8), (4, 4), (2, 2), (1, 1)]
    for g, w in zip(got, want, strict=True):
        np.testing.assert_allclose(g[0, 0].numpy(), w, atol=1e-10)


def test_laplacian_loss_matches_reference_and_is_zero_on_equal_inputs():
    rng = np.random.default_rng(2)
    p, q = rng.random((2, 32, 32)), rng.random((2, 32, 32))
    got = float(losses.laplacian_loss(torch.from_numpy(p)[:, None], torch.from_numpy(q)[:, None]))
    assert got == pytest.approx(ref_lap(p, q), rel=1e-9)
    assert float(losses.laplacian_loss(torch.from_numpy(p)[:, None], torch.from_numpy(p)[:, None])) == 0.0


def test_trimap_to_classes_variants():
    values = torch.tensor([0, 1, 2, 3, 50, 128, 200, 254, 255], dtype=torch.float32).view(1, 1, 1, -1)
    ijcv = losses.trimap_to_classes(values, "ijcv").flatten().tolist()
    mm21 = losses.trimap_to_classes(values, "mm21").flatten().tolist()
    assert ijcv == [0, 1, 1, 1, 1, 1, 1, 1, 2]
    # MM21 quirk: interpolated 1 and 2 keep their value as class
    assert mm21 == [0, 1, 2, 1, 1, 1, 1, 1, 2]
    with pytest.raises(ValueError):
        losses.trimap_to_classes(values, "other")


def test_cross_entropy_and_global_loss(batch):
    tri = batch["trimap"]
    classes = ref_classes_ijcv(tri[:, 0])
    g, s2, s1, s0 = batch["logits"]
    want = ref_ce(s2, classes) + ref_ce(s1, classes) + ref_ce(s0, classes) + 3 * ref_ce(g, classes)
    got = losses.global_loss(t(g), t(s2), t(s1), t(s0), losses.trimap_to_classes(t(tri)))
    assert float(got) == pytest.approx(want, rel=1e-5)


def test_unknown_alpha_loss(batch):
    a, local, tri = batch["alpha"], batch["local"], batch["trimap"]
    num, den = 0.0, 1.0
    for idx in np.ndindex(a.shape):
        w = 1.0 if tri[idx] == 128 else 0.0
        num += math.sqrt((w * (local[idx] - a[idx])) ** 2 + 1e-12)
        den += w
    got = losses.unknown_alpha_loss(t(local), t(a), losses.unknown_region(t(tri)))
    assert float(got) == pytest.approx(num / den, rel=1e-5)


def test_unknown_laplacian_loss(batch):
    a, local, tri = batch["alpha"], batch["local"], batch["trimap"]
    w = (tri == 128).astype(float)
    want = ref_lap((w * local)[:, 0], (w * a)[:, 0])
    got = losses.unknown_laplacian_loss(t(local), t(a), losses.unknown_region(t(tri)))
    assert float(got) == pytest.approx(want, rel=1e-5)


def test_fusion_losses(batch):
    a, f = batch["alpha"], batch["fused"]
    want = sum(math.sqrt((f[i] - a[i]) ** 2 + 1e-12) for i in np.ndindex(a.shape)) / a.size
    assert float(losses.fusion_alpha_loss(t(f), t(a))) == pytest.approx(want, rel=1e-5)
    assert float(losses.fusion_laplacian_loss(t(f), t(a))) == pytest.approx(ref_lap(f[:, 0], a[:, 0]), rel=1e-5)


def test_composition_loss(batch):
    f, img, fg, bg = batch["fused"], batch["image"], batch["fg"], batch["bg"]
    b, _, h, w = f.shape
    acc = 0.0
    for n in range(b):
        for c in range(3):
            for y in range(h):
                for x in range(w):
                    a = f[n, 0, y, x]
                    acc += math.sqrt((a * fg[n, c, y, x] + (1 - a) * bg[n, c, y, x] - img[n, c, y, x]) ** 2 + 1e-12)
    want = acc / (b * h * w)  # colour channels summed, divided by the 1-channel pixel count
    assert float(losses.composition_loss(t(f), t(img), t(fg), t(bg))) == pytest.approx(want, rel=1e-5)


def test_hand_checked_tiny_values():
    # 1x1x2x2 alpha loss by hand: W covers two pixels with |diff| 0.5 and 0.25 -> (0.75 + 2e-6) / 3
    local = torch.tensor([[[[0.5, 0.25], [0.0, 1.0]]]])
    alpha = torch.tensor([[[[0.0, 0.5], [0.0, 0.0]]]])
    unknown = torch.tensor([[[[1.0, 1.0], [0.0, 0.0]]]])
    assert float(losses.unknown_alpha_loss(local, alpha, unknown)) == pytest.approx((0.75 + 2e-6) / 3, rel=1e-6)
    # whole-image: (0.5 + 0.25 + 1e-6 + 1.0) / 4
    assert float(losses.fusion_alpha_loss(local, alpha)) == pytest.approx((1.75 + 1e-6) / 4, rel=1e-6)


def test_total_loss_weights(batch):
    g, s2, s1, s0 = (t(x) for x in batch["logits"])
    out = (g, t(batch["local"]), t(batch["fused"]), s2, s1, s0)
    a, tri = t(batch["alpha"]), t(batch["trimap"])
    img, fg, bg = t(batch["image"]), t(batch["fg"]), t(batch["bg"])
    terms = losses.p3m_loss(out, a, tri, img, fg, bg)
    classes = losses.trimap_to_classes(tri)
    w = losses.unknown_region(tri)
    want = (
        losses.global_loss(g, s2, s1, s0, classes) / 6
        + 2 * (losses.unknown_alpha_loss(out[1], a, w) + losses.unknown_laplacian_loss(out[1], a, w))
        + 3 * (losses.fusion_alpha_loss(out[2], a) + losses.fusion_laplacian_loss(out[2], a))
        + losses.composition_loss(out[2], img, fg, bg)
    )
    assert float(terms.total) == pytest.approx(float(want), rel=1e-6)
    assert set(terms.parts) == {
        "global",
        "unknown_alpha",
        "unknown_laplacian",
        "fusion_alpha",
        "fusion_laplacian",
        "composition",
        "total",
    }
    no_comp = losses.p3m_loss(out, a, tri)
    assert float(no_comp.total) == pytest.approx(float(want) - float(terms.parts["composition"]), rel=1e-5)


def test_loss_gradients_flow_to_all_outputs(batch):
    g, s2, s1, s0 = (t(x).requires_grad_() for x in batch["logits"])
    local = t(batch["local"]).requires_grad_()
    fused = t(batch["fused"]).requires_grad_()
    terms = losses.p3m_loss(
        (g, local, fused, s2, s1, s0),
        t(batch["alpha"]),
        t(batch["trimap"]),
        t(batch["image"]),
        t(batch["fg"]),
        t(batch["bg"]),
    )
    terms.total.backward()
    for x in (g, local, fused, s2, s1, s0):
        assert x.grad is not None and float(x.grad.abs().sum()) > 0


def test_stacked_laplacian_parts_match_literal_reference(batch):
    """p3m_loss takes both Laplacian terms from one pyramid of stacked differences: each part must still be
    the literal Lap(W a_l, W a) / Lap(a_f, a)."""
    g, s2, s1, s0 = (t(x) for x in batch["logits"])
    a, local, f, tri = batch["alpha"], batch["local"], batch["fused"], batch["trimap"]
    terms = losses.p3m_loss((g, t(local), t(f), s2, s1, s0), t(a), t(tri))
    w = (tri == 128).astype(float)
    assert float(terms.parts["unknown_laplacian"]) == pytest.approx(ref_lap((w * local)[:, 0], (w * a)[:, 0]), rel=1e-5)
    assert float(terms.parts["fusion_laplacian"]) == pytest.approx(ref_lap(f[:, 0], a[:, 0]), rel=1e-5)
    rng = np.random.default_rng(3)
    p, q = rng.random((4, 32, 32)), rng.random((4, 32, 32))
    both = losses.laplacian_losses(torch.from_numpy(p - q)[:, None], 2)
    assert both.tolist() == pytest.approx([ref_lap(p[:2], q[:2]), ref_lap(p[2:], q[2:])], rel=1e-9)


def test_trimap_to_classes_matches_literal_rules_on_all_values():
    values = torch.arange(256, dtype=torch.float32).view(1, 1, 16, 16)
    ijcv = losses.trimap_to_classes(values, "ijcv")[0].flatten().tolist()
    mm21 = losses.trimap_to_classes(values, "mm21")[0].flatten().tolist()
    assert ijcv == [0 if v == 0 else 2 if v == 255 else 1 for v in range(256)]
    assert mm21 == [2 if v == 255 else v if v <= 2 else 1 for v in range(256)]
