"""DETR-style post-norm transformer: encoder over template + search tokens, decoder for one target query.

Shapes: tokens [L, B, d]; key padding mask [B, L] (True = padding); query [Nq, B, d].
"""
from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from stark.model.config import TransformerConfig


class EncoderLayer(nn.Module):
    def __init__(self, d_model: int, nheads: int, dim_feedforward: int, dropout: float):
        super().__init__()
        self.self_attn = nn.MultiheadAttention(d_model, nheads, dropout=dropout)
        self.linear1 = nn.Linear(d_model, dim_feedforward)
        self.linear2 = nn.Linear(dim_feedforward, d_model)
        self.norm1 = nn.LayerNorm(d_model)
        self.norm2 = nn.LayerNorm(d_model)
        self.dropout = nn.Dropout(dropout)
        self.dropout1 = nn.Dropout(dropout)
        self.dropout2 = nn.Dropout(dropout)

    def forward(self, src: torch.Tensor, padding_mask: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        q = k = src + pos  # positions enter queries and keys, never values
        attended = self.self_attn(q, k, value=src, key_padding_mask=padding_mask, need_weights=False)[0]
        src = self.norm1(src + self.dropout1(attended))
        ffn = self.linear2(self.dropout(F.relu(self.linear1(src))))
        return self.norm2(src + self.dropout2(ffn))


class DecoderLayer(nn.Module):
    def __init__(self, d_model: int, nheads: int, dim_feedforward: int, dropout: float):
        super().__init__()
        self.self_attn = nn.MultiheadAttention(d_model, nheads, dropout=dropout)
        self.multihead_attn = nn.MultiheadAttention(d_model, nheads, dropout=dropout)
        self.linear1 = nn.Linear(d_model, dim_feedforward)
        self.linear2 = nn.Linear(dim_feedforward, d_model)
        self.norm1 = nn.LayerNorm(d_model)
        self.norm2 = nn.LayerNorm(d_model)
        self.norm3 = nn.LayerNorm(d_model)
        self.dropout = nn.Dropout(dropout)
        self.dropout1 = nn.Dropout(dropout)
        self.dropout2 = nn.Dropout(dropout)
        self.dropout3 = nn.Dropout(dropout)

    def forward(self, tgt, memory, memory_padding_mask, pos, query_pos):
        q = k = tgt + query_pos
        attended = self.self_attn(q, k, value=tgt, need_weights=False)[0]
        tgt = self.norm1(tgt + self.dropout1(attended))
        attended = self.multihead_attn(
            query=tgt + query_pos, key=memory + pos, value=memory,
            key_padding_mask=memory_padding_mask, need_weights=False,
        )[0]
        tgt = self.norm2(tgt + self.dropout2(attended))
        ffn = self.linear2(self.dropout(F.relu(self.linear1(tgt))))
        return self.norm3(tgt + self.dropout3(ffn))


class Encoder(nn.Module):
    def __init__(self, layer: EncoderLayer, num_layers: int):
        super().__init__()
        self.layers = nn.ModuleList(copy.deepcopy(layer) for _ in range(num_layers))

    def forward(self, src, padding_mask, pos):
        for layer in self.layers:
            src = layer(src, padding_mask, pos)
        return src  # post-norm: no final norm on the encoder


class Decoder(nn.Module):
    def __init__(self, layer: DecoderLayer, num_layers: int, d_model: int):
        super().__init__()
        self.layers = nn.ModuleList(copy.deepcopy(layer) for _ in range(num_layers))
        self.norm = nn.LayerNorm(d_model)

    def forward(self, tgt, memory, memory_padding_mask, pos, query_pos):
        for layer in self.layers:
            tgt = layer(tgt, memory, memory_padding_mask, pos, query_pos)
        return self.norm(tgt)


class Transformer(nn.Module):
    def __init__(self, d_model: int, nheads: int, enc_layers: int, dec_layers: int,
                 dim_feedforward: int, dropout: float):
        super().__init__()
        self.d_model = d_model
        self.encoder = Encoder(EncoderLayer(d_model, nheads, dim_feedforward, dropout), enc_layers)
        self.decoder = Decoder(DecoderLayer(d_model, nheads, dim_feedforward, dropout), dec_layers, d_model)
        for p in self.parameters():
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)

    def forward(self, tokens: torch.Tensor, padding_mask: torch.Tensor, pos: torch.Tensor,
                query: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """tokens/pos [L, B, d], padding_mask [B, L], query [Nq, d] -> (decoded [Nq, B, d], memory [L, B, d])."""
        batch = tokens.shape[1]
        query_pos = query.unsqueeze(1).expand(-1, batch, -1)  # [Nq, B, d]
        memory = self.encoder(tokens, padding_mask, pos)
        tgt = torch.zeros_like(query_pos)  # the decoder input starts at zero; the query is its position
        decoded = self.decoder(tgt, memory, padding_mask, pos, query_pos)
        return decoded, memory


def build_transformer(cfg: TransformerConfig) -> Transformer:
    return Transformer(cfg.d_model, cfg.nheads, cfg.enc_layers, cfg.dec_layers, cfg.dim_feedforward, cfg.dropout)
