"""UniAD feature reconstruction (main paper Sec. 3, supplementary C.2-C.3).

features (B, C_org, H, W) → tokens (B, HW, C_org) → [feature jitter, training only] →
channel reduction Linear(C_org→D) → neighbor-masked encoder → query decoder → channel
recovery Linear(D→C_org) → reconstructed features (B, C_org, H, W).

With ``decoder="query1"``, ``nma=False`` and ``fj=False`` this is the vanilla transformer
baseline of C.1 (``model=transformer``).
"""

from __future__ import annotations

import torch
from torch import nn

from models.attention import EncoderLayer, PositionalAttention
from models.init import xavier_init_
from models.jitter import JITTER_RULES, FeatureJitter
from models.neighbor_mask import neighbor_mask
from models.position_embedding import LearnedPositionEmbedding
from models.query_decoder import DESIGNS, QueryDecoder
from rules import BOOL, INT, ONE_OF, REAL


class UniAD(nn.Module):
    RULES = {
        "hidden_dim": INT(1, multiple_of="nhead"), "nhead": INT(1), "num_encoder_layers": INT(0),
        "num_decoder_layers": INT(0), "dim_feedforward": INT(1), "dropout": REAL(0, 1, open_high=True),
        "decoder": ONE_OF(*DESIGNS), "nma": BOOL, "neighbor_size": INT(1, items=True, length=2),
        "fp32_scores": BOOL, "attention": ONE_OF("softmax", "linear"), "bottleneck_dropout": REAL(0, 1, open_high=True),
        **JITTER_RULES,
    }

    def __init__(
        self,
        in_channels: int,
        feature_size: tuple[int, int],
        hidden_dim: int = 256,
        nhead: int = 8,
        num_encoder_layers: int = 4,
        num_decoder_layers: int = 4,
        dim_feedforward: int = 1024,
        dropout: float = 0.1,
        decoder: str = "lqd_a",
        nma: bool = True,
        neighbor_size: tuple[int, int] = (7, 7),
        fj: bool = True,
        fj_scale: float = 20.0,
        fj_prob: float = 1.0,
        fp32_scores: bool = False,
        attention: str = "softmax",
        bottleneck_dropout: float = 0.0,
    ):
        """The paper's UniAD with the defaults of Table S1 and supp. C.2 (``conf/model/uniad.yaml`` sets each).

        Args:
            in_channels: channels of the backbone's concatenated stages (272 for EfficientNet-b4, stages 1-4).
            feature_size: (h, w) of the feature map (14x14 at 224 px, stride 16); fixes the number of tokens,
                the position table and, for layer-wise queries, one learned query per token.
            hidden_dim: token width after the channel reduction (256).
            nhead: attention heads per attention (8).
            num_encoder_layers, num_decoder_layers: transformer layers on each side (4 + 4).
            dim_feedforward: width of each layer's feed-forward block (1024).
            dropout: dropout on attention weights, residuals and the feed-forward block (0.1).
            decoder: the query decoder's design (supp. D.2, Figure S1): ``none`` (no query, Table S2 row 1),
                ``query1`` (one learned query), ``lqd_a`` ... ``lqd_f`` (layer-wise queries; (a) is the paper's).
            nma: neighbor masked attention (main paper Sec. 3.3): each token attends to all but its
                ``neighbor_size`` neighbourhood in every attention.
            neighbor_size: (h, w) of the masked neighbourhood (7x7).
            fj: feature jittering during training (main paper Sec. 3.4).
            fj_scale: the jitter's scale alpha: noise std is ``fj_scale * ||f||_2 / C`` per token (20).
            fj_prob: probability that a token is jittered (1.0).
            fp32_scores: under bf16 autocast, keep the token stream and the attention scores in fp32
                (docs/performance.md); no effect without autocast.
            attention: ``softmax`` (the paper's) or ``linear`` (Dinomaly's linear attention, sec. 3.3, in every
                attention; it has no weights to mask, so it needs ``nma=False``).
            bottleneck_dropout: Dinomaly's noisy bottleneck (sec. 3.2) for UniAD: dropout of this rate on the
                channel reduction's input and output during training (0 = none; with ``fj=False`` it replaces
                feature jittering as the noise).
        """
        super().__init__()
        if attention not in ("softmax", "linear"):
            raise ValueError(f"model.attention={attention!r} is unknown; choose softmax or linear")
        if attention == "linear" and nma:
            raise ValueError("model.attention=linear has no attention weights for the neighbor mask: "
                             "set model.nma=false")
        h, w = feature_size
        self.feature_size = (h, w)
        self.jitter = FeatureJitter(fj_scale, fj_prob) if fj else None
        self.noise = nn.Dropout(bottleneck_dropout) if bottleneck_dropout > 0 else None
        self.channel_reduction = nn.Linear(in_channels, hidden_dim)
        self.pos_embed = LearnedPositionEmbedding((h, w), hidden_dim)
        self.encoder = nn.ModuleList(
            EncoderLayer(hidden_dim, nhead, dim_feedforward, dropout) for _ in range(num_encoder_layers)
        )
        self.decoder = QueryDecoder(decoder, num_decoder_layers, h * w, hidden_dim, nhead, dim_feedforward, dropout)
        self.channel_recovery = nn.Linear(hidden_dim, in_channels)
        # under bf16 autocast: the token stream and the attention scores stay fp32 (``PositionalAttention``)
        self.fp32_scores = fp32_scores
        for module in self.modules():
            if isinstance(module, PositionalAttention):
                module.fp32_scores = fp32_scores
                module.linear = attention == "linear"
        mask = neighbor_mask((h, w), tuple(neighbor_size)) if nma else None
        # boolean, True = blocked; built once, moved with the module, never saved in checkpoints
        self.register_buffer("attn_mask", mask, persistent=False)
        xavier_init_(self)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        b, c, h, w = features.shape
        if (h, w) != self.feature_size:
            raise ValueError(f"UniAD was built for {self.feature_size} features, got {(h, w)}")
        tokens = features.flatten(2).transpose(1, 2)  # (B, HW, C); token index = h*W + w
        if self.jitter is not None:
            tokens = self.jitter(tokens)
        if self.noise is not None:
            tokens = self.noise(tokens)
        if self.fp32_scores and torch.is_autocast_enabled(tokens.device.type):
            # the stream that q and k are projected from starts fp32: residual adds and LayerNorms keep it so
            with torch.autocast(tokens.device.type, enabled=False):
                x = self.channel_reduction(tokens.float())
        else:
            x = self.channel_reduction(tokens)
        if self.noise is not None:
            x = self.noise(x)
        pos = self.pos_embed().to(x.dtype)
        mask = self.attn_mask
        memory = x
        for layer in self.encoder:
            memory = layer(memory, pos, mask)
        out = self.decoder(memory, pos, mask)
        rec = self.channel_recovery(out)  # (B, HW, C)
        return rec.transpose(1, 2).reshape(b, c, h, w)


def official_key(name: str) -> str:
    """Our parameter name → the official UniAD reconstruction module's name (for checkpoints)."""
    replacements = [
        ("channel_reduction.", "input_proj."),
        ("channel_recovery.", "output_proj."),
        ("encoder.", "transformer.encoder.layers."),
        ("decoder.layers.", "transformer.decoder.layers."),
        ("decoder.norm.", "transformer.decoder.norm."),
        (".attn.mha.", ".self_attn."),
        (".attn1.mha.", ".self_attn."),
        (".attn2.mha.", ".multihead_attn."),
        (".ffn.linear1.", ".linear1."),
        (".ffn.linear2.", ".linear2."),
    ]
    for ours, theirs in replacements:
        if name.startswith(ours) or (ours.startswith(".") and ours in name):
            name = name.replace(ours, theirs, 1)
    return name


def load_official_state_dict(model: UniAD, state: dict[str, torch.Tensor]) -> None:
    """Load an official UniAD ``reconstruction`` state dict (prefixes ``module.reconstruction.`` accepted)."""
    prefix = next((p for p in ("module.reconstruction.", "reconstruction.") if any(k.startswith(p) for k in state)), "")
    state = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    ours = {name: state[official_key(name)] for name in model.state_dict()}
    model.load_state_dict(ours, strict=True)
