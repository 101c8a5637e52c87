"""Draw the block diagram of skinformer's SiMaskFormer pipeline (matplotlib, no display needed).

    python tools/draw_architecture.py --out figures/architecture.png

image → backbone (timm / ResNet, res2–res5) → MSDeformAttn pixel decoder → SiMaskFormer decoder
(two-stage query selection by the UOME cost head, mask denoising, L refinement layers) →
one prediction set per layer → criterion with one Hungarian assignment on the summed cost (SML)
or inference. The three ablation switches (``MODEL.SIMASKFORMER.{UOME, AMR, SML}``)
are tagged where they act. Numbers are the configured defaults (``config/mask_former.py``).
"""
import argparse
import os
import sys
from typing import Optional, Sequence, Tuple

import matplotlib

matplotlib.use("Agg")  # headless
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch  # noqa: E402

# canvas in "units": 1 unit = 0.1 inch, so font sizes and box sizes are easy to reason about
W, H = 160, 100

# colour per stage (fill, edge)
C_INPUT = ("#eceff1", "#546e7a")
C_BACKBONE = ("#e3f2fd", "#1e88e5")
C_PIXEL = ("#e8f5e9", "#43a047")
C_DECODER = ("#fff8e1", "#f9a825")
C_LAYER = ("#fff3e0", "#fb8c00")
C_PRED = ("#f3e5f5", "#8e24aa")
C_TRAIN = ("#ffebee", "#e53935")
C_INFER = ("#e0f2f1", "#00897b")
C_SWITCH = ("#263238", "#263238")

# the three ablation switches: tag text, config key, what "False" means
SWITCHES = (
    ("UOME", "MODEL.SIMASKFORMER.UOME",
     "rank tokens by the learned matching-cost head;\nFalse: by max class logit (MaskDINO)"),
    ("AMR", "MODEL.SIMASKFORMER.AMR",
     "mask-driven pos. query, gated sampling, mask refinement;\nFalse: box-driven DINO layers, masks predicted directly"),
    ("SML", "MODEL.SIMASKFORMER.SML",
     "one Hungarian on costs summed over layers;\nFalse: one Hungarian per layer (Mask2Former)"),
)


def box(ax, x: float, y: float, w: float, h: float, title: str, lines: Sequence[str] = (),
        colors: Tuple[str, str] = C_INPUT, title_size: float = 11, size: float = 8.8,
        line_gap: float = 2.35, lw: float = 1.6, z: int = 2, align: str = "center", body_top: float = 4.6):
    """Rounded box with a bold title near its top and text lines below it (all in units)."""
    ax.add_patch(FancyBboxPatch((x, y), w, h, boxstyle="round,pad=0,rounding_size=1.2",
                                facecolor=colors[0], edgecolor=colors[1], linewidth=lw, zorder=z))
    ax.text(x + w / 2, y + h - 1.9, title, ha="center", va="center", fontsize=title_size,
            fontweight="bold", color="#212121", zorder=z + 1)
    tx = x + w / 2 if align == "center" else x + 1.2
    for i, line in enumerate(lines):
        ax.text(tx, y + h - body_top - i * line_gap, line, ha=align, va="center", fontsize=size,
                color="#263238", zorder=z + 1)


def arrow(ax, p0, p1, text: str = "", color: str = "#37474f", rad: float = 0.0, size: float = 8.2,
          text_offset=(0.0, 1.2), lw: float = 1.5, style: str = "-|>", ls: str = "-"):
    ax.add_patch(FancyArrowPatch(p0, p1, arrowstyle=style, mutation_scale=13, color=color, linewidth=lw,
                                 connectionstyle=f"arc3,rad={rad}", linestyle=ls, zorder=5))
    if text:
        mx, my = (p0[0] + p1[0]) / 2 + text_offset[0], (p0[1] + p1[1]) / 2 + text_offset[1]
        ax.text(mx, my, text, ha="center", va="center", fontsize=size, color=color, zorder=6,
                bbox=dict(boxstyle="round,pad=0.15", facecolor="white", edgecolor="none", alpha=0.9))


def tag(ax, x: float, y: float, text: str):
    """Dark switch badge (its meaning is explained in the switch legend)."""
    ax.text(x, y, f" {text} ", ha="center", va="center", fontsize=8.5, fontweight="bold", color="white",
            zorder=8, bbox=dict(boxstyle="round,pad=0.25", facecolor=C_SWITCH[0], edgecolor="none"))


def draw(out: str, dpi: int = 100) -> str:
    fig = plt.figure(figsize=(W / 10, H / 10))
    ax = fig.add_axes([0, 0, 1, 1])
    ax.set_xlim(0, W)
    ax.set_ylim(0, H)
    ax.axis("off")
    ax.text(2, 97.6, "skinformer · SiMaskFormer pipeline", fontsize=15, fontweight="bold",
            va="center", color="#212121")
    ax.text(2, 94.6, "B = batch, F = mask features (256 ch, 1/4), Q = 100 queries, L = 9 decoder layers,"
            " R = per-query mask logits at 1/4", fontsize=8.8, va="center", color="#546e7a")

    # ---------------- top row: image → backbone → pixel decoder -------------------------------
    box(ax, 2, 74, 16, 17, "Image", ["B×3×H×W RGB", "normalised,", "padded to ×32"], C_INPUT)
    box(ax, 24, 74, 30, 17, "Backbone", ["timm model or ResNet", "(features_only / FrozenBN)",
                                         "res2 res3 res4 res5", "stride 4 · 8 · 16 · 32"], C_BACKBONE)
    box(ax, 60, 74, 58, 17, "MSDeformAttn pixel decoder",
        ["1×1 conv + GN: res3–res5 → 256 ch, sine pos. + level embedding",
         "6 deformable encoder layers on 1/8, 1/16, 1/32 (8 heads, 4 pts)",
         "FPN: concat[lateral(res2), up(1/8 map)] → 3×3 conv + GN + ReLU",
         "→ memory (1/8–1/32 tokens)  +  mask features F (1/4)"], C_PIXEL, size=8.6)
    arrow(ax, (18, 82.5), (24, 82.5))
    arrow(ax, (54, 82.5), (60, 82.5))

    # ---------------- switch legend (top right) ----------------------------------------------
    ax.add_patch(FancyBboxPatch((122, 72.5), 36, 25, boxstyle="round,pad=0,rounding_size=1.2",
                                facecolor="white", edgecolor="#90a4ae", linewidth=1.2, zorder=2))
    ax.text(140, 95.4, "Ablation switches (default True)", ha="center", va="center", fontsize=9.5,
            fontweight="bold", zorder=3)
    for i, (name, key, meaning) in enumerate(SWITCHES):
        y = 91.4 - i * 6.7
        tag(ax, 127, y, name)
        ax.text(131.5, y, key, ha="left", va="center", fontsize=7.8, family="monospace", zorder=3)
        ax.text(123.2, y - 3.2, meaning, ha="left", va="center", fontsize=7.2, color="#455a64", zorder=3,
                linespacing=1.1)

    # ---------------- middle: SiMaskFormer decoder frame --------------------------------------
    ax.add_patch(FancyBboxPatch((2, 29), 121, 40, boxstyle="round,pad=0,rounding_size=1.5",
                                facecolor=C_DECODER[0], edgecolor=C_DECODER[1], linewidth=2.0, zorder=1))
    ax.text(4, 66.8, "SiMaskFormer decoder", fontsize=12, fontweight="bold", va="center", zorder=3)

    arrow(ax, (80, 74), (26, 64.5), "memory tokens", rad=0.0, text_offset=(-6, 1.6))
    arrow(ax, (104, 74), (104, 64.6), "memory, F (1/4)", text_offset=(0, 0.2))

    # two-stage query selection (UOME)
    box(ax, 4, 47, 40, 17.5, "Two-stage query selection",
        ["enc_output + LN on every memory token",
         "cost head (LN-MLP 256→128→1, σ) predicts",
         "each token's matching cost → top-Q lowest",
         "interm heads: class, box, mask (MLP·F) → R₀, b₀"], C_LAYER, size=8.4)
    tag(ax, 40, 62.6, "UOME")
    # mask denoising
    box(ax, 4, 31, 40, 12.5, "Mask denoising (training)",
        ["noised GT masks (affine) + flipped labels",
         "→ DN query groups prepended, attn-masked"], C_LAYER, size=8.4)
    arrow(ax, (44, 55), (50, 55))
    arrow(ax, (44, 37), (50, 45), rad=0.0)

    # the per-layer block
    ax.add_patch(FancyBboxPatch((50, 33), 70, 31.6, boxstyle="round,pad=0,rounding_size=1.2",
                                facecolor="white", edgecolor=C_LAYER[1], linewidth=1.6, zorder=2))
    ax.text(52, 62.4, "Decoder layer l = 1 … L  (post-norm)", fontsize=10.5, fontweight="bold",
            va="center", zorder=3)
    steps = (
        ("1 Positional\nquery", ["mean sine PE over", "boundary band", "0.25<σ(R)<0.75", "⊕ sine(centre)", "→ MLP 512→256"]),
        ("2 Self-\nattention", ["8 heads over", "queries (+DN,", "attn mask)"]),
        ("3 Mask-guided\ndeform. X-attn", ["8 pts/level in", "box of R>0,", "logits gated", "by R>0, 3 levels"]),
        ("4 FFN", ["256→2048→256", "+ LayerNorm"]),
        ("5 Refinement", ["b' = b + MLP(h)", "R' = R + MLP(h)·F", "(detached", "between layers)"]),
    )
    sw, gap, x0 = 12.4, 1.2, 51.3
    for i, (title, lines) in enumerate(steps):
        x = x0 + i * (sw + gap)
        # titles are two lines: the body starts lower
        box(ax, x, 38.5, sw, 19.5, title, lines, C_LAYER, title_size=8.6, size=7.6, line_gap=2.2, lw=1.2, z=3,
            body_top=5.4)
        if i in (0, 2, 4):  # the steps the AMR switch changes
            tag(ax, x + sw / 2, 59.6, "AMR")
        if i < len(steps) - 1:
            arrow(ax, (x + sw, 49), (x + sw + gap, 49), lw=1.2)
    # loop back: refined references feed the next layer
    arrow(ax, (x0 + 4 * (sw + gap) + sw / 2, 38.5), (x0 + sw / 2, 38.5), "× L: next layer uses R', b'",
          rad=-0.12, color=C_LAYER[1], text_offset=(0, -3.4))

    # predictions per layer
    for k in range(3):
        off = (2 - k) * 0.9
        ax.add_patch(FancyBboxPatch((128 + off, 36 + off), 28, 24, boxstyle="round,pad=0,rounding_size=1.2",
                                    facecolor=C_PRED[0], edgecolor=C_PRED[1], linewidth=1.2, zorder=2 + k))
    box(ax, 128, 36, 28, 24, "Predictions per layer",
        ["l = 0 (initial) … L:", "class logits Q×(K+1)", "box (cx, cy, w, h)", "mask logits at 1/4",
         "+ interm set, DN sets,", "proposal costs"], C_PRED, z=6, size=8.4)
    arrow(ax, (120, 49), (128, 49))

    # ---------------- bottom: criterion / inference --------------------------------------------
    box(ax, 2, 2, 96, 22.5, "Criterion (training)", [], C_TRAIN)
    sml = [
        "C = Σ over prediction sets l = 0…L of  C_l   (C_l = 4·class + 5·mask BCE + 5·dice + 5·L1 + 2·(−GIoU),",
        "       12,544 sampled points)  →  ONE Hungarian assignment per image, shared by every layer",
        "losses at every layer with those indices: class (CE / focal), mask (point BCE + dice), box (L1 + GIoU)",
        "+ interm losses (own Hungarian, which also gives the cost-head targets) → proposal L1 loss",
        "+ denoising losses (known indices)",
    ]
    for i, line in enumerate(sml):
        ax.text(4, 17.8 - i * 3.0, line, fontsize=8.6, va="center", color="#263238", zorder=3)
    tag(ax, 93, 22.4, "SML")
    tag(ax, 84, 22.4, "UOME")

    box(ax, 103, 2, 55, 22.5, "Inference", [], C_INFER)
    infer = [
        ("semantic", "Σ_q softmax(class)[:K] · σ(mask) → K×H×W"),
        ("multi-label", "max_q p(class) · σ(mask), each class ≥ 0.5"),
        ("instance", "top-k over Q×K; mask logit > 0, box"),
    ]
    for i, (name, text) in enumerate(infer):
        y = 17.4 - i * 4.6
        ax.text(105, y, name, fontsize=8.8, fontweight="bold", va="center", color=C_INFER[1], zorder=3)
        ax.text(120, y, text, fontsize=8.3, va="center", color="#263238", zorder=3)
    ax.text(130.5, 4.2, "resized to the original H×W (TEST.*_ON)", fontsize=7.8, ha="center",
            va="center", color="#546e7a", zorder=3)

    # training path: an elbow through the gap under the decoder frame, clear of the inference box
    ax.plot([133, 133, 75], [36, 26.8, 26.8], color=C_TRAIN[1], linewidth=1.5, zorder=5)
    arrow(ax, (75, 26.8), (75, 24.4), color=C_TRAIN[1])
    ax.text(110, 26.8, "training: every prediction set", ha="center", va="center", fontsize=8.2,
            color=C_TRAIN[1], zorder=6, bbox=dict(boxstyle="round,pad=0.15", facecolor="white", edgecolor="none"))
    arrow(ax, (146, 36), (146, 24.5), "eval: last set", color=C_INFER[1], text_offset=(0, 0.6))

    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    fig.savefig(out, dpi=dpi, facecolor="white", pil_kwargs={"optimize": True})
    plt.close(fig)
    return out


def main(argv: Optional[Sequence[str]] = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="figures/architecture.png", help="output PNG (default: %(default)s)")
    parser.add_argument("--dpi", type=int, default=100, help="resolution (default: %(default)s = 1600×1000 px)")
    args = parser.parse_args(argv)
    out = draw(args.out, args.dpi)
    print(f"Wrote {out} ({os.path.getsize(out) / 1024:.0f} KB)")
    return out


if __name__ == "__main__":
    main(sys.argv[1:])
