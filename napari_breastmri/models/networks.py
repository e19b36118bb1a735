"""Small 3D networks for the shipped demo packages (trained here, on the synthetic phantom).

Why our own tiny networks instead of a stock MONAI UNet: the demos must train on a shared
2-core CPU in minutes and ship in a few megabytes, and every network must name a clear layer for
CAM (the last convolutional block) that the explanation code can hook. Any MONAI network can
still be named in a user's card; these are just the ones the demo cards point at:

* :class:`LesionUNet` - lesion segmentation (one sigmoid channel; detection = its connected
  components). CAM layer: ``dec1`` (last decoder block, full resolution).
* :class:`CaseClassifier` - case-level classification (subtype, pCR, lymph node, screening).
  Dropout in the head gives MC-dropout uncertainty; a ``temperature`` buffer (fitted on a
  validation split) divides the logits so the softmax is calibrated without any card-side logic.
  CAM layer: ``block4`` (last convolutional block).
* :class:`LesionAttentionClassifier` - a classifier whose pooling is an attention map over its
  last block, trained to lie on the lesions (attention-based MIL pooling, Ilse et al. 2018, with a
  lesion-mask auxiliary loss): subtype (region) and screening (whole study). Why: global pooling
  averaged a small cancer away (screening was at chance) and let the subtype model read luminal A
  from the *absence* of a large mass at the region's edges; pooled where the network finds lesion,
  the evidence is the lesions' own (screening AUC 0.86; for luminal A the sigmoid form still found
  a way round, see the class). CAM layer: ``block3`` (the attended block).

This module is exempt from the no-torch-at-import rule (it only exists to define torch modules);
import it lazily from the rest of the core.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


class ConvBlock(nn.Sequential):
    """Two 3x3x3 convolutions with instance norm and leaky ReLU (nnU-Net's basic block)."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(
            nn.Conv3d(in_channels, out_channels, 3, padding=1, bias=False),
            nn.InstanceNorm3d(out_channels, affine=True),
            nn.LeakyReLU(0.01, inplace=True),
            nn.Conv3d(out_channels, out_channels, 3, padding=1, bias=False),
            nn.InstanceNorm3d(out_channels, affine=True),
            nn.LeakyReLU(0.01, inplace=True),
        )


class LesionUNet(nn.Module):
    """A tiny 3D U-Net: 4 levels, stride-2 pooling, trilinear upsampling, additive-free concat skips.

    Input (B, C, z, y, x) with z, y, x divisible by 8; output (B, out_channels, z, y, x) logits.
    ``dropout`` > 0 puts channel dropout at the bottleneck (usable for MC-dropout).
    """

    def __init__(
        self,
        in_channels: int = 3,
        out_channels: int = 1,
        features: Sequence[int] = (8, 16, 32, 64),
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        f1, f2, f3, f4 = (int(f) for f in features)
        self.enc1 = ConvBlock(in_channels, f1)
        self.enc2 = ConvBlock(f1, f2)
        self.enc3 = ConvBlock(f2, f3)
        self.bottleneck = ConvBlock(f3, f4)
        self.drop = nn.Dropout3d(dropout) if dropout > 0 else nn.Identity()
        self.pool = nn.MaxPool3d(2)
        self.up = nn.Upsample(scale_factor=2, mode="trilinear", align_corners=False)
        self.dec3 = ConvBlock(f4 + f3, f3)
        self.dec2 = ConvBlock(f3 + f2, f2)
        self.dec1 = ConvBlock(f2 + f1, f1)
        self.head = nn.Conv3d(f1, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        e1 = self.enc1(x)
        e2 = self.enc2(self.pool(e1))
        e3 = self.enc3(self.pool(e2))
        b = self.drop(self.bottleneck(self.pool(e3)))
        d3 = self.dec3(torch.cat([self.up(b), e3], dim=1))
        d2 = self.dec2(torch.cat([self.up(d3), e2], dim=1))
        d1 = self.dec1(torch.cat([self.up(d2), e1], dim=1))
        return self.head(d1)


class CaseClassifier(nn.Module):
    """A small 3D CNN for a case-level label: 4 conv blocks, global avg+max pooling, dropout, linear.

    The logits are divided by the ``temperature`` buffer (1.0 until temperature scaling sets it),
    so a saved state dict carries its own calibration.
    """

    def __init__(
        self,
        in_channels: int = 3,
        out_channels: int = 2,
        features: Sequence[int] = (8, 16, 32, 32),
        dropout: float = 0.3,
    ) -> None:
        super().__init__()
        f1, f2, f3, f4 = (int(f) for f in features)
        self.block1 = ConvBlock(in_channels, f1)
        self.block2 = ConvBlock(f1, f2)
        self.block3 = ConvBlock(f2, f3)
        self.block4 = ConvBlock(f3, f4)
        self.pool = nn.MaxPool3d(2)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(2 * f4, out_channels)
        self.register_buffer("temperature", torch.ones(1))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The last conv block's activation map (what CAM hooks)."""
        x = self.pool(self.block1(x))
        x = self.pool(self.block2(x))
        x = self.pool(self.block3(x))
        return self.block4(x)

    def head_logits(self, f: torch.Tensor) -> torch.Tensor:
        """Uncalibrated logits from the last block's activation: pooling, dropout, linear."""
        pooled = torch.cat([f.mean(dim=(2, 3, 4)), f.amax(dim=(2, 3, 4))], dim=1)
        return self.fc(self.dropout(pooled))

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """Uncalibrated logits (what training optimises)."""
        return self.head_logits(self.features(x))

    def dropout_head(self, f: torch.Tensor) -> torch.Tensor:
        """Calibrated logits from :meth:`features`; all of the network's dropout is in here.

        Why: MC dropout then needs the convolutions once and only this head per pass, which makes
        20 passes cost about one (see inference.uncertainty.predict_passes).
        """
        return self.head_logits(f) / self.temperature

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout_head(self.features(x))


class LesionAttentionClassifier(nn.Module):
    """Three conv blocks, attention pooling over the last one, dropout, linear; logits / temperature.

    The attention logits (a 1x1x1 convolution of ``block3``) weight the pooling. ``pooling="sigmoid"``:
    the head sees [sigmoid-weighted mean, max of the sigmoid-weighted features]; the attention's
    overall *strength* then reaches the head too, and the subtype model learned to attend to
    nothing for a small luminal A cancer (the old "absence of a large mass" rule by another road).
    ``pooling="softmax"`` (Ilse et al.'s form): weights normalised over the grid, the head sees only
    their weighted mean, so it can use *what* is attended but not how strongly. During training
    :meth:`attention_logits` is pulled towards the lesion mask on the ``block3`` grid (an auxiliary
    loss), so at inference the network finds the lesion itself and needs no mask. Input
    (B, C, z, y, x) with z, y, x divisible by 4; ``features`` names the three blocks' widths.
    """

    def __init__(
        self,
        in_channels: int = 3,
        out_channels: int = 4,
        features: Sequence[int] = (16, 32, 64),
        dropout: float = 0.3,
        pooling: str = "sigmoid",
    ) -> None:
        super().__init__()
        if pooling not in ("sigmoid", "softmax"):
            raise ValueError(f"pooling must be 'sigmoid' or 'softmax', not {pooling!r}")
        f1, f2, f3 = (int(f) for f in features)
        self.pooling = pooling
        self.block1 = ConvBlock(in_channels, f1)
        self.block2 = ConvBlock(f1, f2)
        self.block3 = ConvBlock(f2, f3)
        self.pool = nn.MaxPool3d(2)
        self.attention = nn.Conv3d(f3, 1, 1)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(f3 if pooling == "softmax" else 2 * f3, out_channels)
        self.register_buffer("temperature", torch.ones(1))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The attended block's activation map (what CAM hooks), at 1/4 of the input grid."""
        x = self.pool(self.block1(x))
        x = self.pool(self.block2(x))
        return self.block3(x)

    def attention_logits(self, f: torch.Tensor) -> torch.Tensor:
        """(B, 1, z, y, x) lesion logits on the feature grid (the auxiliary loss's output)."""
        return self.attention(f)

    def head_logits(self, f: torch.Tensor) -> torch.Tensor:
        """Uncalibrated logits from the features: attention pooling, dropout, linear."""
        a = self.attention_logits(f)
        if self.pooling == "softmax":  # weights sum to 1 over the grid: only *what* is attended counts
            w = torch.softmax(a.flatten(2), dim=-1).view_as(a)
            return self.fc(self.dropout((f * w).sum(dim=(2, 3, 4))))
        w = torch.sigmoid(a)
        mean = (f * w).sum(dim=(2, 3, 4)) / w.sum(dim=(2, 3, 4)).clamp_min(1e-6)
        peak = (f * w).amax(dim=(2, 3, 4))
        return self.fc(self.dropout(torch.cat([mean, peak], dim=1)))

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """Uncalibrated logits (what training optimises)."""
        return self.head_logits(self.features(x))

    def logits_and_attention(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Both training outputs from one pass: class logits and attention logits."""
        f = self.features(x)
        return self.head_logits(f), self.attention_logits(f)

    def dropout_head(self, f: torch.Tensor) -> torch.Tensor:
        """Calibrated logits from :meth:`features` (all the dropout is here: MC dropout runs only this)."""
        return self.head_logits(f) / self.temperature

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout_head(self.features(x))
