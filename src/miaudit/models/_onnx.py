"""ONNX models, read as data and run by onnxruntime on the CPU (docs/security.md, "ONNX files").

An ONNX file is a protobuf ``ModelProto``. Before onnxruntime sees the bytes, :func:`check_onnx_bytes`
walks every graph in them (the main graph, subgraphs of control-flow nodes, model-local functions,
training graphs) and refuses a file that

- uses an operator outside the standard domains (``""``/``ai.onnx`` and ``ai.onnx.ml``): other
  domains need a registered custom-op library (native code) or are onnxruntime's contrib ops, one
  of which (``EPContext``) reads a file named inside the model;
- keeps any tensor's data outside the file (``data_location = EXTERNAL`` or ``external_data``):
  onnxruntime would open the path the file names;
- is larger than :data:`MAX_ONNX_BYTES`, is not well-formed protobuf, or nests graphs deeper than
  :data:`MAX_GRAPH_DEPTH`.

The same bytes then go to onnxruntime (no second read of the file), with no custom-op library
registered, the ONNX format forced (not onnxruntime's own), the CPU provider only, no profiling
or optimised-model file written and one thread by default. The session's input must be one float
tensor of shape (batch, features) and its output the class probabilities or logits (rank 2).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import numpy as np

from miaudit.errors import InputError

#: Largest ONNX file read (bytes). protobuf caps a single message at 2 GiB; the tabular and
#: image classifiers miaudit audits are far smaller, and the file is held in memory twice.
MAX_ONNX_BYTES = 512 * 1024**2
#: Deepest nesting of subgraphs (If/Loop/Scan bodies) walked before the file is refused.
MAX_GRAPH_DEPTH = 32
#: Operator domains that need no library: the ONNX standard and its classical-ML operators.
STANDARD_DOMAINS = frozenset({"", "ai.onnx", "ai.onnx.ml"})
#: Rows per onnxruntime call (bounds the memory of one call on a large dataset).
BATCH_ROWS = 4096

OutputKind = Literal["logits", "probs"]


class _Refused(Exception):
    """The file breaks the policy; the message says how (one line)."""


# --- the protobuf walk -----------------------------------------------------------------------


def _varint(buf: memoryview, pos: int) -> tuple[int, int]:
    value = shift = 0
    for _ in range(10):
        if pos >= len(buf):
            raise _Refused("is truncated or not an ONNX file")
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7
    raise _Refused("is not an ONNX file (malformed protobuf)")


def _fields(buf: memoryview) -> Iterator[tuple[int, int, int | memoryview]]:
    """(field number, wire type, value) of a message's fields; a length-delimited value is the
    slice of its bytes (sub-messages are parsed only where the walk descends)."""
    pos = 0
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        value: int | memoryview = 0
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire == 2:
            size, pos = _varint(buf, pos)
            value = buf[pos : pos + size]
            pos += size
        elif wire in (1, 5):
            pos += 8 if wire == 1 else 4
        else:  # groups (3, 4) are not in ONNX's schema; 6, 7 do not exist
            raise _Refused("is not an ONNX file (malformed protobuf)")
        if number == 0 or pos > len(buf):
            raise _Refused("is truncated or not an ONNX file")
        yield number, wire, value


def _message(wire: int, value: int | memoryview) -> memoryview:
    """A sub-message or string field; any other encoding of a field the walk reads is refused
    (protobuf would keep it as an unknown field, but the walk must not guess)."""
    if wire != 2 or not isinstance(value, memoryview):
        raise _Refused("is not an ONNX file (a field has the wrong encoding)")
    return value


def _text(wire: int, value: int | memoryview) -> str:
    try:
        return bytes(_message(wire, value)).decode("utf-8")
    except UnicodeDecodeError:
        raise _Refused("is not an ONNX file (a name is not UTF-8)") from None


# Field numbers from onnx.proto (ONNX IR version 10), for the messages the walk descends into.
_MODEL_GRAPH, _MODEL_TRAINING, _MODEL_FUNCTIONS = 7, 20, 25
_GRAPH_NODE, _GRAPH_INITIALIZER, _GRAPH_SPARSE = 1, 5, 15
_NODE_OP, _NODE_ATTRIBUTE, _NODE_DOMAIN = 4, 5, 7
_ATTR_TENSORS = (5, 10)  # t, tensors
_ATTR_GRAPHS = (6, 11)  # g, graphs
_ATTR_SPARSE = (22, 23)  # sparse_tensor, sparse_tensors
_TENSOR_NAME, _TENSOR_EXTERNAL, _TENSOR_LOCATION = 8, 13, 14
_SPARSE_TENSORS = (1, 2)  # values, indices
_TRAINING_GRAPHS = (1, 2)  # initialization, algorithm
_FUNCTION_NODE, _FUNCTION_ATTRIBUTE = 7, 11


def _check_tensor(buf: memoryview) -> None:
    name = ""
    external = False
    for number, wire, value in _fields(buf):
        if number == _TENSOR_NAME:
            name = _text(wire, value)
        elif number == _TENSOR_EXTERNAL:
            _message(wire, value)
            external = True
        elif number == _TENSOR_LOCATION:
            if wire != 0:
                raise _Refused("is not an ONNX file (a field has the wrong encoding)")
            external = external or value != 0
    if external:
        raise _Refused(
            f"keeps tensor {name[:60]!r} in an external data file; miaudit reads only self-contained "
            "models (save with onnx.save_model(model, path, save_as_external_data=False))"
        )


def _check_sparse(buf: memoryview) -> None:
    for number, wire, value in _fields(buf):
        if number in _SPARSE_TENSORS:
            _check_tensor(_message(wire, value))


def _check_attribute(buf: memoryview, depth: int) -> None:
    for number, wire, value in _fields(buf):
        if number in _ATTR_TENSORS:
            _check_tensor(_message(wire, value))
        elif number in _ATTR_SPARSE:
            _check_sparse(_message(wire, value))
        elif number in _ATTR_GRAPHS:
            _check_graph(_message(wire, value), depth + 1)


def _check_node(buf: memoryview, depth: int) -> None:
    op, attributes = "?", []
    for number, wire, value in _fields(buf):
        if number == _NODE_OP:
            op = _text(wire, value)
        elif number == _NODE_DOMAIN:
            domain = _text(wire, value)
            if domain not in STANDARD_DOMAINS:
                raise _Refused(
                    f"uses operator domain {domain[:60]!r} (op {op[:40]!r}); miaudit runs only the "
                    "standard ONNX operators (domains '' and 'ai.onnx.ml'): custom operators need "
                    "native libraries"
                )
        elif number == _NODE_ATTRIBUTE:
            attributes.append(_message(wire, value))
    for attribute in attributes:
        _check_attribute(attribute, depth)


def _check_graph(buf: memoryview, depth: int) -> None:
    if depth > MAX_GRAPH_DEPTH:
        raise _Refused(f"nests subgraphs more than {MAX_GRAPH_DEPTH} deep")
    for number, wire, value in _fields(buf):
        if number == _GRAPH_NODE:
            _check_node(_message(wire, value), depth)
        elif number == _GRAPH_INITIALIZER:
            _check_tensor(_message(wire, value))
        elif number == _GRAPH_SPARSE:
            _check_sparse(_message(wire, value))


def _check_function(buf: memoryview) -> None:
    for number, wire, value in _fields(buf):
        if number == _FUNCTION_NODE:
            _check_node(_message(wire, value), 1)
        elif number == _FUNCTION_ATTRIBUTE:
            _check_attribute(_message(wire, value), 1)


def check_onnx_bytes(data: bytes) -> None:
    """Refuse ``data`` unless it is a self-contained ONNX model of standard operators.

    Raises ``ValueError`` with a one-line reason (callers add the input's name).

    >>> check_onnx_bytes(b"\\x08\\x07")  # an ir_version and no graph
    Traceback (most recent call last):
    ValueError: holds no graph (not an ONNX model)
    """
    try:
        graphs = 0
        for number, wire, value in _fields(memoryview(data)):
            if number == _MODEL_GRAPH:
                _check_graph(_message(wire, value), 0)
                graphs += 1
            elif number == _MODEL_FUNCTIONS:
                _check_function(_message(wire, value))
            elif number == _MODEL_TRAINING:
                for sub, sub_wire, sub_value in _fields(_message(wire, value)):
                    if sub in _TRAINING_GRAPHS:
                        _check_graph(_message(sub_wire, sub_value), 0)
        if graphs == 0:
            raise _Refused("holds no graph (not an ONNX model)")
    except _Refused as exc:
        raise ValueError(str(exc)) from None
    except RecursionError:
        raise ValueError("nests messages too deeply") from None


# --- the session -----------------------------------------------------------------------------


def _read_capped(path: Path, field: str, max_bytes: int) -> bytes:
    try:
        size = path.stat().st_size
        if size > max_bytes:
            raise InputError(
                field,
                f"{path.name} is {size / 2**20:.0f} MiB; the limit is {max_bytes / 2**20:.0f} MiB",
            )
        with path.open("rb") as fh:
            data = fh.read(max_bytes + 1)
    except OSError as exc:
        raise InputError(field, f"cannot read {str(path)!r} ({exc.strerror})") from None
    if len(data) > max_bytes:  # grew since stat
        raise InputError(field, f"{path.name} is over the {max_bytes / 2**20:.0f} MiB limit")
    return data


def _session_options(threads: int) -> Any:
    """onnxruntime's options with every feature that loads code or writes files left off."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.enable_profiling = False
    options.optimized_model_filepath = ""
    options.log_severity_level = 3  # errors only: a model's warnings are not the user's output
    options.add_session_config_entry("session.load_model_format", "ONNX")
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    # No register_custom_ops_library: operators come only from onnxruntime's own kernels.
    return options


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:160]


def _session(data: bytes, name: str, field: str, threads: int) -> Any:
    import onnxruntime as ort

    try:
        return ort.InferenceSession(
            data, sess_options=_session_options(threads), providers=["CPUExecutionProvider"]
        )
    except Exception as exc:  # noqa: BLE001 - onnxruntime's errors for a malformed graph vary
        raise InputError(
            field, f"onnxruntime cannot load {name} ({type(exc).__name__}: {_one_line(exc)})"
        ) from None


_FLOAT_TYPES = {"tensor(float)": np.float32, "tensor(double)": np.float64}


def _input_spec(
    session: Any, name: str, field: str, n_features: int | None
) -> tuple[str, Any, int]:
    """(input name, numpy dtype, features per record) of the graph's one input."""
    inputs = session.get_inputs()
    if len(inputs) != 1:
        names = ", ".join(repr(i.name) for i in inputs[:5])
        raise InputError(field, f"{name} takes {len(inputs)} inputs ({names}); miaudit feeds one")
    spec = inputs[0]
    if spec.type not in _FLOAT_TYPES:
        raise InputError(
            field,
            f"{name}'s input {spec.name!r} is {spec.type}; miaudit feeds tensor(float) (float32) records",
        )
    shape = list(spec.shape)
    if len(shape) != 2:
        raise InputError(
            field, f"{name}'s input {spec.name!r} has shape {shape}; expected (records, features)"
        )
    if isinstance(shape[0], int):  # e.g. torch.onnx.export without dynamic_axes
        raise InputError(
            field,
            f"{name}'s input {spec.name!r} takes exactly {shape[0]} records at a time; export it with a dynamic batch axis (torch.onnx.export(..., dynamic_axes={{{spec.name!r}: {{0: 'batch'}}}}))",
        )
    width = shape[1] if isinstance(shape[1], int) else None
    if width is not None and n_features is not None and width != n_features:
        raise InputError(
            field, f"{name} expects {width} features per record; the data have {n_features}"
        )
    width = width if width is not None else n_features
    if width is None or width < 1:
        raise InputError(field, f"{name}'s input {spec.name!r} has no fixed width; give n_features")
    return spec.name, _FLOAT_TYPES[spec.type], width


def _output_spec(
    session: Any, name: str, field: str, output: str | None, kind: OutputKind | None
) -> tuple[str, OutputKind]:
    """The output holding class scores: the one named ``output``; else the one float rank-2
    output whose name says probabilities (skl2onnx's ``probabilities``); else the only float
    rank-2 output, read as logits (a torch export)."""
    outputs = session.get_outputs()
    if output is not None:
        chosen = [o for o in outputs if o.name == output]
        if not chosen:
            have = ", ".join(repr(o.name) for o in outputs[:8])
            raise InputError(field, f"{name} has no output {output!r} (it has {have})")
    else:
        zipmaps = [o for o in outputs if o.type.startswith("seq(map")]
        chosen = [o for o in outputs if o.type in _FLOAT_TYPES and len(o.shape) == 2]
        probs = [o for o in chosen if "prob" in o.name.lower()]
        chosen = probs or chosen
        if not chosen and zipmaps:
            raise InputError(
                field,
                f"{name} gives its probabilities as a ZipMap ({zipmaps[0].name!r}, a list of dicts); "
                "convert it with skl2onnx options={'zipmap': False}",
            )
        if len(chosen) != 1:
            have = ", ".join(f"{o.name!r} {o.type}" for o in outputs[:8])
            raise InputError(
                field,
                f"{name} has {len(chosen)} float (records, classes) outputs ({have}); name one with output=",
            )
    spec = chosen[0]
    if spec.type not in _FLOAT_TYPES or len(spec.shape) != 2:
        raise InputError(
            field,
            f"{name}'s output {spec.name!r} is {spec.type} {spec.shape}; expected float (records, classes)",
        )
    return spec.name, kind or kind_by_name(spec.name)


def kind_by_name(output: str) -> OutputKind:
    """What an output holds by its name: probabilities when it says so (skl2onnx's
    ``probabilities``), except log-probabilities (``log_probs``), which are logits up to a
    constant per row; else logits. :func:`load_onnx` checks the guess on a trial batch.

    >>> kind_by_name("probabilities"), kind_by_name("log_probs"), kind_by_name("output")
    ('probs', 'logits', 'logits')
    """
    name = output.lower()
    return "probs" if "prob" in name and "log" not in name else "logits"


class OnnxModel:
    """A checked ONNX classifier: (n, d) records → (n, C) logits or probabilities.

    It has ``predict_proba`` (so :meth:`miaudit.audit.ExternalTarget.from_model` and the
    service accept it) and :meth:`outputs`, the model's own scores in its own ``kind``.
    Build it with :func:`load_onnx`.
    """

    def __init__(
        self,
        session: Any,
        *,
        name: str,
        input_name: str,
        dtype: Any,
        n_features: int,
        output_name: str,
        kind: OutputKind,
    ) -> None:
        self._session = session
        self.name = name
        self._input = input_name
        self._dtype = dtype
        self._n = n_features
        self.output_name = output_name
        self.kind: OutputKind = kind
        self.n_classes = 0

    @property
    def n_features(self) -> int | None:
        return self._n

    @property
    def feature_names(self) -> tuple[str, ...] | None:
        return None

    def __repr__(self) -> str:
        return (
            f"OnnxModel({self.name!r}, n_features={self._n}, n_classes={self.n_classes}, "
            f"output={self.output_name!r}, kind={self.kind!r})"
        )

    def outputs(self, records: np.ndarray) -> np.ndarray:
        """The model's scores (float64, (n, C)) on ``records`` (n, d), in :attr:`kind`."""
        x = np.asarray(records, dtype=self._dtype)
        if x.ndim != 2 or x.shape[1] != self._n:
            raise InputError(
                "features", f"has shape {x.shape}; {self.name} takes (records, {self._n})"
            )
        try:
            parts = [
                np.asarray(
                    self._session.run([self.output_name], {self._input: x[i : i + BATCH_ROWS]})[0],
                    dtype=np.float64,
                )
                for i in range(0, max(len(x), 1), BATCH_ROWS)
            ]
        except Exception as exc:  # noqa: BLE001 - onnxruntime's errors on a graph it loaded
            raise InputError(
                "model",
                f"{self.name} failed on {len(x)} records ({type(exc).__name__}: {_one_line(exc)})",
            ) from None
        out = np.concatenate(parts) if parts else np.zeros((0, self.n_classes))
        if out.ndim != 2 or out.shape[0] != len(x):
            raise InputError(
                "model", f"{self.name} answered {len(x)} records with shape {out.shape}"
            )
        return out

    def record_outputs(self, records: np.ndarray, field: str = "model") -> np.ndarray:
        """:meth:`outputs` on the audited ``records``, refused (naming ``field``) when logits
        are per-class sigmoid values (:func:`~miaudit.models.looks_like_sigmoids`). The check
        is made here, on the real records: the load's trial batch is two zero records, too few
        to tell sigmoid values from small logits."""
        from miaudit.models._output_kind import looks_like_sigmoids, sigmoid_problem

        out = self.outputs(records)
        if self.kind == "logits" and looks_like_sigmoids(out):
            raise InputError(
                field, sigmoid_problem(f"{self.name}'s output {self.output_name!r}", out)
            )
        return out

    def predict_proba(self, records: np.ndarray) -> np.ndarray:
        """Class probabilities (softmax of the logits when the model gives logits)."""
        out = self.outputs(records)
        if self.kind == "probs":
            return out
        with np.errstate(over="ignore", invalid="ignore"):
            out = out - out.max(axis=1, keepdims=True)
            e = np.exp(out)
            probs: np.ndarray = e / e.sum(axis=1, keepdims=True)
        return probs


def load_onnx(
    path: Path | str,
    *,
    n_features: int | None = None,
    n_classes: int | None = None,
    output: str | None = None,
    kind: OutputKind | None = None,
    threads: int = 1,
    field: str = "model",
    max_bytes: int = MAX_ONNX_BYTES,
) -> OnnxModel:
    """Load an ONNX classifier as data (module docstring: what is checked) and run it on the CPU.

    Parameters
    ----------
    path : path
        A self-contained ``.onnx`` file: one float input (records, features); the class scores
        as a float (records, classes) output. A scikit-learn model converted by skl2onnx with
        ``options={"zipmap": False}`` (its ``probabilities``), or a torch module exported by
        ``torch.onnx.export`` (its logits).
    n_features, n_classes : int, optional
        Checked against the graph (and a trial prediction); ``n_features`` is needed when the
        graph leaves its input's width open.
    output : str, optional
        The output to read when the graph has several float (records, classes) outputs.
    kind : "logits" or "probs", optional
        What the output holds; default: guessed from its name (:func:`kind_by_name`), and a
        guess its values contradict on a trial batch (a softmax read as logits, negative
        "probabilities") is refused: say ``kind`` then.
    threads : int
        onnxruntime's intra-op threads (1: a worker process of miaudit uses one core).
    field : str
        The input's name in errors (``--model`` on the command line).

    Raises
    ------
    InputError
        Naming ``field``, in one line, for a file that is not a checked, runnable classifier.
    """
    _check_options(kind, threads)
    p = Path(path)
    data = _read_capped(p, field, max_bytes)
    try:
        check_onnx_bytes(data)
    except ValueError as exc:
        raise InputError(field, f"{p.name} {exc}") from None
    session = _session(data, p.name, field, threads)
    input_name, dtype, width = _input_spec(session, p.name, field, n_features)
    output_name, found = _output_spec(session, p.name, field, output, kind)
    model = OnnxModel(
        session,
        name=p.name,
        input_name=input_name,
        dtype=dtype,
        n_features=width,
        output_name=output_name,
        kind=found,
    )
    model.n_classes = _trial_classes(model, field, n_classes, kind is None)
    return model


def _check_options(kind: object, threads: object) -> None:
    if kind not in (None, "logits", "probs"):
        raise InputError("kind", f"must be 'logits' or 'probs', got {kind!r}")
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise InputError("threads", f"must be an integer ≥ 1, got {threads!r}")


def _trial_classes(model: OnnxModel, field: str, n_classes: int | None, guessed: bool) -> int:
    """The number of classes, from a prediction on two zero records (a graph that cannot run on
    the declared input fails here, at load, rather than at the first request); a kind
    ``guessed`` from the output's name is checked against that prediction."""
    try:
        out = model.outputs(np.zeros((2, model.n_features or 0)))
    except InputError as exc:
        raise InputError(field, exc.problem) from None
    except Exception as exc:  # noqa: BLE001 - onnxruntime's run errors vary by operator
        raise InputError(
            field, f"{model.name} fails on a trial batch ({type(exc).__name__}: {_one_line(exc)})"
        ) from None
    if out.shape[1] < 2:
        raise InputError(field, f"{model.name} gives {out.shape[1]} class scores; need ≥ 2")
    if n_classes is not None and out.shape[1] != n_classes:
        raise InputError(
            field,
            f"{model.name} gives {out.shape[1]} class scores; the data have {n_classes} classes",
        )
    if guessed:
        _check_guessed_kind(model, out, field)
    return int(out.shape[1])


def _check_guessed_kind(model: OnnxModel, out: np.ndarray, field: str) -> None:
    """Refuse a kind guessed from the output's name that its values contradict: a softmax
    output not named as probabilities (read as logits, it would go through a softmax twice),
    or an output named as probabilities with negative values (log-probabilities)."""
    from miaudit.data import looks_like_probabilities

    where = f"{model.name}'s output {model.output_name!r}"
    if model.kind == "logits" and looks_like_probabilities(out):
        raise InputError(
            field,
            f"{where} gives rows that are non-negative and sum to 1 on a trial batch: probabilities "
            "(a softmax), though its name does not say so, and read as logits they would go through "
            "a softmax twice; pass kind='probs' (load_onnx, ExternalTarget.from_onnx; "
            "miaudit serve --model-output probs) or name the output 'probs' when exporting "
            "(output_names=['probs'])",
        )
    if model.kind == "probs" and out.min() < 0:
        raise InputError(
            field,
            f"{where} is named as probabilities but gives negative values on a trial batch: "
            "log-probabilities or logits; pass kind='logits' (load_onnx, ExternalTarget.from_onnx)",
        )
