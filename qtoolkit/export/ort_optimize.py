"""What ONNX Runtime's CPU optimizer makes of a model: which GEMMs run in INT8, which in float.

ORT rewrites `DQ -> MatMul` groups into integer kernels (`MatMulIntegerToFloat`,
`QLinearMatMul`, `QLinearConv`, ...) while it loads a session; the optimized graph it can save
(`SessionOptions.optimized_model_filepath`) shows what actually ran.
"""

from __future__ import annotations

import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

__all__ = ["FLOAT_GEMM_OPS", "INT8_GEMM_OPS", "GemmCensus", "ort_gemm_census"]

FLOAT_GEMM_OPS = frozenset(
    {"MatMul", "Gemm", "FusedMatMul", "FusedGemm", "Conv", "FusedConv", "NchwcConv", "Attention"}
)
INT8_GEMM_OPS = frozenset(
    {
        "MatMulIntegerToFloat",
        "QLinearMatMul",
        "DynamicQuantizeMatMul",
        "MatMulInteger",
        "QGemm",
        "QLinearConv",
        "ConvInteger",
        "QAttention",
        "MatMulNBits",
    }
)


@dataclass
class GemmCensus:
    float_gemms: int
    int8_gemms: int
    op_counts: dict[str, int]

    def float_by_op(self) -> dict[str, int]:
        return {k: v for k, v in self.op_counts.items() if k in FLOAT_GEMM_OPS}

    def int8_by_op(self) -> dict[str, int]:
        return {k: v for k, v in self.op_counts.items() if k in INT8_GEMM_OPS}

    @property
    def quantize_nodes(self) -> int:
        """QuantizeLinear / DynamicQuantizeLinear nodes: activation quantizations per run."""
        return self.op_counts.get("QuantizeLinear", 0) + self.op_counts.get(
            "DynamicQuantizeLinear", 0
        )

    def summary(self) -> str:
        """One line: what ran in INT8 and in float, and how many quantizations are left."""

        def ops(counts: dict[str, int]) -> str:
            return ", ".join(f"{n} {k}" for k, n in sorted(counts.items())) or "none"

        return (
            f"after ONNX Runtime's CPU optimizer: INT8 GEMMs {ops(self.int8_by_op())}; float "
            f"GEMMs {ops(self.float_by_op())}; {self.quantize_nodes} QuantizeLinear"
        )


def ort_gemm_census(path: str | Path, threads: int | None = None) -> GemmCensus:
    """Load `path` in a CPU session and count float vs INT8 GEMM-like nodes ORT kept."""
    import onnx

    from qtoolkit.export.validate import ort_session

    with tempfile.TemporaryDirectory(prefix="qtool-ort-") as tmp:
        optimized = Path(tmp) / "optimized.onnx"
        ort_session(path, threads=threads, optimized_path=optimized)
        graph = onnx.load(str(optimized), load_external_data=False).graph
        counts = dict(Counter(n.op_type for n in graph.node))
    return GemmCensus(
        float_gemms=sum(v for k, v in counts.items() if k in FLOAT_GEMM_OPS),
        int8_gemms=sum(v for k, v in counts.items() if k in INT8_GEMM_OPS),
        op_counts=counts,
    )
