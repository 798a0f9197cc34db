"""Many small decoders of one architecture as stacked tensors, and an SGD that gives each its own lr and decay.

A family holds `heads` decoders of the same pooling and depth; every parameter has a leading head dimension,
so one batched matmul runs all of them. Heads never share weights or optimiser state: each slice of a stacked
tensor is one head's parameter, each slice of the momentum buffer that head's state.

Poolings (features standardised with training statistics upstream):
  cls        the encoder's global embedding.
  avg        the mean of the patch tokens.
  cls+avg    the global embedding concatenated with the mean of the patch tokens (DINOv2's linear evaluation with
             average pooling, which the DINOv2-radiology paper's linear probe also tries).
  attentive  one learnable query per task cross-attends to the patch tokens (keys and values are the tokens,
             scaled dot product); task t is decoded from its own pooled vector. Queries start at zero, so a head
             starts as average pooling and learns where to look; its attention maps are returned for inspection.
Depth 1 is linear; depth 2 an MLP (Linear, GELU, Linear) whose hidden layer is shared by the tasks.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

POOLINGS = ("cls", "avg", "cls+avg", "attentive")


class StackedDecoders(torch.nn.Module):
    def __init__(self, pooling: str, depth: int, heads: int, dim: int, tasks: int, hidden: int, generator: torch.Generator,
                 source: str | None = None):
        """`source`: the input the family decodes when it is not the one its pooling names (the class tokens of
        several blocks, `GridHead`)."""
        super().__init__()
        self.pooling, self.depth, self.dim, self.source = pooling, depth, dim, source or pooling
        per_task = pooling == "attentive"

        def normal(*shape: int, std: float) -> torch.nn.Parameter:
            return torch.nn.Parameter(torch.randn(*shape, generator=generator) * std)

        def zeros(*shape: int) -> torch.nn.Parameter:
            return torch.nn.Parameter(torch.zeros(*shape))

        if per_task:
            self.queries = zeros(heads, tasks, dim)
        # DINOv2's linear-head init (N(0, 0.01), zero bias) for the output layer; fan-in scaling for the hidden one
        inner = dim if depth == 1 else hidden
        if depth == 2:
            self.w1, self.b1 = normal(heads, dim, hidden, std=1 / math.sqrt(dim)), zeros(heads, hidden)
        self.out_w = normal(heads, tasks, inner, std=0.01) if per_task else normal(heads, inner, tasks, std=0.01)
        self.out_b = zeros(heads, tasks)

    def decayed(self) -> list[torch.nn.Parameter]:
        """Parameters under weight decay: weights and queries, not biases."""
        return [p for name, p in self.named_parameters() if not name.endswith(("b1", "out_b"))]

    def attention(self, tokens: torch.Tensor, index: slice = slice(None)) -> torch.Tensor:
        """[heads, B, tasks, N] softmax weights of each task's query over the N patch tokens ([B, N, D])."""
        scores = torch.einsum("bnd,htd->hbtn", tokens, self.queries[index]) / math.sqrt(self.dim)
        return scores.softmax(dim=-1)

    def forward(self, inputs: dict[str, torch.Tensor], index: slice = slice(None)) -> torch.Tensor:
        """Logits [heads, B, tasks]. `inputs`: "cls" [B, D], "avg" [B, D], "cls+avg" [B, 2D], "tokens" [B, N, D] as
        needed."""
        out_w, out_b = self.out_w[index], self.out_b[index][:, None]
        if self.pooling == "attentive":
            pooled = torch.einsum("hbtn,bnd->hbtd", self.attention(inputs["tokens"], index), inputs["tokens"])
            if self.depth == 2:
                pooled = F.gelu(torch.einsum("hbtd,hdm->hbtm", pooled, self.w1[index]) + self.b1[index][:, None, None])
            return torch.einsum("hbtk,htk->hbt", pooled, out_w) + out_b
        pooled = inputs[self.source]
        if self.depth == 2:
            hidden = F.gelu(torch.einsum("bd,hdm->hbm", pooled, self.w1[index]) + self.b1[index][:, None])
            return torch.einsum("hbm,hmt->hbt", hidden, out_w) + out_b
        return torch.einsum("bd,hdt->hbt", pooled, out_w) + out_b


class StackedSGD:
    """SGD with momentum where head h of a family uses learning rate lr[h] and L2 weight decay wd[h].

    Each head's update equals `torch.optim.SGD(lr=lr[h], momentum, weight_decay=wd[h])` on that head alone, with
    biases undecayed (tested); `scale` is the schedule's multiplier for this step.
    """

    def __init__(self, family: StackedDecoders, lr: torch.Tensor, weight_decay: torch.Tensor, momentum: float):
        self.params, self.momentum = list(family.parameters()), momentum
        self.decayed = {id(p) for p in family.decayed()}
        self.lr, self.weight_decay = lr, weight_decay
        self.buffers: dict[int, torch.Tensor] = {}

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self, scale: float = 1.0) -> None:
        for p in self.params:
            if p.grad is None:
                continue
            shape = (-1,) + (1,) * (p.dim() - 1)
            grad = p.grad
            if id(p) in self.decayed:
                grad = grad + self.weight_decay.view(shape) * p
            buffer = self.buffers.get(id(p))
            buffer = grad.clone() if buffer is None else buffer.mul_(self.momentum).add_(grad)
            self.buffers[id(p)] = buffer
            p.sub_(scale * self.lr.view(shape) * buffer)
