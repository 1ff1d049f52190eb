"""What a ``.skops`` file may contain before miaudit loads it: an allow-list of concrete classes.

A skops file is a zip holding ``schema.json``, a tree of nodes, each naming a loader (how skops
rebuilds it) and a ``module.class`` that skops imports and, for several loaders, *calls* while
loading (``ConstructorFromReduceNode``, ``ReduceNode``/``LossNode``, ``NdArrayNode`` of a
non-ndarray type, containers, random states), or hands back as an object that the model calls
later (``FunctionNode``, ``PartialNode``, ``MethodNode``, ``OperatorFuncNode``). skops' own
check trusts some types by default and lets the caller trust more by name; a prefix rule such as
"anything under ``numpy.``" trusts functions that evaluate strings.

So miaudit reads ``schema.json`` itself, from the same bytes it then hands to skops (no second
read of the file), and refuses the file unless

- every node's loader is one that rebuilds data (never one whose result is a callable), and
- every node's ``module.class`` — including the constructor of reduce nodes and the bit
  generator a random-generator node names in its state — is in :func:`allowed_types`: scikit-learn
  classifiers, transformers and the internal classes their fitted state holds, numpy array,
  scalar and random-state classes, scipy sparse classes and Python's data builtins, each by full
  name. There is no prefix rule and no function anywhere in the list.

After loading, the arrays that scikit-learn's compiled code indexes without bounds checks (decision
trees' node tables, histogram-gradient-boosting predictors' nodes) are checked, so a crafted
index cannot make the model read or write outside its arrays.

docs/security.md states the trust model this implements.
"""

from __future__ import annotations

import functools
import io
import json
import zipfile
from collections.abc import Iterator
from typing import Any

import numpy as np

from miaudit.errors import InputError

#: skops versions whose node kinds this module has been reviewed against (pyproject pins the same).
TESTED_SKOPS = ">=0.16,<0.17"

#: Loaders that rebuild data from the file. Left out on purpose: ``FunctionNode`` (a function
#: object), ``PartialNode`` (functools.partial), ``MethodNode`` (a bound method, by attribute
#: name), ``OperatorFuncNode`` (operator.attrgetter/methodcaller…), ``DefaultDictNode`` (its
#: factory is a callable), and any loader a later skops adds until it is reviewed here.
DATA_LOADERS = frozenset(
    {
        "DictNode",
        "ListNode",
        "TupleNode",
        "SetNode",
        "JsonNode",
        "SliceNode",
        "BytesNode",
        "BytearrayNode",
        "NdArrayNode",
        "MaskedArrayNode",
        "DTypeNode",
        "TypeNode",
        "SparseMatrixNode",
        "RandomStateNode",
        "RandomGeneratorNode",
        "ObjectNode",
        "ConstructorFromReduceNode",
        "TreeNode",
        "LossNode",
        "CachedNode",
    }
)

_BUILTINS = (
    "dict",
    "list",
    "tuple",
    "set",
    "frozenset",
    "str",
    "int",
    "float",
    "bool",
    "complex",
    "slice",
    "bytes",
    "bytearray",
    "NoneType",
)

_NUMPY = (
    "numpy.ndarray",
    "numpy.dtype",
    "numpy.ma.core.MaskedArray",
    "numpy.random.mtrand.RandomState",
    "numpy.random._generator.Generator",
    *(
        f"numpy.{t}"
        for t in (
            "bool",
            "bool_",
            "int8",
            "int16",
            "int32",
            "int64",
            "uint8",
            "uint16",
            "uint32",
            "uint64",
            "float16",
            "float32",
            "float64",
            "longdouble",
            "complex64",
            "complex128",
            "str_",
            "bytes_",
            "object_",
        )
    ),
    # The dtype classes numpy 2 names in dtype nodes.
    *(
        f"numpy.dtypes.{t}DType"
        for t in (
            "Bool",
            "Int8",
            "Int16",
            "Int32",
            "Int64",
            "UInt8",
            "UInt16",
            "UInt32",
            "UInt64",
            "Float16",
            "Float32",
            "Float64",
            "Complex64",
            "Complex128",
            "Str",
            "Bytes",
            "Object",
        )
    ),
)

#: Bit generators a ``numpy.random.Generator`` may be rebuilt with (named inside its state).
BIT_GENERATORS = frozenset({"PCG64", "PCG64DXSM", "MT19937", "Philox", "SFC64"})

_SCIPY = tuple(
    f"scipy.sparse._{fmt}.{fmt}_{kind}"
    for fmt in ("csr", "csc", "coo", "bsr", "dia", "lil", "dok")
    for kind in ("matrix", "array")
)

#: scikit-learn's loss classes, each in its Python (``loss``) and Cython (``_loss.Cy…``) form.
_LOSSES = (
    "HalfSquaredError",
    "AbsoluteError",
    "PinballLoss",
    "HuberLoss",
    "HalfPoissonLoss",
    "HalfGammaLoss",
    "HalfTweedieLoss",
    "HalfTweedieLossIdentity",
    "HalfBinomialLoss",
    "HalfMultinomialLoss",
    "ExponentialLoss",
)

#: Classes inside fitted scikit-learn estimators that are not estimators themselves: losses and
#: links (gradient boosting, SGD), tree structures, calibrators, optimisers, binning.
_SKLEARN_INTERNALS = (
    "sklearn.tree._tree.Tree",
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    "sklearn.ensemble._hist_gradient_boosting.binning._BinMapper",
    "sklearn.calibration._CalibratedClassifier",
    "sklearn.calibration._SigmoidCalibration",
    "sklearn.gaussian_process._gpc._BinaryGaussianProcessClassifierLaplace",
    "sklearn.neural_network._stochastic_optimizers.AdamOptimizer",
    "sklearn.neural_network._stochastic_optimizers.SGDOptimizer",
    "sklearn.tree._classes.DecisionTreeRegressor",
    "sklearn.tree._classes.ExtraTreeRegressor",
    "sklearn.dummy.DummyRegressor",
    "sklearn.isotonic.IsotonicRegression",
    *(
        f"sklearn._loss.link.{c}"
        for c in (
            "Interval",
            "IdentityLink",
            "LogLink",
            "LogitLink",
            "HalfLogitLink",
            "MultinomialLogit",
        )
    ),
    *(f"sklearn._loss.loss.{c}" for c in _LOSSES),
    *(f"sklearn._loss._loss.Cy{c}" for c in _LOSSES),
    *(
        f"sklearn.linear_model._sgd_fast.{c}"
        for c in (
            "Hinge",
            "SquaredHinge",
            "ModifiedHuber",
            "Log",
            "SquaredLoss",
            "Huber",
            "EpsilonInsensitive",
            "SquaredEpsilonInsensitive",
        )
    ),
    *(
        f"sklearn.gaussian_process.kernels.{c}"
        for c in (
            "ConstantKernel",
            "WhiteKernel",
            "RBF",
            "Matern",
            "RationalQuadratic",
            "ExpSineSquared",
            "DotProduct",
            "Sum",
            "Product",
            "Exponentiation",
            "Hyperparameter",
            "PairwiseKernel",
            "CompoundKernel",
        )
    ),
)

#: Estimators whose fitted state holds compiled structures this module does not check (neighbour
#: search trees and libsvm's support-vector tables are indexed without bounds checks): refused,
#: though scikit-learn classes.
_REFUSED_ESTIMATORS = frozenset(
    {
        "sklearn.neighbors._kd_tree.KDTree",
        "sklearn.neighbors._ball_tree.BallTree",
        # Reviewed and refused (a red team crashed each through a crafted state): a label
        # binariser's cached label-to-column map and the neighbour-graph transformers' sample
        # count build sparse matrices whose indices no one checks before C code writes by them.
        "sklearn.preprocessing._label.MultiLabelBinarizer",
        "sklearn.neighbors._graph.KNeighborsTransformer",
        "sklearn.neighbors._graph.RadiusNeighborsTransformer",
        # libsvm indexes its support-vector tables by counts stored in the file (_n_support…).
        "sklearn.svm._classes.SVC",
        "sklearn.svm._classes.NuSVC",
        "sklearn.svm._classes.OneClassSVM",
        "sklearn.svm._classes.SVR",
        "sklearn.svm._classes.NuSVR",
    }
)


@functools.cache
def allowed_types() -> frozenset[str]:
    """Every ``module.class`` a ``.skops`` file may name, by full name."""
    from sklearn.compose import ColumnTransformer
    from sklearn.pipeline import FeatureUnion, Pipeline
    from sklearn.utils import all_estimators

    estimators = {cls for _, cls in all_estimators(type_filter=["classifier", "transformer"])}
    estimators |= {Pipeline, FeatureUnion, ColumnTransformer}
    names = {f"{cls.__module__}.{cls.__qualname__}" for cls in estimators}
    names |= {f"builtins.{b}" for b in _BUILTINS}
    names |= set(_NUMPY) | set(_SCIPY) | set(_SKLEARN_INTERNALS)
    return frozenset(names - _REFUSED_ESTIMATORS)


#: The largest ``schema.json`` read, and the largest inflated size of the whole file: both are
#: read from the zip's directory and refused before anything is inflated.
MAX_SCHEMA_BYTES = 16 * 2**20
MAX_TOTAL_BYTES = 4 * 2**30
#: A member larger than this inflated, and the whole file when its members together are, must
#: compress less than :data:`MAX_RATIO` to one: model arrays (floats, indices) compress a few
#: times, a zip bomb thousands of times.
RATIO_FLOOR_BYTES = 16 * 2**20
MAX_RATIO = 100


def read_schema(data: bytes, name: str) -> dict[str, Any]:
    """The parsed ``schema.json`` of a skops file's bytes (InputError naming the file)."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            _check_sizes(zf, name)
            info = zf.getinfo("schema.json")
            if info.file_size > MAX_SCHEMA_BYTES:
                raise InputError(
                    "model",
                    f"{name}: schema.json of {info.file_size} bytes is larger than any model miaudit loads",
                )
            schema = json.loads(zf.read(info))
            if not isinstance(schema, dict):
                raise InputError(
                    "model", f"{name} is not a skops file (schema.json is not an object)"
                )
            _check_references(zf, schema, name, len(data))
    except InputError:
        raise
    except (zipfile.BadZipFile, KeyError, ValueError, OSError, RuntimeError) as exc:
        raise InputError("model", f"{name} is not a skops file ({type(exc).__name__})") from None
    return schema


def _check_sizes(zf: zipfile.ZipFile, name: str) -> None:
    total = packed = 0
    for member in zf.infolist():
        total += member.file_size
        packed += member.compress_size
        if member.file_size > RATIO_FLOOR_BYTES and member.file_size > MAX_RATIO * max(
            member.compress_size, 1
        ):
            raise InputError(
                "model",
                f"{name}: {member.filename} inflates {member.file_size // max(member.compress_size, 1)}-fold (a zip bomb, not model arrays)",
            )
    if total > RATIO_FLOOR_BYTES and total > MAX_RATIO * max(packed, 1):
        # Many members each under the floor add up: the ratio holds for the whole file too.
        raise InputError(
            "model",
            f"{name} inflates {total // max(packed, 1)}-fold overall (a zip bomb, not model arrays)",
        )
    if total > MAX_TOTAL_BYTES:
        raise InputError(
            "model",
            f"{name} inflates to {total / 2**30:.1f} GiB, more than any model miaudit loads ({MAX_TOTAL_BYTES // 2**30} GiB)",
        )


def _check_references(
    zf: zipfile.ZipFile, schema: dict[str, Any], name: str, file_bytes: int
) -> None:
    """The size checks over what skops will read, not what the zip holds: skops inflates a
    member once per node that names it, so one 16 MiB member named 60 times in an 18 KB file
    inflated to 1.4 GB (a red team). Honest files name a shared array a few times at most."""
    sizes = {m.filename: m.file_size for m in zf.infolist()}
    files = [n["file"] for n in _nodes(schema) if isinstance(n.get("file"), str)]
    read = sum(sizes.get(f, 0) for f in files) + sizes.get("schema.json", 0)
    if read > MAX_TOTAL_BYTES or (
        read > RATIO_FLOOR_BYTES and read > MAX_RATIO * max(file_bytes, 1)
    ):
        raise InputError(
            "model",
            f"{name}: its arrays, as schema.json names them, inflate to {read:,} bytes from a {file_bytes:,}-byte file (a zip bomb by reference)",
        )


def _nodes(tree: Any) -> Iterator[dict[str, Any]]:
    """Every node of a schema: any JSON object with a ``__loader__``, at any depth (skops nests
    nodes under ``content``, ``attrs``, ``__reduce__``… — every key is searched, not only those)."""
    stack = [tree]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            if "__loader__" in item:
                yield item
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


def _bit_generator(node: dict[str, Any]) -> Any:
    try:
        return json.loads(node["content"]["bit_generator"]["content"]["bit_generator"]["content"])
    except (KeyError, TypeError, ValueError):
        return None


def untrusted_types(schema: dict[str, Any]) -> tuple[set[str], set[str]]:
    """(the ``module.class`` names the schema uses, those outside the allow-list)."""
    allowed = allowed_types()
    used: set[str] = set()
    bad: set[str] = set()
    for node in _nodes(schema):
        loader, module, cls = node.get("__loader__"), node.get("__module__"), node.get("__class__")
        name = f"{module}.{cls}"
        if not (isinstance(loader, str) and isinstance(module, str) and isinstance(cls, str)):
            bad.add(f"{name} (malformed node)")
            continue
        if loader not in DATA_LOADERS:
            bad.add(f"{name} ({loader})")
        elif name not in allowed:
            bad.add(name)
        if loader == "RandomGeneratorNode":
            gen = _bit_generator(node)
            if gen not in BIT_GENERATORS:
                bad.add(f"numpy.random.{gen} (bit generator)")
        used.add(name)
    return used, bad


def load_checked(data: bytes, name: str) -> Any:
    """Load a skops file's bytes after checking every node against the allow-list; then check
    the loaded model's index arrays. InputError naming the file and the untrusted types."""
    import skops.io as sio

    schema = read_schema(data, name)
    used, bad = untrusted_types(schema)
    if bad:
        listed = ", ".join(sorted(bad)[:5]) + (f" and {len(bad) - 5} more" if len(bad) > 5 else "")
        raise InputError(
            "model",
            f"{name} holds types miaudit does not load (files are data, never code): {listed}",
        )
    try:
        obj = sio.loads(data, trusted=sorted(used))
    except Exception as exc:  # noqa: BLE001 - a malformed file fails inside skops in many ways; none is a model
        raise InputError(
            "model",
            f"{name} cannot be loaded as a scikit-learn model ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})",
        ) from None
    check_index_arrays(obj, name)
    return obj


def _children(obj: Any) -> Iterator[Any]:
    if isinstance(obj, dict):
        yield from obj.values()
    elif isinstance(obj, (list, tuple)):
        yield from obj
    elif isinstance(obj, np.ndarray):
        if obj.dtype == object:
            yield from obj.ravel().tolist()
    elif hasattr(obj, "__dict__") and type(obj).__module__.startswith("sklearn"):
        yield from vars(obj).values()


def _width(obj: Any, name: str) -> int | None:
    """An estimator's ``n_features_in_``: absent (None) or a non-negative int, never anything
    else (scikit-learn compares it with ``==``, so 2.0 would pass its own input check)."""
    if "n_features_in_" not in getattr(obj, "__dict__", {}):
        return None
    nf = obj.__dict__["n_features_in_"]
    if type(nf) not in (int, np.int64, np.int32) or int(nf) < 0:
        raise InputError(
            "model",
            f"{name}: {type(obj).__name__}.n_features_in_ is {nf!r}, not a count of features (a crafted or corrupted file)",
        )
    return int(nf)


def _sub_estimators(obj: Any) -> list[Any]:
    subs = obj.__dict__.get("estimators_")
    if isinstance(subs, np.ndarray):
        return [e for e in subs.ravel().tolist() if hasattr(e, "__dict__")]
    if isinstance(subs, list):
        return [e for e in subs if hasattr(e, "__dict__")]
    return []


def _check_estimator(obj: Any, name: str) -> int | None:
    """Input widths that scikit-learn's compiled code relies on without checking them; returns
    the estimator's own width (None for anything else)."""
    from sklearn.base import BaseEstimator

    if not isinstance(obj, BaseEstimator):
        return _width(obj, name) if type(obj).__module__.startswith("sklearn") else None
    width = _width(obj, name)
    tree = obj.__dict__.get("tree_")
    if tree is not None and (width is None or int(tree.n_features) != width):
        raise InputError(
            "model",
            f"{name}: a decision tree's width ({getattr(tree, 'n_features', '?')}) is not its estimator's n_features_in_ ({width})",
        )
    subs = _sub_estimators(obj)
    if width is None or not subs:
        return width
    # Ensembles pass their validated input to every member unchecked (forests, boosting), or
    # the columns ``estimators_features_`` selects (bagging).
    features = obj.__dict__.get("estimators_features_")
    for i, sub in enumerate(subs):
        sub_width = _width(sub, name)
        if features is not None:
            cols = np.asarray(features[i]) if i < len(features) else np.empty(0)
            ok = (
                cols.dtype.kind in "iu"
                and cols.size == sub_width
                and bool(np.all((cols >= 0) & (cols < width)))
            )
        else:
            ok = sub_width is None or sub_width == width
        if not ok:
            raise InputError(
                "model",
                f"{name}: member {i} of {type(obj).__name__} expects another input width than the ensemble checks (a crafted or corrupted file)",
            )
    return width


def check_index_arrays(root: Any, name: str) -> None:
    """Refuse a loaded model whose arrays point outside themselves or outside the input width
    its estimators check: tree node tables, ensemble members, sparse matrices' indices."""
    import scipy.sparse as sp
    from sklearn.ensemble._hist_gradient_boosting.predictor import TreePredictor
    from sklearn.tree._tree import Tree

    seen: set[int] = set()
    stack: list[tuple[Any, int | None]] = [(root, None)]
    while stack:
        obj, n_features = stack.pop()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        own = _check_estimator(obj, name)
        if own is not None:
            n_features = own
        # Classes whose compiled prediction trusts more of their state; an unfitted template
        # (a pipeline's or meta-estimator's) runs nothing, so is not checked.
        check = _STATE_CHECKS.get(f"{type(obj).__module__}.{type(obj).__qualname__}")
        if check is not None and _fitted(obj):
            check(obj, name)
        if isinstance(obj, Tree):
            _check_tree(obj, name, n_features)
        elif isinstance(obj, TreePredictor):
            _check_predictor(obj, name, n_features)
        elif sp.issparse(obj):
            try:
                obj.check_format(full_check=True)
            except (ValueError, TypeError, AttributeError) as exc:
                raise InputError(
                    "model", f"{name}: a sparse matrix's indices are invalid ({exc})"
                ) from None
        elif (
            type(obj).__name__ == "_BinMapper"
            and getattr(obj, "is_categorical_", None) is not None
            and bool(np.any(obj.is_categorical_))
        ):
            raise InputError(
                "model",
                f"{name}: gradient boosting with categorical features is not loaded (its category tables are not checked here)",
            )
        stack.extend((child, n_features) for child in _children(obj))


def _check_gradient_boosting(gb: Any, name: str) -> None:
    """Gradient boosting's shapes that its compiled ``predict_stages`` trusts: it adds every
    column ``k`` of ``estimators_`` into column ``k`` of the initial predictions, unchecked, and
    reads one value per tree node. So: ``estimators_`` is (stages, K) with K the trees per
    stage its classes imply, every member a one-output regression tree, and the initial
    predictions (``init_``: zero, or the prior that scikit-learn fits by default) K wide —
    checked on a trial row once the rest holds. A file with more columns wrote past its buffer."""
    from sklearn.dummy import DummyClassifier
    from sklearn.tree import DecisionTreeRegressor
    from sklearn.tree._tree import Tree

    state = gb.__dict__

    def refuse(why: str) -> InputError:
        return _refusal(name, f"gradient boosting {why}")

    n_classes, per_stage = state.get("n_classes_"), state.get("n_trees_per_iteration_")
    if type(n_classes) not in (int, np.int64) or type(per_stage) not in (int, np.int64):
        raise refuse("has no class or trees-per-stage count")
    if n_classes < 2 or per_stage != (1 if n_classes == 2 else n_classes):
        raise refuse(f"has {per_stage} trees per stage for {n_classes} classes")
    classes = state.get("classes_")
    if not isinstance(classes, np.ndarray) or classes.shape != (n_classes,):
        raise refuse("has classes that are not its class count")
    trees = state.get("estimators_")
    if not (
        isinstance(trees, np.ndarray)
        and trees.dtype == object
        and trees.ndim == 2
        and trees.shape[0] >= 1
        and trees.shape[1] == per_stage
    ):
        raise refuse(f"has stages that are not {per_stage} trees wide")
    for tree in trees.ravel().tolist():
        table = getattr(tree, "__dict__", {}).get("tree_")
        if not (
            type(tree) is DecisionTreeRegressor
            and isinstance(table, Tree)
            and int(table.n_outputs) == 1
            and table.value.shape[1:] == (1, 1)
        ):
            raise refuse("has a stage member that is not a one-output regression tree")
    init = state.get("init_")
    if not (isinstance(init, str) and init == "zero") and type(init) is not DummyClassifier:
        raise refuse(
            "starts from an estimator other than zero or the class prior (not loaded: its output width is not checked here)"
        )
    n_features = _width(gb, name)
    if n_features is None:
        raise refuse("has no input width")
    try:
        start = gb._raw_predict_init(np.zeros((2, n_features), dtype=np.float32))
    except Exception as exc:  # noqa: BLE001 - a crafted prior fails in numpy in many ways
        raise refuse(f"cannot make its initial predictions ({type(exc).__name__})") from None
    if not (isinstance(start, np.ndarray) and start.shape == (2, per_stage)):
        raise refuse(f"starts from predictions that are not {per_stage} wide")


def _fitted(obj: Any) -> bool:
    """Whether ``obj`` holds fitted state (scikit-learn's convention: attributes ending in _)."""
    return any(k.endswith("_") and not k.startswith("__") for k in vars(obj))


def _refusal(name: str, what: str) -> InputError:
    return InputError("model", f"{name}: {what} (a crafted or corrupted file)")


def _check_hist_boosting(hgb: Any, name: str) -> None:
    """Histogram gradient boosting validates its input's width unless a stored preprocessor
    takes it (categorical models, refused here anyway) or it believes it is mid-fit (then it
    takes its input as already binned): either let node features index past the input."""
    state = hgb.__dict__
    if _width(hgb, name) is None:  # scikit-learn checks the input's width only against it
        raise _refusal(name, "histogram gradient boosting has no input width to check")
    if state.get("_preprocessor") is not None or bool(state.get("_in_fit", False)):
        raise _refusal(
            name, "histogram gradient boosting skips its input check (_preprocessor or _in_fit)"
        )


def _check_one_hot(enc: Any, name: str) -> None:
    """A one-hot encoder's codes and offsets become a sparse matrix's column indices unchecked,
    which ``toarray`` (or the next step's C code) writes by: numeric categories strictly
    increasing (``searchsorted`` returns a past-the-end code otherwise; a NaN only last), drops
    inside their categories, no infrequent grouping (its maps are not checked here), and output
    widths those categories give."""
    state = enc.__dict__
    cats = state.get("categories_")
    if not isinstance(cats, list) or not all(
        isinstance(c, np.ndarray) and c.ndim == 1 for c in cats
    ):
        raise _refusal(name, "a one-hot encoder's categories are not a list of 1-D arrays")
    for c in cats:
        # scikit-learn finds a value's code by binary search unless the input is text: any
        # category array but Python objects must be sorted (a complex one gave a past-the-end
        # code), and only numbers, text and objects are categories.
        if c.dtype.kind not in "biufUSO":
            raise _refusal(name, f"a one-hot encoder's categories are of dtype {c.dtype}")
        if c.dtype.kind in "biuf":
            values = c[~np.isnan(c)] if c.dtype.kind == "f" else c
            nan_last = c.dtype.kind != "f" or not np.isnan(c[: values.size]).any()
            if not (nan_last and bool(np.all(np.diff(values) > 0))):
                raise _refusal(name, "a one-hot encoder's numeric categories are not sorted")
        elif c.dtype.kind in "US" and not bool(np.all(c[:-1] < c[1:])):
            raise _refusal(name, "a one-hot encoder's text categories are not sorted")
    if bool(state.get("_infrequent_enabled", False)):
        raise _refusal(
            name, "a one-hot encoder groups infrequent categories (its maps are not checked here)"
        )
    for attr in ("drop_idx_", "_drop_idx_after_grouping"):
        drops = state.get(attr)
        if drops is None:
            continue
        drops = np.asarray(drops, dtype=object).ravel().tolist()
        if len(drops) != len(cats) or not all(
            d is None or (type(d) in (int, np.int64, np.int32) and 0 <= int(d) < len(c))
            for d, c in zip(drops, cats, strict=False)
        ):
            raise _refusal(name, f"a one-hot encoder's {attr} points outside its categories")
    try:
        expected = [int(n) for n in enc._compute_n_features_outs()]
    except Exception as exc:  # noqa: BLE001 - a crafted state fails here in many ways
        raise _refusal(name, f"a one-hot encoder's output widths ({type(exc).__name__})") from None
    outs = state.get("_n_features_outs")
    if not isinstance(outs, list) or [int(n) for n in outs] != expected:
        raise _refusal(name, "a one-hot encoder's output widths are not its categories'")


_PLAIN_METRICS = frozenset(
    {
        "euclidean",
        "l2",
        "manhattan",
        "cityblock",
        "l1",
        "chebyshev",
        "infinity",
        "minkowski",
        "cosine",
    }
)


def _check_neighbours(knn: Any, name: str) -> None:
    """Neighbour classifiers add into ``class_scores[i][_y[j]]`` and read ``X.shape[1]`` values
    from each stored sample, unchecked: brute force over a dense (samples, width) table, one
    output, labels inside the classes."""
    state = knn.__dict__
    fit_x, labels, classes = state.get("_fit_X"), state.get("_y"), state.get("classes_")
    n, width = state.get("n_samples_fit_"), _width(knn, name)
    if state.get("_fit_method") != "brute" or state.get("_tree") is not None:
        raise _refusal(name, "a neighbour classifier's search is not brute force over its table")
    if bool(np.any(state.get("outputs_2d_", False))):
        raise _refusal(name, "a neighbour classifier with several outputs is not loaded")
    # scipy's and scikit-learn's compiled distances read a metric's parameters (mahalanobis'
    # matrix, weights) as the input's width, unchecked: parameter-free metrics only.
    params = state.get("effective_metric_params_") or {}
    if state.get("effective_metric_") not in _PLAIN_METRICS or not (
        isinstance(params, dict)
        and set(params) <= {"p"}
        and all(type(v) in (int, float) and 0 < v < 1e6 for v in params.values())
    ):
        raise _refusal(name, "a neighbour classifier's metric takes parameters not checked here")
    if not (
        type(n) in (int, np.int64)
        and isinstance(fit_x, np.ndarray)
        and fit_x.shape == (n, width)
        and isinstance(labels, np.ndarray)
        and labels.dtype.kind in "iu"
        and labels.shape == (n,)
        and isinstance(classes, np.ndarray)
        and classes.ndim == 1
        and (n == 0 or bool(np.all((labels >= 0) & (labels < classes.shape[0]))))
    ):
        raise _refusal(name, "a neighbour classifier's samples, labels or classes disagree")


def _check_polynomial(poly: Any, name: str) -> None:
    """Polynomial features fill an uninitialised (records, ``_n_out_full``) array term by term:
    a stored width larger than the terms its degrees give would hand stale process memory to
    the model's answers. Both widths must be the ones scikit-learn computes from the settings."""
    state = poly.__dict__
    ints = [state.get(k) for k in ("_min_degree", "_max_degree")]
    flags = [state.get(k) for k in ("interaction_only", "include_bias")]
    width = _width(poly, name)
    if (
        width is None
        or not all(type(v) in (int, np.int64) and 0 <= int(v) <= 64 for v in ints)
        or not all(isinstance(f, (bool, np.bool_)) for f in flags)
    ):
        raise _refusal(name, "polynomial features' degrees or flags are not settings")
    lo, hi = (int(v) for v in ints)
    expected = [
        type(poly)._num_combinations(width, low, hi, bool(flags[0]), bool(flags[1]))
        for low in (lo, 0)
    ]
    if [state.get("n_output_features_"), state.get("_n_out_full")] != expected:
        raise _refusal(name, "polynomial features' output widths are not their degrees'")


_STATE_CHECKS = {
    "sklearn.ensemble._gb.GradientBoostingClassifier": _check_gradient_boosting,
    "sklearn.preprocessing._polynomial.PolynomialFeatures": _check_polynomial,
    "sklearn.ensemble._hist_gradient_boosting.gradient_boosting.HistGradientBoostingClassifier": _check_hist_boosting,
    "sklearn.preprocessing._encoders.OneHotEncoder": _check_one_hot,
    "sklearn.neighbors._classification.KNeighborsClassifier": _check_neighbours,
    "sklearn.neighbors._classification.RadiusNeighborsClassifier": _check_neighbours,
}


def _check_tree(tree: Any, name: str, n_features: int | None) -> None:
    n = int(tree.node_count)
    width = int(tree.n_features) if n_features is None else min(int(tree.n_features), n_features)
    left, right, feature = tree.children_left, tree.children_right, tree.feature
    leaf = left == -1
    internal = ~leaf
    ok = (
        n >= 1
        and left.shape == right.shape == feature.shape == (n,)
        and np.array_equal(leaf, right == -1)
        # Children come after their parent in scikit-learn's depth-first layout: no cycles.
        and bool(np.all(left[internal] > np.flatnonzero(internal)))
        and bool(np.all(right[internal] > np.flatnonzero(internal)))
        and bool(np.all(left[internal] < n))
        and bool(np.all(right[internal] < n))
        and bool(np.all((feature[internal] >= 0) & (feature[internal] < width)))
        and tree.value.shape[0] == n
    )
    if not ok:
        raise InputError(
            "model",
            f"{name}: a decision tree's node table points outside itself (a crafted or corrupted file)",
        )


def _check_predictor(pred: Any, name: str, n_features: int | None) -> None:
    nodes = pred.nodes
    n = nodes.shape[0]
    internal = nodes["is_leaf"] == 0
    idx = np.flatnonzero(internal)
    left, right = (
        nodes["left"][internal].astype(np.int64),
        nodes["right"][internal].astype(np.int64),
    )
    ok = n >= 1 and bool(np.all((left > idx) & (left < n) & (right > idx) & (right < n)))
    feature = nodes["feature_idx"][internal].astype(np.int64)
    ok = (
        ok
        and n_features is not None  # a tree with no width to check its features against
        and bool(np.all(feature >= 0))
        and bool(np.all(feature < n_features))
    )
    if "is_categorical" in nodes.dtype.names and bool(
        np.any(nodes["is_categorical"][internal] != 0)
    ):
        raise InputError(
            "model",
            f"{name}: gradient boosting with categorical splits is not loaded (its category tables are not checked here)",
        )
    if not ok:
        raise InputError(
            "model",
            f"{name}: a gradient-boosting tree's node table points outside itself (a crafted or corrupted file)",
        )
