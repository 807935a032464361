"""The STARK network: templates + search -> transformer -> corner box (and, for STARK-ST, a score).

Shapes: template [B, 3, Hz, Wz], search [B, 3, Hx, Wx], masks [B, H, W] (True = padding),
tokens [L, B, d]. Boxes are cxcywh normalised to the search crop.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from stark.model.backbone import Backbone, build_backbone
from stark.model.box_ops import box_xyxy_to_cxcywh
from stark.model.config import ModelConfig
from stark.model.corner_head import CornerHead, build_corner_head, corner_confidence
from stark.model.position_encoding import PositionEncodingSine, build_position_encoding
from stark.model.score_evidence import localisation_evidence, template_target_cells
from stark.model.score_head import MLP, build_score_head
from stark.model.transformer import Transformer, build_transformer


@dataclass
class Tokens:
    """One image's contribution to the encoder: features, padding mask, positions."""

    feat: torch.Tensor  # [L, B, d]
    mask: torch.Tensor  # [B, L], True = padding
    pos: torch.Tensor  # [L, B, d]

    @staticmethod
    def concat(parts: list["Tokens"]) -> "Tokens":
        """Join along the token axis (template tokens, then search tokens)."""
        return Tokens(torch.cat([p.feat for p in parts], 0), torch.cat([p.mask for p in parts], 1),
                      torch.cat([p.pos for p in parts], 0))

    @staticmethod
    def stack(parts: list["Tokens"]) -> "Tokens":
        """Join along the batch axis (one image's tokens per part, same L)."""
        return Tokens(torch.cat([p.feat for p in parts], 1), torch.cat([p.mask for p in parts], 0),
                      torch.cat([p.pos for p in parts], 1))

    def to(self, device) -> "Tokens":
        return Tokens(self.feat.to(device), self.mask.to(device), self.pos.to(device))

    def select(self, index: int) -> "Tokens":
        """Batch element `index`, keeping a batch axis of 1."""
        return Tokens(self.feat[:, index:index + 1], self.mask[index:index + 1], self.pos[:, index:index + 1])


class STARK(nn.Module):
    """STARK-S (score_head=None, one template) or STARK-ST (score head, initial + dynamic template)."""

    def __init__(self, backbone: Backbone, position_encoding: PositionEncodingSine, transformer: Transformer,
                 box_head: CornerHead, score_head: MLP | None, num_templates: int,
                 score_input: str = "query", template_target_cells: torch.Tensor | None = None):
        super().__init__()
        d_model = transformer.d_model
        self.backbone = backbone
        self.position_encoding = position_encoding
        self.bottleneck = nn.Conv2d(backbone.num_channels, d_model, kernel_size=1)
        self.transformer = transformer
        self.target_query = nn.Embedding(1, d_model)
        self.box_head = box_head
        self.score_head = score_head
        self.num_templates = num_templates
        self.score_input = score_input  # what the score MLP reads (model.head.score_input)
        if score_input == "evidence":
            # which template cells hold the target, for the template-box match of the evidence
            self.register_buffer("template_target_cells", template_target_cells, persistent=False)

    # --- the three stages of a forward pass -------------------------------------------------------
    def forward_backbone(self, images: torch.Tensor, mask: torch.Tensor) -> Tokens:
        """images [B, 3, H, W], mask [B, H, W] -> Tokens with L = (H/s) * (W/s), s the backbone stride."""
        features, feat_mask = self.backbone(images, mask)  # [B, C, h, w], [B, h, w]
        pos = self.position_encoding(feat_mask).to(features.dtype)  # [B, d, h, w]
        feat = self.bottleneck(features)  # [B, d, h, w]
        return Tokens(feat.flatten(2).permute(2, 0, 1),  # [h*w, B, d]
                      feat_mask.flatten(1),  # [B, h*w]
                      pos.flatten(2).permute(2, 0, 1))  # [h*w, B, d]

    def forward_transformer(self, templates: list[Tokens], search: Tokens) -> tuple[torch.Tensor, torch.Tensor]:
        """Encoder input is every template's tokens then the search tokens.

        Returns (decoded [1, B, d], memory [L_total, B, d]).
        """
        if len(templates) != self.num_templates:
            raise ValueError(f"this model takes {self.num_templates} template(s), got {len(templates)}")
        joined = Tokens.concat([*templates, search])
        return self.transformer(joined.feat, joined.mask, joined.pos, self.target_query.weight)

    def forward_heads(self, decoded: torch.Tensor, memory: torch.Tensor) -> dict[str, torch.Tensor]:
        """decoded [1, B, d], memory [L, B, d] -> {'pred_boxes': [B, 4] cxcywh, 'pred_logits': [B] (ST only)}."""
        side = self.box_head.feat_size
        search_mem = memory[-side * side:].permute(1, 0, 2)  # [B, S*S, d], the search tokens
        query = decoded[0]  # [B, d]
        similarity = torch.einsum("bnd,bd->bn", search_mem, query)  # [B, S*S]
        fused = search_mem * similarity.unsqueeze(-1)  # [B, S*S, d]
        fused = fused.permute(0, 2, 1).reshape(-1, search_mem.shape[-1], side, side)  # [B, d, S, S]
        top_left, bottom_right = self.box_head.corner_probabilities(fused)  # [B, S*S] each
        out = {"pred_boxes": box_xyxy_to_cxcywh(self.box_head.boxes(top_left, bottom_right))}
        if self.score_head is None:
            return out
        if self.score_input == "evidence":
            lz = self.template_target_cells.numel()
            templates = [memory[i * lz:(i + 1) * lz].permute(1, 0, 2) for i in range(self.num_templates)]
            score_in = localisation_evidence(top_left, bottom_right, similarity, out["pred_boxes"], search_mem,
                                             templates, self.template_target_cells, side,
                                             self.transformer.d_model)  # [B, 16] fp32
            with torch.autocast(score_in.device.type, enabled=False):  # a few numbers: bf16 would blur them
                out["pred_logits"] = self.score_head(score_in)[:, 0]
            return out
        if self.score_input == "query_and_corners":
            confidence = corner_confidence(top_left, bottom_right).to(query.dtype)  # [B, 2]
            query = torch.cat([query, confidence], dim=1)  # [B, d + 2]
        out["pred_logits"] = self.score_head(query)[:, 0]  # [B]
        return out

    def forward_search(self, templates: list[Tokens], search: torch.Tensor,
                       search_mask: torch.Tensor) -> dict[str, torch.Tensor]:
        """One tracked frame: template tokens computed earlier (once per template), a new search crop."""
        decoded, memory = self.forward_transformer(templates, self.forward_backbone(search, search_mask))
        return self.forward_heads(decoded, memory)

    def forward(self, templates: list[torch.Tensor], template_masks: list[torch.Tensor],
                search: torch.Tensor, search_mask: torch.Tensor) -> dict[str, torch.Tensor]:
        """The training forward: every crop through the backbone, then transformer and heads."""
        template_tokens = [self.forward_backbone(z, m) for z, m in zip(templates, template_masks)]
        return self.forward_search(template_tokens, search, search_mask)

    # --- what each training stage trains ----------------------------------------------------------
    def stage_parameters(self, stage: int) -> list[tuple[str, nn.Parameter]]:
        """Stage 1: everything but the score head (and the backbone's never-trained parts).
        Stage 2: the score head only."""
        if stage == 1:
            return [(n, p) for n, p in self.named_parameters()
                    if not n.startswith("score_head.") and self._backbone_trains(n)]
        if stage == 2:
            if self.score_head is None:
                raise ValueError("stage 2 trains the score head, which only STARK-ST has")
            return [(n, p) for n, p in self.named_parameters() if n.startswith("score_head.")]
        raise ValueError(f"stage must be 1 or 2, got {stage}")

    def _backbone_trains(self, name: str) -> bool:
        if not name.startswith("backbone.body."):
            return True
        return self.backbone.trains(name[len("backbone.body."):])

    def train_stage(self, stage: int) -> "STARK":
        """Set requires_grad and train/eval modes for a stage; frozen parts stay in eval mode so that
        their BatchNorm statistics and dropout do not change under the stage that does not train them."""
        trained = {n for n, _ in self.stage_parameters(stage)}
        for name, param in self.named_parameters():
            param.requires_grad_(name in trained)
        self.train()
        if stage == 2:
            for name, module in self.named_children():
                if name != "score_head":
                    module.eval()
        return self


def build_stark(cfg: ModelConfig) -> STARK:
    cfg.validate()
    d_model = cfg.transformer.d_model
    return STARK(
        backbone=build_backbone(cfg.backbone),
        position_encoding=build_position_encoding(d_model),
        transformer=build_transformer(cfg.transformer),
        box_head=build_corner_head(cfg.head, d_model, cfg.search_feat_size),
        score_head=build_score_head(cfg.head, d_model) if cfg.variant == "ST" else None,
        num_templates=cfg.num_templates,
        score_input=cfg.head.score_input if cfg.variant == "ST" else "query",
        template_target_cells=template_target_cells(cfg.template_feat_size, cfg.template_factor),
    )
