"""Published numbers on P3M-10k, always labelled as published and with their source (paper, table, repository).

[MM21] J. Li, S. Ma, J. Zhang, D. Tao, *Privacy-Preserving Portrait Matting*, ACM MM 2021 (arXiv 2104.14222);
its benchmark tables are reproduced in the authors' repository README, JizhiziLi/P3M. The numbers are whole-image
(P3M protocol) SAD and MSE on the full-size P3M-500-P / P3M-500-NP photographs.

Column keys: "B:B", "B:N", "N:B", "N:N" are the MM21 benchmark's train:test settings, **all on P3M-500-P**
(N = the authors' un-obfuscated versions of the training and P3M-500-P images, not released). They are not
the benchmark's own B:N column, which tests on P3M-500-NP; the P3M-500-NP figures are `P3M_NET_PPT`.
"""

from __future__ import annotations

__all__ = ["P3M_NET_PPT", "SOURCE_TRIMAP_BASED", "SOURCE_TRIMAP_FREE", "TRIMAP_BASED", "TRIMAP_FREE", "published_for"]

SOURCE_TRIMAP_BASED = (
    "[MM21] Li et al., Privacy-Preserving Portrait Matting (ACM MM 2021), benchmark Table 1 as given in the "
    "JizhiziLi/P3M README: trimap-based methods on P3M-500-P; the evaluation region is not stated (the magnitude "
    "fits the -T, transition-region, metrics)"
)
SOURCE_TRIMAP_FREE = (
    "[MM21] Li et al., Privacy-Preserving Portrait Matting (ACM MM 2021), benchmark Table 2 as given in the "
    "JizhiziLi/P3M README: trimap-free methods on P3M-500-P, whole-image SAD and MSE; B:N, N:B and N:N use "
    "un-obfuscated training and P3M-500-P images that are not released"
)
SOURCE_PPT = (
    "P3M-Net R34 trained on the blurred P3M-10k: P3M-500-P from [MM21] Table 2 (B:B, JizhiziLi/P3M README); "
    "P3M-500-NP SAD 11.23 is the paper's value as quoted in JizhiziLi/P3M issue #11 (its MSE is not confirmed)"
)

# method -> setting -> (SAD, MSE)
TRIMAP_BASED: dict[str, dict[str, tuple[float, float]]] = {
    "DIM": {"B:B": (4.8906, 0.0115), "B:N": (4.8940, 0.0116), "N:B": (4.8050, 0.0116), "N:N": (4.7941, 0.0116)},
    "AlphaGAN": {"B:B": (5.2669, 0.0112), "B:N": (5.2367, 0.0112), "N:B": (5.7060, 0.0120), "N:N": (5.6696, 0.0119)},
    "GCA": {"B:B": (4.3593, 0.0088), "B:N": (4.3469, 0.0089), "N:B": (4.4068, 0.0089), "N:N": (4.4002, 0.0089)},
    "IndexNet": {"B:B": (5.1959, 0.0156), "B:N": (5.2188, 0.0158), "N:B": (5.8267, 0.0202), "N:N": (5.8509, 0.0204)},
    "FBA": {"B:B": (4.1330, 0.0088), "B:N": (4.1267, 0.0088), "N:B": (4.1666, 0.0086), "N:N": (4.1544, 0.0086)},
}
TRIMAP_FREE: dict[str, dict[str, tuple[float, float]]] = {
    "SHM": {"B:B": (21.56, 0.0100), "B:N": (24.33, 0.0116), "N:B": (23.91, 0.0115), "N:N": (17.13, 0.0075)},
    "LF": {"B:B": (42.95, 0.0191), "B:N": (30.84, 0.0129), "N:B": (41.01, 0.0174), "N:N": (31.22, 0.0123)},
    "HATT": {"B:B": (25.99, 0.0054), "B:N": (26.5, 0.0055), "N:B": (35.02, 0.0103), "N:N": (22.93, 0.0040)},
    "GFM": {"B:B": (13.20, 0.0050), "B:N": (13.08, 0.0050), "N:B": (13.54, 0.0048), "N:N": (10.73, 0.0033)},
    "BASIC": {"B:B": (15.13, 0.0058), "B:N": (15.52, 0.0060), "N:B": (24.38, 0.0109), "N:N": (14.52, 0.0054)},
    "P3M-Net (R34, MM21)": {
        "B:B": (8.73, 0.0026),
        "B:N": (9.22, 0.0028),
        "N:B": (11.22, 0.0040),
        "N:N": (9.06, 0.0028),
    },
}
# test split -> (SAD, MSE or None when unconfirmed)
P3M_NET_PPT: dict[str, tuple[float, float | None]] = {
    "P3M-500-P": (8.73, 0.0026),
    "P3M-500-NP": (11.23, None),  # paper value as quoted in JizhiziLi/P3M issue #11; MSE unconfirmed
}

# benchmark method type -> published row that corresponds to it in the PPT (B) setting, per test split
_PUBLISHED_ROW = {"p3m-r34": "P3M-Net (R34, MM21)", "basic-r34": "BASIC"}


def published_for(method_type: str, split: str) -> tuple[float, float | None, str] | None:
    """Published (SAD, MSE, source) of the method matching `method_type` when trained on blurred P3M-10k
    and tested on `split`; None when nothing was published for it."""
    if method_type == "p3m-r34":
        sad, mse = P3M_NET_PPT.get(split, (None, None))
        return None if sad is None else (sad, mse, SOURCE_PPT)
    row = _PUBLISHED_ROW.get(method_type)
    if row is None or split != "P3M-500-P":
        return None
    sad, mse = TRIMAP_FREE[row]["B:B"]
    return sad, mse, SOURCE_TRIMAP_FREE
