"""A data term raising the band's second solve toward the person prior where the colours cannot decide.

Closed-form matting (Levin et al. 2008) reads alpha off the colours: a pixel of colour C between a foreground
colour F and a background colour B has alpha = (C - B).(F - B) / |F - B|^2, whose noise grows as 1 / |F - B|.
Where the person's and the background's colours round a pixel nearly coincide (pale fingers on a pale wall, a
denim cuff on a blue wall, an orange shirt on orange foliage) the image says nothing about alpha there: the
solve's value is a guess that the Laplacian's smoothness draws from the band's known pixels, and on the real
portraits it draws the edge inward, onto the person (benchmarks/RESULTS.md, "Edges the colours cannot decide").
The person priors (the selfie network's and, where trusted, the pose network's mask) see the person there: where
they say more person than the first solve placed, the second solve gets a data term toward them,

    weight = strength x ambiguity   where prior > first alpha + margin (else 0),   target = prior,

added to the sampled colours' data term (`add_data_terms`), ambiguity in [0, 1] from
`p3m.infer.step_edges.colour_ambiguity`. It only raises: the priors are blurred (256 px), so a pull toward them
in both directions spreads their soft ramp as haze over the background next to every ambiguous edge; where they
say less person than the solve, it stands. The caller keeps the term off the hair (where strands over a dark
background are colour-ambiguous too, but the prior's blur is wrong) by `away`.

Conventions: HxW float arrays in [0, 1] (alpha, priors, ambiguity); masks HxW bool; the data terms as
`p3m.infer.closed_form.solve_band`'s ``data``: (weight HxW >= 0, target HxW in [0, 1]).
"""

from __future__ import annotations

import numpy as np

__all__ = ["add_data_terms", "raise_toward_prior"]


def raise_toward_prior(
    prior: np.ndarray,
    alpha: np.ndarray,
    ambiguity: np.ndarray,
    *,
    strength: float,
    margin: float = 0.1,
    away: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(weight, target) of a data term raising `alpha` toward `prior` where the colours cannot decide (module doc).

    Parameters
    ----------
    prior : HxW float in [0, 1], the person prior (the target)
    alpha : HxW float in [0, 1], the first solve's alpha
    ambiguity : HxW float in [0, 1], 0 off the pixels to pull (`p3m.infer.step_edges.colour_ambiguity`)
    strength : the weight where the ambiguity is 1, against the matting Laplacian's entries (of order 1 per pixel
        at an edge); 0 gives a zero weight
    margin : the pull acts only where prior > alpha + margin
    away : HxW bool, optional: pixels never pulled (the hair)

    Returns
    -------
    (weight, target): HxW float32 each; weight = strength x ambiguity where prior > alpha + margin and not `away`,
    else 0; target = prior (the array itself where it is float32).
    """
    if not prior.shape == alpha.shape == ambiguity.shape or (away is not None and away.shape != prior.shape):
        raise ValueError(f"prior, alpha, ambiguity and away must have one shape, got {prior.shape}, {alpha.shape}")
    if strength < 0 or margin < 0:
        raise ValueError(f"strength and margin must be >= 0, got {strength}, {margin}")
    prior = np.asarray(prior, np.float32)
    below = prior > np.asarray(alpha, np.float32) + np.float32(margin)
    if away is not None:
        below &= ~away
    weight = np.zeros(prior.shape, np.float32)
    weight[below] = np.float32(strength) * np.asarray(ambiguity, np.float32)[below]
    return weight, prior


def add_data_terms(
    first: tuple[np.ndarray, np.ndarray] | None, second: tuple[np.ndarray, np.ndarray] | None
) -> tuple[np.ndarray, np.ndarray] | None:
    """The sum of two data terms (weight, target), or the one given (None when neither is).

    w1 (a - t1)^2 + w2 (a - t2)^2 = (w1 + w2)(a - t)^2 + const, t = (w1 t1 + w2 t2) / (w1 + w2): the weights add and
    the target is their weighted mean; where `second`'s weight is 0 the sum is `first` exactly (a pull that weighs
    nothing leaves the solve as it was, to the bit). HxW float32 each.
    """
    if first is None or second is None:
        return first if second is None else second
    w1, t1 = (np.asarray(x, np.float32) for x in first)
    w2, t2 = (np.asarray(x, np.float32) for x in second)
    weight = w1 + w2
    target = t1.copy()
    both = w2 > 0  # few pixels: the weighted mean only there
    target[both] = (w1[both] * t1[both] + w2[both] * t2[both]) / weight[both]
    return weight, target
