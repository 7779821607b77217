"""Decoders of UniAD: the layer-wise query decoder (LQD, designs a-f of D.2 / Figure S1) and
the vanilla transformer decoder with one query (C.1) or without any query (S2 row 1).

Each decoder layer fuses three inputs with two attention modules:
``q`` its learned query embedding, ``E`` the encoder output, ``P`` the previous layer's output
(``E`` for the first layer). ``r`` is the result of the first attention. An attention
``(Q, KV)`` computes ``norm(Q + attn(Q, KV))``; the layer output is ``norm(t + FFN(t))`` of the
second attention's result ``t``. The wiring of each design, as (attn-1 Q, KV, attn-2 Q, KV):

======  =====================  ============================================================
design  wiring                 constraint of D.2 that it meets or breaks
======  =====================  ============================================================
lqd_a   (q, E) then (r, P)     the official design: P is key/value, r is the next query
lqd_b   (q, P) then (r, E)     P is key/value, r is the next query
lqd_c   (q, E) then (P, r)     breaks both: P is a query, r is not
lqd_d   (q, P) then (E, r)     breaks "r is the query of the second attention"
lqd_e   (P, E) then (q, r)     breaks "P is key/value" (P is a query)
lqd_f   (E, P) then (q, r)     P is key/value; q enters the second attention
======  =====================  ============================================================

The vanilla decoder (``query1``/``none``) is self-attention then cross-attention to the encoder,
(P, P) then (r, E), where P of the first layer is one learned query embedding (``query1``)
or the encoder output itself (``none``: w/o query).
"""

from torch import nn

from models.attention import Dropout, FeedForward, PositionalAttention

WIRING: dict[str, tuple[str, str, str, str]] = {
    "lqd_a": ("q", "E", "r", "P"),
    "lqd_b": ("q", "P", "r", "E"),
    "lqd_c": ("q", "E", "P", "r"),
    "lqd_d": ("q", "P", "E", "r"),
    "lqd_e": ("P", "E", "q", "r"),
    "lqd_f": ("E", "P", "q", "r"),
    "query1": ("P", "P", "r", "E"),
    "none": ("P", "P", "r", "E"),
}
DESIGNS = tuple(WIRING)


class DecoderLayer(nn.Module):
    """One decoder layer wired as ``WIRING[design]``; owns a query embedding if ``with_query``."""

    def __init__(self, design: str, num_tokens: int, dim: int, heads: int, ffn_dim: int, dropout: float,
                 with_query: bool):
        super().__init__()
        if design not in WIRING:
            raise ValueError(f"decoder design {design!r} is unknown; choose one of {', '.join(DESIGNS)}")
        self.wiring = WIRING[design]
        self.vanilla = design in ("query1", "none")
        self.learned_embed = nn.Embedding(num_tokens, dim) if with_query else None
        self.attn1 = PositionalAttention(dim, heads, dropout)
        self.attn2 = PositionalAttention(dim, heads, dropout)
        self.ffn = FeedForward(dim, ffn_dim, dropout)
        self.norm1 = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)
        self.norm3 = nn.LayerNorm(dim)
        self.dropout1 = Dropout(dropout)
        self.dropout2 = Dropout(dropout)
        self.dropout3 = Dropout(dropout)

    def forward(self, prev, memory, pos, mask=None):
        """prev (P), memory (E): (B, N, D) → (B, N, D)."""
        inputs = {"P": prev, "E": memory}
        if self.learned_embed is not None:
            # in the compute dtype, as the position embedding: under autocast the decoder residual stream
            # then stays bf16 like the encoder's (an fp32 query would turn it, and every cast after it, fp32)
            inputs["q"] = self.learned_embed.weight.to(prev.dtype).unsqueeze(0).expand(prev.shape[0], -1, -1)
            if self.vanilla:  # first layer of `query1`: the query embedding replaces P
                inputs["P"] = inputs["q"]
        q1, kv1 = (inputs[k] for k in self.wiring[:2])
        inputs["r"] = self.norm1(self.dropout1.residual(q1, self.attn1(q1, kv1, pos, mask)))
        q2, kv2 = (inputs[k] for k in self.wiring[2:])
        t = self.norm2(self.dropout2.residual(q2, self.attn2(q2, kv2, pos, mask)))
        return self.norm3(self.dropout3.residual(t, self.ffn(t)))


class QueryDecoder(nn.Module):
    """Stack of decoder layers and a final LayerNorm (always present in the official code)."""

    def __init__(self, design: str, num_layers: int, num_tokens: int, dim: int, heads: int, ffn_dim: int,
                 dropout: float):
        super().__init__()
        layers = []
        for i in range(num_layers):
            if design.startswith("lqd_"):
                with_query = True  # layer-wise: every layer owns its query embedding
            else:
                with_query = design == "query1" and i == 0
            layers.append(DecoderLayer(design, num_tokens, dim, heads, ffn_dim, dropout, with_query))
        self.layers = nn.ModuleList(layers)
        self.design = design
        self.norm = nn.LayerNorm(dim)

    def forward(self, memory, pos, mask=None):
        out = memory  # P of the first layer is the encoder output
        for layer in self.layers:
            out = layer(out, memory, pos, mask)
        return self.norm(out)
