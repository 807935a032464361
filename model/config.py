"""Typed configuration of the network. Builders read these; modules never see them."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

BACKBONE_NAMES = ("resnet18", "resnet34", "resnet50", "resnet101")
BACKBONE_NORMS = ("frozen", "batch")
SCORE_INPUTS = ("query", "query_and_corners", "evidence")
BACKBONE_STAGES = ("conv1", "layer1", "layer2", "layer3")  # conv1: the stem convolution


@dataclass
class BackboneConfig:
    name: str = "resnet50"  # one of BACKBONE_NAMES
    weights: str | None = None  # torchvision-format ImageNet state_dict file; None = random init
    # Stages whose weights are trained. Official STARK, from ImageNet weights: layer2 and layer3 (the stem
    # conv1 and layer1 stay as pretrained). From random weights every stage must train: a frozen random
    # stem only passes random projections on.
    trainable_stages: list[str] = field(default_factory=lambda: ["layer2", "layer3"])
    # frozen: BatchNorm statistics fixed (ImageNet's, as STARK); from random weights they are the identity,
    # so a network trained from scratch wants "batch": BatchNorm that trains with its stage
    norm: str = "frozen"
    # True: layer3 dilated instead of strided (DETR's DC5), features at stride 8: finer corner maps
    dilate_layer3: bool = False

    @property
    def stride(self) -> int:
        return 8 if self.dilate_layer3 else 16

    def validate(self) -> None:
        if self.name not in BACKBONE_NAMES:
            raise ValueError(f"model.backbone.name: {self.name!r} is not one of {BACKBONE_NAMES}")
        bad = [s for s in self.trainable_stages if s not in BACKBONE_STAGES]
        if bad:
            raise ValueError(f"model.backbone.trainable_stages: {bad} are not among {list(BACKBONE_STAGES)}")
        if self.norm not in BACKBONE_NORMS:
            raise ValueError(f"model.backbone.norm: {self.norm!r} is not one of {BACKBONE_NORMS}")


@dataclass
class TransformerConfig:
    d_model: int = 256
    nheads: int = 8
    enc_layers: int = 6
    dec_layers: int = 6
    dim_feedforward: int = 2048
    dropout: float = 0.1

    def validate(self) -> None:
        if self.d_model % self.nheads:
            raise ValueError(f"model.transformer.d_model ({self.d_model}) must divide by nheads ({self.nheads})")
        if self.d_model % 2:
            raise ValueError("model.transformer.d_model must be even (half the channels per sine axis)")
        if self.enc_layers < 1 or self.dec_layers < 1:
            raise ValueError("model.transformer.enc_layers and dec_layers must be >= 1")


@dataclass
class HeadConfig:
    corner_channels: int = 256  # first conv width of each corner branch; halves 3 times
    score_layers: int = 3  # MLP depth of the STARK-ST score head
    # What the score MLP reads. "query" (official): the decoder's target embedding. "query_and_corners":
    # that embedding plus how sure the corner head is (log of each corner map's peak probability); for a
    # network whose target embedding carries no presence signal (measured on the tiny preset: a linear
    # probe on it separates on-target from drifted crops at AUC 0.52, the peaks at 0.88-0.90). "evidence":
    # no embedding, 16 statistics of the corner maps, the query's similarity map and template-box
    # matches (model/score_evidence.py), which tell good boxes from bad on tracked footage
    score_input: str = "query"

    def validate(self) -> None:
        if self.corner_channels % 8:
            raise ValueError("model.head.corner_channels must be divisible by 8")
        if self.score_input not in SCORE_INPUTS:
            raise ValueError(f"model.head.score_input: {self.score_input!r} is not one of {SCORE_INPUTS}")


@dataclass
class ModelConfig:
    variant: Literal["S", "ST"] = "ST"  # STARK-S: one template, no score head; STARK-ST: two + score head
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    transformer: TransformerConfig = field(default_factory=TransformerConfig)
    head: HeadConfig = field(default_factory=HeadConfig)
    template_size: int = 128  # pixels, square crop
    search_size: int = 320
    template_factor: float = 2.0  # crop side = factor * sqrt(w * h)
    search_factor: float = 5.0

    @property
    def num_templates(self) -> int:
        return 1 if self.variant == "S" else 2

    @property
    def feat_stride(self) -> int:
        """Crop pixels per feature cell."""
        return self.backbone.stride

    @property
    def search_feat_size(self) -> int:
        return self.search_size // self.feat_stride

    @property
    def template_feat_size(self) -> int:
        return self.template_size // self.feat_stride

    def validate(self) -> None:
        if self.variant not in ("S", "ST"):
            raise ValueError(f"model.variant: {self.variant!r} is not 'S' or 'ST'")
        for key in ("template_size", "search_size"):
            value = getattr(self, key)
            if value <= 0 or value % self.feat_stride:
                raise ValueError(f"model.{key}: {value} must be a positive multiple of {self.feat_stride} "
                                 "(the backbone stride)")
        for key in ("template_factor", "search_factor"):
            if getattr(self, key) <= 0:
                raise ValueError(f"model.{key} must be > 0")
        self.backbone.validate()
        self.transformer.validate()
        self.head.validate()
