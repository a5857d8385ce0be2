"""The policy's encoder graph on an edge list instead of the dense adjacency.

The exported encoder (:func:`xapp_composer.export.export_onnx`) multiplies the dense
D^-1/2 (A + I) D^-1/2 of eq. 36 into the node states: (N, N) floats, 40 GB at 100,000
agents. :func:`sparse_encoder` rewrites that graph, node for node, so that every
``MatMul(adj, h)`` becomes the same sum over the edge list
(:class:`~xapp_composer.features.GcnEdges`): gather ``h`` at the edges' sources, scale
by the edge weights, scatter-add at their destinations (ONNX ``ScatterND`` with
``reduction="add"``). Everything else (weights, biases, activations, the mean pooling of
eq. 37) is the signed encoder's own, so the two graphs compute the same embeddings up to
float32 summation order (``tests/xapp_composer/test_large_state.py``). One state at a
time (B = 1), as the xApp prepares them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

ADJ_INPUT = "adj"
EDGE_INPUTS = ("edge_src", "edge_dst", "edge_w")
"""Inputs replacing ``adj``: sources (E,) int64, destinations (E, 1) int64, weights
(E, 1) float32."""


def sparse_encoder(path: Path) -> bytes:
    """The encoder at ``path`` with every ``MatMul(adj, h)`` on an edge list, serialised.

    Raises:
        ValueError: the graph does not use ``adj`` only as the left operand of MatMuls.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    model = onnx.load(str(path))
    graph = model.graph
    axes = numpy_helper.from_array(np.array([0], dtype=np.int64), "sparse_gcn_axis0")
    graph.initializer.append(axes)
    nodes = []
    rewritten = 0
    for node in graph.node:
        if ADJ_INPUT not in node.input:
            nodes.append(node)
            continue
        if node.op_type != "MatMul" or list(node.input).index(ADJ_INPUT) != 0:
            raise ValueError(f"{path.name}: adj feeds a {node.op_type}, not MatMul(adj, h)")
        h, out = node.input[1], node.output[0]
        t = f"sparse_gcn_{rewritten}"
        nodes += [
            helper.make_node("Squeeze", [h, axes.name], [f"{t}_h"]),
            helper.make_node("Gather", [f"{t}_h", "edge_src"], [f"{t}_g"], axis=0),
            helper.make_node("Mul", [f"{t}_g", "edge_w"], [f"{t}_m"]),
            helper.make_node("Shape", [f"{t}_h"], [f"{t}_shape"]),
            helper.make_node(
                "ConstantOfShape",
                [f"{t}_shape"],
                [f"{t}_zero"],
                value=helper.make_tensor("zero", TensorProto.FLOAT, [1], [0.0]),
            ),
            helper.make_node(
                "ScatterND", [f"{t}_zero", "edge_dst", f"{t}_m"], [f"{t}_s"], reduction="add"
            ),
            helper.make_node("Unsqueeze", [f"{t}_s", axes.name], [out]),
        ]
        rewritten += 1
    if not rewritten:
        raise ValueError(f"{path.name}: no MatMul(adj, h) to rewrite")
    del graph.node[:]
    graph.node.extend(nodes)
    inputs = [i for i in graph.input if i.name != ADJ_INPUT]
    del graph.input[:]
    graph.input.extend(inputs)
    graph.input.extend(
        [
            helper.make_tensor_value_info("edge_src", TensorProto.INT64, ["E"]),
            helper.make_tensor_value_info("edge_dst", TensorProto.INT64, ["E", 1]),
            helper.make_tensor_value_info("edge_w", TensorProto.FLOAT, ["E", 1]),
        ]
    )
    onnx.checker.check_model(model)
    return model.SerializeToString()


def head_on_rows(path: Path) -> bytes:
    """The step graph at ``path`` taking the rows it reads instead of every node's, and
    h_graph as an input, serialised.

    The exported step graph reads ``node_h`` (B, N, H) twice: a ReduceMean for h_graph
    (eq. 37), which the encoder already computed, and a gather at the step's candidates.
    At 100,000 agents each call then scans 25 MB for a few hundred rows. In the rewritten
    graph the ReduceMean's output is the new input ``h_graph`` (B, H), and ``node_h`` holds
    only the candidates' rows: the caller feeds ``node_h[:, cand_idx]`` and
    ``cand_idx = arange(M)``. Same outputs up to float32 summation order.

    Raises:
        ValueError: ``node_h`` feeds anything but one ReduceMean and one gather.
    """
    import onnx
    from onnx import TensorProto, helper

    model = onnx.load(str(path))
    graph = model.graph
    users = [n for n in graph.node if "node_h" in n.input]
    kinds = sorted(n.op_type for n in users)
    if kinds != ["GatherElements", "ReduceMean"]:
        raise ValueError(f"{path.name}: node_h feeds {kinds}, not one ReduceMean and one gather")
    (mean,) = [n for n in users if n.op_type == "ReduceMean"]
    nodes = []
    for node in graph.node:
        if node is mean:
            nodes.append(helper.make_node("Identity", ["h_graph"], [mean.output[0]]))
        else:
            nodes.append(node)
    del graph.node[:]
    graph.node.extend(nodes)
    graph.input.append(helper.make_tensor_value_info("h_graph", TensorProto.FLOAT, ["B", "H"]))
    onnx.checker.check_model(model)
    return model.SerializeToString()
