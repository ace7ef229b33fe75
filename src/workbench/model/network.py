"""Conv2d-FSQ classifier for IMU windows (N, C, S, T): channels x sensor sites x time.

Why this shape: the Hailo-8 compiler handles Conv/BN/ReLU/GlobalAveragePool/Gemm well, so the encoder
is a stack of (1, k) temporal convolutions (each followed by BatchNorm: convolutions without it
quantize badly on Hailo, REFERENCE.md section 2), a (sites, 1) convolution that mixes sensor sites,
global average pooling and a linear projection to len(levels) dims. FSQ then gives a discrete code
and a small head classifies it. The inference graph ends: Gemm -> Add -> Tanh -> Mul -> Sub -> Round
-> Div -> head, so it can be cut right before Round.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

from torch import Tensor, nn

from .fsq import FSQ, _check_levels, _exporting


@dataclass
class ModelConfig:
    """Everything needed to rebuild an FSQClassifier; stored with every checkpoint."""

    in_channels: int
    sites: int
    window: int
    num_classes: int
    encoder_channels: list[int] = field(default_factory=lambda: [32, 64, 64])
    kernel_time: int = 5
    fsq_levels: list[int] = field(default_factory=lambda: [8, 6, 5, 5, 4])
    head_hidden: int = 64
    dropout: float = 0.1

    def __post_init__(self) -> None:
        # Plain Python numbers (numpy ints from data shapes would not survive weights_only loading).
        for name in ("in_channels", "sites", "window", "num_classes", "kernel_time", "head_hidden"):
            setattr(self, name, int(getattr(self, name)))
        self.dropout = float(self.dropout)
        self.encoder_channels = [int(c) for c in self.encoder_channels]
        self.fsq_levels = _check_levels(self.fsq_levels)
        for name in ("in_channels", "sites", "window", "kernel_time"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"ModelConfig.{name} must be >= 1 (got {getattr(self, name)})")
        if self.num_classes < 2:
            raise ValueError(f"ModelConfig.num_classes must be >= 2 (got {self.num_classes})")
        if not self.encoder_channels or any(c < 1 for c in self.encoder_channels):
            raise ValueError(
                f"ModelConfig.encoder_channels must be a non-empty list of positive widths "
                f"(got {self.encoder_channels}); e.g. [32, 64, 64]"
            )
        if self.head_hidden < 0:
            raise ValueError(f"ModelConfig.head_hidden must be >= 0, 0 = linear head (got {self.head_hidden})")
        if not (0.0 <= self.dropout < 1.0):
            raise ValueError(f"ModelConfig.dropout must be in [0, 1) (got {self.dropout})")

    def to_dict(self) -> dict[str, Any]:
        """Plain types only (ints, floats, lists), safe for JSON and torch weights_only loading."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ModelConfig":
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"unknown ModelConfig fields {unknown}; known fields are {sorted(names)}")
        missing = sorted(n for n in ("in_channels", "sites", "window", "num_classes") if n not in d)
        if missing:
            raise ValueError(f"ModelConfig is missing required fields {missing}")
        return cls(**{k: (list(v) if isinstance(v, tuple) else v) for k, v in d.items()})

    @classmethod
    def from_params(cls, params: Any, *, in_channels: int, sites: int, num_classes: int) -> "ModelConfig":
        """Take the architecture from run Params and the input shape / classes from the data."""
        return cls(
            in_channels=in_channels,
            sites=sites,
            window=params.window,
            num_classes=num_classes,
            encoder_channels=list(params.encoder_channels),
            kernel_time=params.kernel_time,
            fsq_levels=list(params.fsq_levels),
            head_hidden=params.head_hidden,
            dropout=params.dropout,
        )

    def diff(self, other: "ModelConfig") -> dict[str, tuple[Any, Any]]:
        """{field: (self value, other value)} for the fields that differ."""
        a, b = self.to_dict(), other.to_dict()
        return {k: (a[k], b[k]) for k in a if a[k] != b[k]}


class ConvBNReLU(nn.Sequential):
    """Conv2d (no bias: BN follows) -> BatchNorm2d -> ReLU."""

    def __init__(
        self, cin: int, cout: int, kernel: tuple[int, int], stride: tuple[int, int], padding: tuple[int, int]
    ) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride=stride, padding=padding, bias=False)
        self.bn = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=False)


class FSQClassifier(nn.Module):
    """Conv2d encoder -> Linear ``project`` to len(levels) -> FSQ -> classifier head."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        k = config.kernel_time
        blocks: list[nn.Module] = []
        cin = config.in_channels
        for cout in config.encoder_channels:
            # Temporal conv, stride 2 in time, 'same'-style padding: T -> ceil(T / 2).
            blocks.append(ConvBNReLU(cin, cout, (1, k), (1, 2), (0, k // 2)))
            cin = cout
        # Mix the sensor sites: kernel spans every site, output height 1.
        blocks.append(ConvBNReLU(cin, cin, (config.sites, 1), (1, 1), (0, 0)))
        self.encoder = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool2d(1)  # GlobalAveragePool in ONNX
        self.flatten = nn.Flatten(1)
        self.project = nn.Linear(cin, len(config.fsq_levels))
        self.fsq = FSQ(config.fsq_levels)
        d = len(config.fsq_levels)
        if config.head_hidden > 0:
            self.head = nn.Sequential(
                nn.Linear(d, config.head_hidden),
                nn.ReLU(),
                nn.Dropout(config.dropout),
                nn.Linear(config.head_hidden, config.num_classes),
            )
        else:
            self.head = nn.Sequential(nn.Linear(d, config.num_classes))

    def _check_input(self, x: Tensor) -> None:
        if _exporting():
            return
        c = self.config
        if x.dim() != 4 or x.shape[1] != c.in_channels or x.shape[2] != c.sites:
            raise ValueError(
                f"FSQClassifier expects input (N, C={c.in_channels}, S={c.sites}, T) "
                f"(channels, sensor sites, time); got shape {tuple(x.shape)}"
            )

    def embed(self, x: Tensor) -> Tensor:
        """Encoder + pooling + projection: the pre-FSQ vector (N, len(levels))."""
        self._check_input(x)
        return self.project(self.flatten(self.pool(self.encoder(x))))

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.fsq(self.embed(x)))

    def forward_parts(self, x: Tensor) -> dict[str, Tensor]:
        """Every intermediate the notebooks and parity checks look at."""
        projection = self.embed(x)
        bound = self.fsq.bound(projection)
        levels, codes = self.fsq.quantize_bound(bound)
        return {"projection": projection, "bound": bound, "levels": levels, "codes": codes, "logits": self.head(codes)}

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())
