"""OpenShape's PointBERT-style encoder ("PPAT", PointPatchTransformer) in plain torch.

The original (``openshape/ppat_rgb.py`` + ``pointnet_util.py`` of openshape-demo-support, and
``src/models/ppat.py`` of Colin97/OpenShape_code) needs dgl for farthest point sampling and
torch_redstone for two helpers; this module has the same layers under the same state-dict key
names, and nothing but torch:

1. **Patches** (``sa``, PointNet++ set abstraction): farthest point sampling picks ``patches``
   centres from the xyz coordinates; a ball query takes, for each centre, the ``nsample``
   *lowest-index* points within ``radius`` (PointNet++'s ``query_ball_point``: index order, not
   nearest first; short balls are padded with their first point). Each neighbour becomes
   ``[xyz - centre, xyz, rgb]`` (9 channels) and a shared MLP of three 1x1 convolutions with
   BatchNorm and ReLU (64, 64, ``sa_dim``) is max-pooled over the ball.
2. **Tokens** (``lift``): ``[centre xyz, patch feature]`` -> Conv1d(1x1) -> LayerNorm. Positions
   enter only through this concatenation; there is no separate positional embedding.
3. A learned CLS token is put first; a pre-norm transformer (``depth`` blocks of multi-head
   attention without qkv bias, then Linear-GELU-Linear) runs over CLS + patches, with no final
   norm. The original also builds pairwise centroid offsets for a relative position bias that
   every released model has switched off (``rel_pe=False``); they are not computed here.
4. The CLS token is the output; ``Projected`` adds a Linear into the CLIP space (G14, L14).

What differs from the original on purpose: dgl starts farthest point sampling at a random
point, so the original's embeddings change from call to call; here it starts at point 0,
so a cloud always gives the same bytes. Attention uses ``scaled_dot_product_attention``
(the same softmax(q k^T / sqrt(d)) v) and the 1x1 convolutions of the set abstraction run as
matrix products over a channels-last layout (the same arithmetic, faster on CPU).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

BALL_CHUNK = 32  # centres per ball-query step: (B, 32, N) distances at a time


@dataclass(frozen=True)
class PPATConfig:
    """The architecture of one OpenShape PointBERT encoder (arguments of the original constructor)."""

    dim: int = 512
    depth: int = 12
    heads: int = 8
    dim_head: int = 64
    mlp_dim: int = 1536
    sa_dim: int = 256
    patches: int = 384
    radius: float = 0.2
    nsample: int = 64
    in_dim: int = 6
    proj_dim: int = 1280  # 0: no projection; the CLS token itself is the embedding (B32)


# -- sampling and grouping ------------------------------------------------------------------------
def farthest_point_sample(xyz: torch.Tensor, n: int, start: int = 0) -> torch.Tensor:
    """Indices (B, n) of ``n`` farthest points of each cloud in ``xyz`` (B, N, 3), starting at ``start``.

    Greedy, as dgl's sampler: each step takes the point whose squared distance to the chosen set
    is largest (the first such index on ties). The loop runs over the ``n`` samples, every step
    handling all points of all clouds at once, on one contiguous (B, N) plane per axis.
    """
    batch, count, _ = xyz.shape
    rows = torch.arange(batch, device=xyz.device)
    planes = xyz.permute(2, 0, 1).contiguous()  # (3, B, N)
    chosen = torch.empty(batch, n, dtype=torch.long, device=xyz.device)
    nearest = torch.full((batch, count), float("inf"), dtype=xyz.dtype, device=xyz.device)
    dist, diff = torch.empty_like(nearest), torch.empty_like(nearest)
    current = torch.full((batch,), start, dtype=torch.long, device=xyz.device)
    for i in range(n):
        chosen[:, i] = current
        centre = planes[:, rows, current].unsqueeze(-1)  # (3, B, 1)
        torch.sub(planes[0], centre[0], out=dist).square_()
        for axis in (1, 2):
            torch.sub(planes[axis], centre[axis], out=diff)
            dist.addcmul_(diff, diff)
        torch.minimum(nearest, dist, out=nearest)
        current = nearest.argmax(-1)
    return chosen


def square_distance(src: torch.Tensor, dst: torch.Tensor) -> torch.Tensor:
    """Squared distances (B, S, N) between ``src`` (B, S, 3) and ``dst`` (B, N, 3), as PointNet++ computes them."""
    dist = -2 * torch.matmul(src, dst.transpose(1, 2))
    dist += src.square().sum(-1).unsqueeze(-1)
    dist += dst.square().sum(-1).unsqueeze(-2)
    return dist


def ball_query(xyz: torch.Tensor, centres: torch.Tensor, radius: float, nsample: int,
               chunk: int = BALL_CHUNK) -> torch.Tensor:
    """Indices (B, S, nsample) of the lowest-index points of ``xyz`` within ``radius`` of each centre.

    Balls with fewer points repeat their first (lowest) index, as PointNet++'s ``query_ball_point``.
    Instead of the original's sort of all N indices per centre, the running count of in-ball
    points is searched for 1..nsample: the position where the count first reaches j is the j-th
    in-ball index (N when there is none). Centres go ``chunk`` at a time to bound memory.
    """
    count = xyz.shape[1]
    k = min(nsample, count)
    wanted = torch.arange(1, k + 1, dtype=torch.int32, device=xyz.device)
    parts = []
    for part in centres.split(chunk, dim=1):
        running = (square_distance(part, xyz) <= radius**2).cumsum(-1, dtype=torch.int32)  # (B, s, N)
        index = torch.searchsorted(running, wanted.expand(*running.shape[:-1], k).contiguous())
        parts.append(torch.where(index == count, index[..., :1], index))
    return torch.cat(parts, dim=1)


def gather_points(points: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``points`` (B, N, C) at ``index`` (B, ...) -> (B, ..., C)."""
    rows = torch.arange(points.shape[0], device=points.device).view(-1, *([1] * (index.dim() - 1)))
    return points[rows, index]


# -- layers (names and nesting follow the original state dict) -------------------------------------
class SetAbstraction(nn.Module):
    """PointNet++ set abstraction: sample centres, group balls, shared MLP, max-pool (``mlp_convs``, ``mlp_bns``)."""

    def __init__(self, npoint: int, radius: float, nsample: int, in_channel: int, mlp: list[int]):
        super().__init__()
        self.npoint, self.radius, self.nsample = npoint, radius, nsample
        self.mlp_convs = nn.ModuleList()
        self.mlp_bns = nn.ModuleList()
        last = in_channel
        for out in mlp:
            self.mlp_convs.append(nn.Conv2d(last, out, 1))
            self.mlp_bns.append(nn.BatchNorm2d(out))
            last = out

    def forward(self, xyz: torch.Tensor, points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """xyz (B, N, 3), points (B, N, D) -> centres (B, S, 3), features (B, S, C)."""
        centres = gather_points(xyz, farthest_point_sample(xyz, self.npoint))
        index = ball_query(xyz, centres, self.radius, self.nsample)
        grouped = torch.cat([gather_points(xyz, index) - centres.unsqueeze(2), gather_points(points, index)], -1)
        x = grouped  # (B, S, K, 3 + D), channels last: a 1x1 convolution is a Linear on the last axis
        for conv, bn in zip(self.mlp_convs, self.mlp_bns, strict=True):
            x = F.linear(x, conv.weight.flatten(1), conv.bias)
            x = F.relu(F.batch_norm(x.flatten(0, -2), bn.running_mean, bn.running_var, bn.weight, bn.bias,
                                    False, 0.0, bn.eps).view(x.shape))
        return centres, x.amax(dim=2)


class Permute(nn.Module):
    """(B, C, S) -> (B, S, C); the parameter-free middle entry of the original ``lift`` Sequential."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.permute(0, 2, 1)


class PreNorm(nn.Module):
    def __init__(self, dim: int, fn: nn.Module):
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.fn = fn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(self.norm(x))


class Attention(nn.Module):
    """Multi-head self-attention: qkv without bias, output Linear (keys ``to_qkv``, ``to_out.0``)."""

    def __init__(self, dim: int, heads: int, dim_head: int):
        super().__init__()
        self.heads = heads
        self.to_qkv = nn.Linear(dim, heads * dim_head * 3, bias=False)
        self.to_out = nn.Sequential(nn.Linear(heads * dim_head, dim), nn.Dropout(0.0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, tokens, _ = x.shape
        q, k, v = self.to_qkv(x).view(batch, tokens, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v)  # softmax(q k^T / sqrt(dim_head)) v
        return self.to_out(out.transpose(1, 2).reshape(batch, tokens, -1))


class FeedForward(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Dropout(0.0), nn.Linear(hidden, dim),
                                 nn.Dropout(0.0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class Transformer(nn.Module):
    """Pre-norm blocks ``layers.i.0`` (attention) and ``layers.i.1`` (feed-forward), residual each."""

    def __init__(self, dim: int, depth: int, heads: int, dim_head: int, mlp_dim: int):
        super().__init__()
        self.layers = nn.ModuleList(
            nn.ModuleList([PreNorm(dim, Attention(dim, heads, dim_head)), PreNorm(dim, FeedForward(dim, mlp_dim))])
            for _ in range(depth)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for attn, ff in self.layers:
            x = attn(x) + x
            x = ff(x) + x
        return x


class PointPatchTransformer(nn.Module):
    """The PPAT encoder: (B, N, 3) xyz and (B, N, in_dim) features -> (B, dim) CLS token."""

    def __init__(self, cfg: PPATConfig):
        super().__init__()
        self.sa = SetAbstraction(cfg.patches, cfg.radius, cfg.nsample, cfg.in_dim + 3, [64, 64, cfg.sa_dim])
        self.lift = nn.Sequential(nn.Conv1d(cfg.sa_dim + 3, cfg.dim, 1), Permute(), nn.LayerNorm([cfg.dim]))
        self.cls_token = nn.Parameter(torch.zeros(cfg.dim))
        self.transformer = Transformer(cfg.dim, cfg.depth, cfg.heads, cfg.dim_head, cfg.mlp_dim)

    def forward(self, xyz: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        centres, patches = self.sa(xyz, features)
        x = self.lift(torch.cat([centres, patches], -1).transpose(1, 2))  # (B, S, dim)
        x = torch.cat([self.cls_token.expand(x.shape[0], 1, -1), x], dim=1)
        return self.transformer(x)[:, 0]


class Projected(nn.Module):
    """PPAT followed by a Linear into the CLIP space (keys ``ppat.*`` and ``proj.*``)."""

    def __init__(self, ppat: PointPatchTransformer, proj: nn.Linear):
        super().__init__()
        self.ppat = ppat
        self.proj = proj

    def forward(self, xyz: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        return self.proj(self.ppat(xyz, features))


def build(cfg: PPATConfig) -> nn.Module:
    """The encoder for ``cfg``: ``Projected`` when it has a projection, else the bare PPAT (as B32)."""
    ppat = PointPatchTransformer(cfg)
    return Projected(ppat, nn.Linear(cfg.dim, cfg.proj_dim)) if cfg.proj_dim else ppat
