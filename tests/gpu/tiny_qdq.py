"""A tiny QDQ ONNX model with a BERT-like input path, and what it computes in numpy.

input_ids [batch, seq] -> Gather(embeddings) -> Q/DQ -> MatMul(DQ(int8 weight)) -> * mask -> logits
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

VOCAB, HIDDEN, OUT = 32, 16, 8
X_SCALE, W_SCALE = 4.0 / 127.0, 0.01


def tiny_qdq_weights(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "embeddings": rng.standard_normal((VOCAB, HIDDEN)).astype(np.float32),
        "weight_int8": rng.integers(-127, 128, size=(HIDDEN, OUT)).astype(np.int8),
    }


def tiny_qdq_reference(weights: dict[str, np.ndarray], input_ids, attention_mask) -> np.ndarray:
    """What the tiny model computes, in numpy: Q/DQ the embeddings, GEMM, mask."""
    x = weights["embeddings"][input_ids]
    xq = np.clip(np.rint(x / X_SCALE), -128, 127) * X_SCALE
    w = weights["weight_int8"].astype(np.float32) * W_SCALE
    return (xq @ w * attention_mask[..., None].astype(np.float32)).astype(np.float32)


def write_tiny_qdq_onnx(path: Path, seed: int = 0) -> Path:
    """input_ids -> Gather -> Q/DQ -> MatMul(DQ(int8 weight)) -> * attention_mask -> logits."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    weights = tiny_qdq_weights(seed)
    dyn = ["batch", "seq"]
    inits = [
        numpy_helper.from_array(weights["embeddings"], "embeddings"),
        numpy_helper.from_array(weights["weight_int8"], "weight_int8"),
        numpy_helper.from_array(np.array(X_SCALE, np.float32), "x_scale"),
        numpy_helper.from_array(np.array(0, np.int8), "x_zero"),
        numpy_helper.from_array(np.array(W_SCALE, np.float32), "w_scale"),
        numpy_helper.from_array(np.array(0, np.int8), "w_zero"),
        numpy_helper.from_array(np.array([-1], np.int64), "last_axis"),
    ]
    nodes = [
        helper.make_node("Gather", ["embeddings", "input_ids"], ["x"], axis=0),
        helper.make_node("QuantizeLinear", ["x", "x_scale", "x_zero"], ["x_q"]),
        helper.make_node("DequantizeLinear", ["x_q", "x_scale", "x_zero"], ["x_dq"]),
        helper.make_node("DequantizeLinear", ["weight_int8", "w_scale", "w_zero"], ["w_dq"]),
        helper.make_node("MatMul", ["x_dq", "w_dq"], ["y"]),
        helper.make_node("Cast", ["attention_mask"], ["mask_f"], to=TensorProto.FLOAT),
        helper.make_node("Unsqueeze", ["mask_f", "last_axis"], ["mask_3d"]),
        helper.make_node("Mul", ["y", "mask_3d"], ["logits"]),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny_qdq",
        [
            helper.make_tensor_value_info("input_ids", TensorProto.INT64, dyn),
            helper.make_tensor_value_info("attention_mask", TensorProto.INT64, dyn),
        ],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [*dyn, OUT])],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8  # readable by every onnxruntime and TensorRT parser in use
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, str(path))
    return path
