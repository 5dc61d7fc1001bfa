"""Normalise an exported ONNX graph before onnx2torch converts it.

Exporters (weaver-core's, ``torch.onnx.export`` with the TorchScript tracer) write patterns
that ONNX Runtime runs but onnx2torch refuses; :func:`normalise_for_torch` rewrites them
into equivalent forms on a copy of the graph (the graph ONNX Runtime runs is never changed):

- ``Constant`` nodes, and ``Identity`` nodes of an initializer (the tracer's way of sharing
  a weight), become initializers (onnx2torch reads ``Clip`` bounds, ``Conv`` biases,
  ``Reshape`` shapes and the like only from initializers);
- empty trailing optional inputs (``Clip(x, min, '')``) are dropped;
- ``If(Gather(Shape(x), k) == 1)`` with ``then = Squeeze(x, k)`` and ``else = Identity(x)``
  (what ``tensor.squeeze(k)`` traces to) becomes ``Squeeze(x, k)``: torch's squeeze of an
  axis whose size is not 1 leaves the tensor unchanged, which is the ``else`` branch.

Examples
--------
>>> import onnx
>>> from onnx import TensorProto, helper
>>> c = helper.make_node("Constant", [], ["lo"], value=helper.make_tensor("v", 1, [], [0.5]))
>>> clip = helper.make_node("Clip", ["x", "lo", ""], ["y"])
>>> g = helper.make_graph([c, clip], "g",
...     [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N"])],
...     [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N"])])
>>> out, notes = normalise_for_torch(helper.make_model(g))
>>> [n.op_type for n in out.graph.node], list(out.graph.node[0].input)
(['Clip'], ['x', 'lo'])
>>> notes
['1 Constant / Identity node(s) made initializers', '1 empty optional input(s) dropped']
"""

from __future__ import annotations

from typing import Any

import numpy as np


def _constant_value(node: Any) -> np.ndarray | None:
    """The value of a ``Constant`` node as a numpy array (None for sparse / string values)."""
    from onnx import numpy_helper

    for a in node.attribute:
        if a.name == "value":
            return np.asarray(numpy_helper.to_array(a.t))
        if a.name == "value_float":
            return np.asarray(a.f, dtype=np.float32)
        if a.name == "value_floats":
            return np.asarray(list(a.floats), dtype=np.float32)
        if a.name == "value_int":
            return np.asarray(a.i, dtype=np.int64)
        if a.name == "value_ints":
            return np.asarray(list(a.ints), dtype=np.int64)
    return None


def _fold_constants(graph: Any) -> int:
    from onnx import numpy_helper

    keep, n = [], 0
    values = {i.name: i for i in graph.initializer}
    for node in graph.node:
        value = None
        if node.op_type == "Constant" and not node.domain:
            value = _constant_value(node)
        elif node.op_type == "Identity" and not node.domain and node.input[0] in values:
            value = numpy_helper.to_array(values[node.input[0]])
        if value is None or node.output[0] in values:
            keep.append(node)
            continue
        init = numpy_helper.from_array(value, name=node.output[0])
        graph.initializer.append(init)
        values[node.output[0]] = init
        n += 1
    del graph.node[:]
    graph.node.extend(keep)
    return n


def _drop_empty_inputs(graph: Any) -> int:
    n = 0
    for node in graph.node:
        names = list(node.input)
        while names and names[-1] == "":
            names.pop()
            n += 1
        if len(names) != len(node.input):
            del node.input[:]
            node.input.extend(names)
    return n


def _squeeze_of_if(node: Any, producers: dict[str, Any], inits: dict[str, np.ndarray]
                   ) -> tuple[Any, tuple[str, int]] | None:
    """The ``Squeeze`` node replacing a traced ``squeeze(k)`` ``If``, or None."""
    from onnx import helper

    branches = {a.name: a.g for a in node.attribute if a.name in ("then_branch", "else_branch")}
    if len(branches) != 2 or len(node.output) != 1:
        return None
    then, other = branches["then_branch"], branches["else_branch"]
    ops_then = [n for n in then.node if n.op_type != "Constant"]
    if (len(ops_then) != 1 or ops_then[0].op_type != "Squeeze" or len(other.node) != 1
            or other.node[0].op_type != "Identity"):
        return None
    squeeze, ident = ops_then[0], other.node[0]
    x = squeeze.input[0]
    if ident.input[0] != x:
        return None
    axes = None
    if len(squeeze.input) > 1:
        consts = {n.output[0]: _constant_value(n) for n in then.node if n.op_type == "Constant"}
        axes = consts.get(squeeze.input[1], inits.get(squeeze.input[1]))
    else:
        for a in squeeze.attribute:
            if a.name == "axes":
                axes = np.asarray(list(a.ints))
    if axes is None or np.size(axes) != 1:
        return None
    axis = int(np.ravel(axes)[0])
    # the condition: Equal(Gather(Shape(x), axis), 1)
    eq = producers.get(node.input[0])
    if eq is None or eq.op_type != "Equal":
        return None
    gather = producers.get(eq.input[0])
    one = inits.get(eq.input[1])
    shape = producers.get(gather.input[0]) if gather is not None else None
    index = inits.get(gather.input[1]) if gather is not None else None
    if (shape is None or shape.op_type != "Shape" or shape.input[0] != x or index is None
            or one is None or int(np.ravel(one)[0]) != 1 or int(np.ravel(index)[0]) != axis):
        return None
    name = f"{node.name or node.output[0]}/axes"
    return helper.make_node("Squeeze", [x, name], [node.output[0]], name=node.name), (name, axis)


def _replace_squeeze_ifs(graph: Any) -> int:
    from onnx import numpy_helper

    inits = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    producers = {o: n for n in graph.node for o in n.output}
    out, n = [], 0
    for node in graph.node:
        found = _squeeze_of_if(node, producers, inits) if node.op_type == "If" else None
        if found is None:
            out.append(node)
            continue
        new, (axes_name, axis) = found
        graph.initializer.append(numpy_helper.from_array(np.asarray([axis], dtype=np.int64),
                                                         name=axes_name))
        out.append(new)
        n += 1
    del graph.node[:]
    graph.node.extend(out)
    return n


def normalise_for_torch(model: Any) -> tuple[Any, list[str]]:
    """A copy of ``model`` (``onnx.ModelProto``) rewritten for onnx2torch, and notes.

    The rewrites (module docstring) keep the graph's function; the notes say what was
    rewritten (empty when nothing was).
    """
    import onnx

    out = onnx.ModelProto()
    out.CopyFrom(model)
    g = out.graph
    notes = []
    n = _fold_constants(g)
    if n:
        notes.append(f"{n} Constant / Identity node(s) made initializers")
    n = _drop_empty_inputs(g)
    if n:
        notes.append(f"{n} empty optional input(s) dropped")
    n = _replace_squeeze_ifs(g)
    if n:
        notes.append(f"{n} traced squeeze If node(s) made Squeeze")
    return out, notes
