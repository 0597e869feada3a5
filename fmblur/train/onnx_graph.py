"""Editing a pretrained ONNX detector graph for fine-tuning: its output activation off for training, and the
trained numbers written back into the same graph for export (same operators, names and speed; only the numbers
change, which a re-export from PyTorch would not guarantee)."""

from __future__ import annotations

import torch

# Which ONNX inputs of a node hold which of the converted module's tensors.
NODE_TENSORS = {
    "Conv": ("weight", "bias"),
    "ConvTranspose": ("weight", "bias"),
    "BatchNormalization": ("weight", "bias", "running_mean", "running_var"),
}


def module_name(node_name: str) -> str:
    """onnx2torch names a node's module after the node, with '.' as '/' (module paths use '.')."""
    return node_name.lstrip("/").replace(".", "/")


def without_activation(model, op_type: str, output: str) -> bytes:
    """`model` (an onnx ModelProto, changed in place) without the `op_type` node that produces `output`: the
    node before it now produces `output`, so the network outputs logits (for a stable loss)."""
    graph = model.graph
    activation = next(node for node in graph.node if node.op_type == op_type and node.output[0] == output)
    graph.node.remove(activation)
    for node in graph.node:
        for position, name in enumerate(node.output):
            if name == activation.input[0]:
                node.output[position] = output
    return model.SerializeToString()


def with_trained_tensors(model, state: dict[str, torch.Tensor]) -> bytes:
    """`model` (changed in place) with every initializer that a converted module trained replaced by the
    module's tensor from `state`; a trained tensor without a place in the graph is an error."""
    from onnx import numpy_helper

    initializers = {tensor.name: tensor for tensor in model.graph.initializer}
    written = set()
    for node in model.graph.node:
        for input_name, suffix in zip(node.input[1:], NODE_TENSORS.get(node.op_type, ()), strict=False):
            key = f"{module_name(node.name)}.{suffix}"
            initializers[input_name].CopyFrom(
                numpy_helper.from_array(state[key].detach().float().cpu().numpy(), input_name)
            )
            written.add(key)
    # Constants onnx2torch keeps as buffers are not trained; every weight, bias and running statistic is.
    trained = {key for key in state if key.endswith((".weight", ".bias", ".running_mean", ".running_var"))}
    left = trained - written
    if left:
        raise ValueError(f"{len(left)} trained tensors have no place in the ONNX graph, e.g. {sorted(left)[0]}")
    return model.SerializeToString()
