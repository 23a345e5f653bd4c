"""TuckerConv2d: a drop-in for nn.Conv2d whose kernel is held in Tucker form.

The layer is a thin shell: it owns the parameters (core G and factors U_N, U_C, U_D) and picks
an execution path; the maths lives in ops (paths), cost and rank_rules (costs, ranks),
autotune (path choice) and hooi (initialisation from a trained conv).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from lightning_modules.tucker import autotune
from lightning_modules.tucker.cost import (
    dense_flops,
    dense_param_count,
    tucker_flops,
    tucker_param_count,
)
from lightning_modules.tucker.geometry import ConvGeometry, TuckerRanks
from lightning_modules.tucker.hooi import hooi
from lightning_modules.tucker.ops import (
    IMPLEMENTATIONS,
    PATHS,
    Prepared,
    TuckerFactors,
    path_flops,
    reconstruct_kernel,
)
from lightning_modules.tucker.rank_rules import RankSpec, ranks_from_spec, validate_ranks

INIT_METHODS = ("hooi", "random")


class TuckerConv2d(nn.Module):
    """2-D convolution with kernel W = G x1 U_N x2 U_C x3 U_D (spatial modes flattened).

    Parameters `core` (N' x C' x D'), `out_factor` (N x N'), `in_factor` (C x C'),
    `spatial_factor` (kh*kw x D'), optional `bias` (N). `implementation` is one of
    "reconstructed", "factorized", "folded" or "auto" (time the three once per input shape and
    use the fastest; see autotune). All paths compute the same function.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | Sequence[int],
        ranks: Sequence[int],
        stride: int | Sequence[int] = 1,
        padding: int | Sequence[int] | str = 0,
        dilation: int | Sequence[int] = 1,
        groups: int = 1,
        bias: bool = True,
        padding_mode: str = "zeros",
        implementation: str = "auto",
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        if groups != 1:
            raise ValueError(
                f"TuckerConv2d supports groups=1 only (got groups={groups}); keep grouped and "
                "depthwise convolutions dense"
            )
        if padding_mode != "zeros":
            raise ValueError(
                f"TuckerConv2d supports padding_mode='zeros' only (got {padding_mode!r})"
            )
        self.geometry = ConvGeometry.of(
            in_channels, out_channels, kernel_size, stride, padding, dilation
        )
        ranks = validate_ranks(self.geometry, ranks)
        self.implementation = implementation  # validated by the property setter
        factory = {"device": device, "dtype": dtype}
        out_rank, in_rank, spatial_rank = ranks
        self.core = nn.Parameter(torch.empty(out_rank, in_rank, spatial_rank, **factory))
        self.out_factor = nn.Parameter(torch.empty(out_channels, out_rank, **factory))
        self.in_factor = nn.Parameter(torch.empty(in_channels, in_rank, **factory))
        self.spatial_factor = nn.Parameter(
            torch.empty(self.geometry.spatial_size, spatial_rank, **factory)
        )
        if bias:
            self.bias = nn.Parameter(torch.empty(out_channels, **factory))
        else:
            self.register_parameter("bias", None)
        self.reconstruction_error: float | None = None
        # This layer's own `auto` choices by call signature (autotune.choose_implementation).
        self._auto_choices: dict[autotune.CallSignature, str] = {}
        # Without autograd (evaluation, inference) each path's weights are built once and kept
        # until a parameter changes: see _prepared.
        self._prepared_cache: dict[str, Prepared] = {}
        self._prepared_key: tuple = ()
        self.reset_parameters()

    # nn.Conv2d-compatible attributes, so code that inspects convs keeps working.
    @property
    def in_channels(self) -> int:
        return self.geometry.in_channels

    @property
    def out_channels(self) -> int:
        return self.geometry.out_channels

    @property
    def kernel_size(self) -> tuple[int, int]:
        return self.geometry.kernel_size

    @property
    def stride(self) -> tuple[int, int]:
        return self.geometry.stride

    @property
    def padding(self) -> tuple[int, int] | str:
        return self.geometry.padding

    @property
    def dilation(self) -> tuple[int, int]:
        return self.geometry.dilation

    @property
    def groups(self) -> int:
        return 1

    @property
    def ranks(self) -> TuckerRanks:
        return TuckerRanks(*self.core.shape)

    @property
    def implementation(self) -> str:
        return self._implementation

    @implementation.setter
    def implementation(self, value: str) -> None:
        if value not in (*IMPLEMENTATIONS, "auto"):
            raise ValueError(
                f"implementation must be one of {(*IMPLEMENTATIONS, 'auto')}, got {value!r}"
            )
        self._implementation = value

    def reset_parameters(self) -> None:
        """Fresh initialisation whose reconstructed kernel has nn.Conv2d's default spread
        (docs/design.md, "Initialisation").

        nn.Conv2d draws W ~ U(-b, b), b = 1/sqrt(fan_in), so std(W) = 1/sqrt(3 fan_in). With
        orthonormal factor columns and an i.i.d. core of std s, the mean variance of the entries
        of W is s^2 (N'/N)(C'/C)(D'/D) (each factor's squared Frobenius norm is its rank), so
        s = std(W) * sqrt(N C D / (N' C' D')) matches the dense layer on average.
        """
        fan_in = self.in_channels * self.geometry.spatial_size
        dense_std = 1.0 / math.sqrt(3.0 * fan_in)
        n, c, d = self.geometry.tensor_shape
        rn, rc, rd = self.ranks
        with torch.no_grad():
            for factor in (self.out_factor, self.in_factor, self.spatial_factor):
                nn.init.orthogonal_(factor)
            self.core.normal_(0.0, dense_std * math.sqrt((n * c * d) / (rn * rc * rd)))
            if self.bias is not None:
                bound = 1.0 / math.sqrt(fan_in)
                self.bias.uniform_(-bound, bound)
        self.reconstruction_error = None

    @property
    def factors(self) -> TuckerFactors:
        return TuckerFactors(self.core, self.out_factor, self.in_factor, self.spatial_factor)

    def reconstruct(self) -> Tensor:
        """The full N x C x kh x kw kernel."""
        return reconstruct_kernel(self.factors, self.kernel_size)

    def _parameters_key(self) -> tuple:
        """Changes whenever a parameter does: an in-place update (optimiser step, copy_,
        load_state_dict) bumps its version counter, a new tensor or a move (.to) its storage."""
        return tuple(
            (p._version, p.data_ptr(), p.device, p.dtype) for p in self.parameters(recurse=False)
        )

    def _prepared(self, name: str) -> Prepared:
        """Path `name`'s weights (rebuilt or folded kernel, ...), built once per parameter
        state. Only used without autograd: a kept tensor would cut the graph to the factors."""
        key = self._parameters_key()
        if key != self._prepared_key:
            self._prepared_cache.clear()
            self._prepared_key = key
        prepared = self._prepared_cache.get(name)
        if prepared is None:
            prepared = PATHS[name].prepare(self.factors, self.geometry)
            self._prepared_cache[name] = prepared
        return prepared

    def forward(self, x: Tensor) -> Tensor:
        factors = self.factors
        implementation = self._implementation
        # No cache under torch.compile (it traces the rebuild into the graph itself).
        cached = not torch.is_grad_enabled() and not torch.compiler.is_compiling()
        if implementation == "auto":
            implementation = autotune.choose_implementation(
                self.geometry, x, factors, self.bias, self._auto_choices,
                prepared=self._prepared if cached else None,
            )  # fmt: skip
        path = PATHS[implementation]
        if cached:
            prepared = self._prepared(implementation)
            return path.run(x, prepared, factors, self.bias, self.geometry)
        return path.forward(x, factors, self.bias, self.geometry)

    # ---- costs -------------------------------------------------------------------------------

    def param_count(self) -> int:
        return tucker_param_count(self.geometry, self.ranks, bias=self.bias is not None)

    def dense_param_count(self) -> int:
        return dense_param_count(self.geometry, bias=self.bias is not None)

    def flops(self, input_hw: tuple[int, int], implementation: str | None = None) -> int:
        """Multiply-adds per image: of one path, or (None) of the cheaper non-materialising
        path, the figure used for compression."""
        if implementation is None:
            return tucker_flops(self.geometry, self.ranks, input_hw)
        return path_flops(self.geometry, self.ranks, input_hw, implementation)

    def dense_flops(self, input_hw: tuple[int, int]) -> int:
        return dense_flops(self.geometry, input_hw)

    # ---- conversion --------------------------------------------------------------------------

    @classmethod
    def from_conv(
        cls,
        conv: nn.Conv2d,
        ranks: RankSpec,
        init: str = "hooi",
        implementation: str = "auto",
    ) -> TuckerConv2d:
        """A TuckerConv2d with the conv's geometry and bias.

        `ranks`: a triple, a ratio or "full" (see ranks_from_spec). `init="hooi"` takes the
        factors from HOOI of the conv's trained kernel (`reconstruction_error` is then the
        relative error ||W - W_hat|| / ||W||); `init="random"` initialises freshly (for
        training from scratch at the same geometry).
        """
        if init not in INIT_METHODS:
            raise ValueError(f"init must be one of {INIT_METHODS}, got {init!r}")
        if not isinstance(conv, nn.Conv2d):
            raise TypeError(f"from_conv expects an nn.Conv2d, got {type(conv).__name__}")
        geometry = ConvGeometry.of(
            conv.in_channels,
            conv.out_channels,
            conv.kernel_size,
            conv.stride,
            conv.padding,
            conv.dilation,
        )
        triple = ranks_from_spec(geometry, ranks)
        layer = cls(
            conv.in_channels,
            conv.out_channels,
            conv.kernel_size,
            triple,
            stride=conv.stride,
            padding=conv.padding,
            dilation=conv.dilation,
            groups=conv.groups,
            bias=conv.bias is not None,
            padding_mode=conv.padding_mode,
            implementation=implementation,
            device=conv.weight.device,
            dtype=conv.weight.dtype,
        )
        if init == "hooi":
            found = hooi(conv.weight, triple)
            with torch.no_grad():
                for parameter, value in zip(layer.factors, found.factors, strict=True):
                    parameter.copy_(value)
                if conv.bias is not None:
                    layer.bias.copy_(conv.bias)
            layer.reconstruction_error = found.relative_error
        return layer

    def to_conv(self) -> nn.Conv2d:
        """An nn.Conv2d holding the reconstructed kernel (for export or inspection)."""
        conv = nn.Conv2d(
            self.in_channels,
            self.out_channels,
            self.kernel_size,
            stride=self.stride,
            padding=self.padding,
            dilation=self.dilation,
            bias=self.bias is not None,
            device=self.core.device,
            dtype=self.core.dtype,
        )
        with torch.no_grad():
            conv.weight.copy_(self.reconstruct())
            if self.bias is not None:
                conv.bias.copy_(self.bias)
        return conv

    def extra_repr(self) -> str:
        kh, kw = self.kernel_size
        text = (
            f"{self.in_channels}, {self.out_channels}, kernel_size=({kh}, {kw}), "
            f"ranks={tuple(self.ranks)}, stride={self.stride}"
        )
        if self.padding not in ((0, 0), "valid"):
            text += f", padding={self.padding}"
        if self.dilation != (1, 1):
            text += f", dilation={self.dilation}"
        if self.bias is None:
            text += ", bias=False"
        return text + f", implementation={self.implementation!r}"
