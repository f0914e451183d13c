"""TENSOR_MATCH, GLOBAL_STATE and the tensor_size / tensor_stride / tensor_storage_offset
accessors, through both readers of torch state: framecache._torch_C (C++) and the
Python reader that the switch ``set_torch_fast_path(False)`` forces.
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode

import framecache
from conftest import run_python
from framecache._C import guards as _guards
from framecache.guards import RootGuardManager

pytestmark = pytest.mark.torch


@pytest.fixture(params=["fast", "python"])
def reader(request: pytest.FixtureRequest) -> Iterator[str]:
    """Runs a test once with the C++ reader and once with the Python reader."""
    previous = _guards.set_torch_fast_path(request.param == "fast")
    try:
        yield request.param
    finally:
        _guards.set_torch_fast_path(previous)


def failures(root: RootGuardManager, **f_locals: object) -> list[str]:
    """The verbose failures of ``root`` on these locals, checking that check() agrees."""
    info = root.check_verbose(f_locals)
    assert root.check(f_locals) is info.result
    return list(info.failures)


def tensor_root(t: torch.Tensor, **kwargs: Any) -> RootGuardManager:
    root = RootGuardManager()
    root.local("x").tensor_match(t, **kwargs)
    return root


class Subclass(torch.Tensor):
    """A tensor subclass with no behaviour of its own."""


# --- the torch part ----------------------------------------------------------------------


def test_fast_part_is_built_and_loaded() -> None:
    # Prebuilt (cmake, pip --no-build-isolation) or compiled on first use (any
    # other install): the C++ reader must be there and in use.
    root = RootGuardManager()
    root.local("x").tensor_match(torch.zeros(1))
    assert _guards.torch_fast_path_status().startswith("on: C++ reader for torch ")
    assert torch.__version__ in _guards.torch_fast_path_status()
    assert _guards.torch_fast_path_enabled()


def test_switch_reports_and_restores() -> None:
    root = RootGuardManager()
    root.local("x").tensor_match(torch.zeros(1))
    assert _guards.set_torch_fast_path(False) is True
    try:
        assert not _guards.torch_fast_path_enabled()
        assert _guards.torch_fast_path_status().endswith("disabled by the switch")
    finally:
        assert _guards.set_torch_fast_path(True) is False
    assert _guards.torch_fast_path_enabled()


def test_fast_part_refuses_another_torch_version() -> None:
    # _torch_C is only valid with the torch it was compiled against: against
    # another version (and with building a matching one forbidden) the core falls
    # back to the Python reader, says why, and warns once.
    result = run_python(
        """
        import os, warnings
        os.environ["FRAMECACHE_TORCH_PART"] = "0"
        import torch
        torch.__version__ = "0.0.1"
        from framecache._C import guards as G
        from framecache.guards import RootGuardManager
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            root = RootGuardManager()
            root.local("x").tensor_match(torch.zeros(2, 3))
            root.local("y").tensor_match(torch.zeros(2, 3))
        print(G.torch_fast_path_status())
        print(G.torch_fast_path_enabled())
        print(root.check({"x": torch.ones(2, 3), "y": torch.ones(2, 3)}),
              root.check({"x": torch.ones(3, 3), "y": torch.ones(2, 3)}))
        print(len([w for w in caught if "C++ tensor reader" in str(w.message)]))
        """
    )
    assert result.returncode == 0, result.stderr
    status, enabled, checks, warned = result.stdout.strip().splitlines()
    if list(Path(framecache.__file__).parent.glob("_torch_C*")):
        assert status.startswith("off: the prebuilt one failed to import (")
        assert "but torch 0.0.1 is running" in status
    else:  # an install that compiles the torch part on first use
        assert status.startswith("off: not built with the package")
    assert "FRAMECACHE_TORCH_PART=0 forbids building it" in status
    assert "read through Python" in status
    assert enabled == "False"
    assert checks == "True False"
    assert warned == "1"


def test_import_framecache_does_not_import_torch() -> None:
    result = run_python(
        """
        import sys
        import framecache
        from framecache.guards import RootGuardManager
        root = RootGuardManager()
        root.local("x").type_match(int)
        assert root.check({"x": 1})
        # A non-tensor is rejected without importing torch.
        try:
            root.local("y").tensor_match(3)
        except TypeError as e:
            print(e)
        assert "torch" not in sys.modules, "torch was imported"
        print("ok")
        """
    )
    assert result.returncode == 0, result.stderr
    assert "tensor_match() expects a torch.Tensor, got int" in result.stdout
    assert result.stdout.strip().endswith("ok")


# --- TENSOR_MATCH ------------------------------------------------------------------------


def test_tensor_match_passes_for_same_metadata(reader: str) -> None:
    x = torch.randn(4, 64)
    root = tensor_root(x)
    assert root.check({"x": x})
    assert root.check({"x": torch.zeros(4, 64)})
    assert failures(root, x=torch.ones(4, 64)) == []
    assert root.check_verbose({"x": x}).num_guards_executed == 1


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda: torch.randn(4, 32), "size mismatch at dim 1, expected 64, got 32"),
        (lambda: torch.randn(8, 64), "size mismatch at dim 0, expected 4, got 8"),
        (lambda: torch.randn(4, 64, 1), "ndim mismatch, expected 2, got 3"),
        (
            lambda: torch.randn(4, 64, dtype=torch.float16),
            "dtype mismatch, expected torch.float32, got torch.float16",
        ),
        (
            lambda: torch.randn(4, 64, requires_grad=True),
            "requires_grad mismatch, expected False, got True",
        ),
        (lambda: torch.empty(4, 64, device="meta"), "device mismatch, expected cpu, got meta"),
        (
            lambda: torch.randn(64, 4).t(),
            "stride mismatch at dim 0, expected 64, got 1",
        ),
        (lambda: 3, "type mismatch, expected torch.Tensor, got int"),
        (lambda: None, "type mismatch, expected torch.Tensor, got NoneType"),
        (
            lambda: torch.nn.Parameter(torch.randn(4, 64), requires_grad=False),
            "type mismatch, expected torch.Tensor, got torch.nn.parameter.Parameter",
        ),
        (
            lambda: torch.randn(4, 64).as_subclass(Subclass),
            "type mismatch, expected torch.Tensor, got test_guards_tensor.Subclass",
        ),
    ],
)
def test_tensor_match_failure_reasons(reader: str, make: Callable[[], object], reason: str) -> None:
    root = tensor_root(torch.randn(4, 64))
    [failure] = failures(root, x=make())
    prefix = "L['x']: "
    assert failure.startswith(prefix)
    if reason.startswith("type mismatch") and "Subclass" in reason:
        # The module name depends on how pytest imported this file.
        assert failure.endswith("Subclass")
        assert failure.startswith(prefix + "type mismatch, expected torch.Tensor, got ")
    else:
        assert failure == prefix + reason


def test_tensor_match_dispatch_keys(reader: str) -> None:
    x = torch.randn(4, 64)
    root = tensor_root(x)
    with torch.inference_mode():
        inference = torch.randn(4, 64)
    [failure] = failures(root, x=inference)
    assert failure.startswith("L['x']: dispatch key set mismatch, expected DispatchKeySet(")
    assert "AutogradCPU" in failure.split(", got ")[0]
    assert "AutogradCPU" not in failure.split(", got ")[1]
    # The thread's local dispatch state counts too, as in torch's tensor guard.
    with torch.inference_mode():
        assert not root.check({"x": x})
    complex_root = tensor_root(torch.randn(3, dtype=torch.complex64))
    [failure] = failures(complex_root, x=torch.randn(3, dtype=torch.complex64).conj())
    assert "dispatch key set mismatch" in failure
    assert "Conjugate" in failure.split(", got ")[1]


def test_tensor_match_parameter_and_subclass_types(reader: str) -> None:
    p = torch.nn.Parameter(torch.randn(3))
    root = tensor_root(p)
    assert root.check({"x": torch.nn.Parameter(torch.zeros(3))})
    [failure] = failures(root, x=torch.randn(3, requires_grad=True))
    assert failure == (
        "L['x']: type mismatch, expected torch.nn.parameter.Parameter, got torch.Tensor"
    )
    s = torch.randn(3).as_subclass(Subclass)
    sub_root = tensor_root(s)
    assert sub_root.check({"x": torch.zeros(3).as_subclass(Subclass)})
    assert not sub_root.check({"x": torch.zeros(3)})


def test_tensor_match_dynamic_dims(reader: str) -> None:
    root = tensor_root(torch.randn(4, 64), dynamic_dims=(0,))
    assert root.check({"x": torch.randn(9, 64)})
    assert failures(root, x=torch.randn(9, 32)) == [
        "L['x']: size mismatch at dim 1, expected 64, got 32"
    ]
    # A negative dim counts from the end.
    root = tensor_root(torch.randn(4, 64), dynamic_dims=(-1,))
    assert root.check({"x": torch.randn(4, 7)})
    assert not root.check({"x": torch.randn(5, 7)})
    assert "size=[4, None]" in str(root)


def test_tensor_match_derived_dynamic_strides(reader: str) -> None:
    # An inner dynamic size changes the outer stride of a dense tensor: by
    # default that stride is not compared; the dynamic dim's own stride is.
    root = tensor_root(torch.randn(4, 64), dynamic_dims=(1,))
    assert "stride=[None, 1]" in str(root)
    assert root.check({"x": torch.randn(4, 32)})
    assert failures(root, x=torch.randn(64, 4).t()) == [
        "L['x']: stride mismatch at dim 1, expected 1, got 4"
    ]
    # An outer dynamic size changes no stride.
    root = tensor_root(torch.randn(4, 64), dynamic_dims=(0,))
    assert "stride=[64, 1]" in str(root)


def test_tensor_match_explicit_dynamic_strides(reader: str) -> None:
    every_stride = tensor_root(torch.randn(4, 64), dynamic_dims=(1,), dynamic_strides=())
    assert failures(every_stride, x=torch.randn(4, 32)) == [
        "L['x']: stride mismatch at dim 0, expected 64, got 32"
    ]
    no_stride = tensor_root(torch.randn(4, 64), dynamic_strides=(0, 1))
    assert no_stride.check({"x": torch.randn(64, 4).t()})
    assert not no_stride.check({"x": torch.randn(4, 32)})


def test_tensor_match_zero_dim_and_views(reader: str) -> None:
    root = tensor_root(torch.tensor(3.0))
    assert root.check({"x": torch.tensor(5.0)})
    assert failures(root, x=torch.tensor([5.0])) == ["L['x']: ndim mismatch, expected 0, got 1"]
    base = torch.randn(8, 64)
    # The storage offset is not part of TENSOR_MATCH.
    view_root = tensor_root(base[:4])
    assert view_root.check({"x": base[4:]})
    wide = torch.randn(4, 20, 3)
    assert len(str(tensor_root(wide, dynamic_dims=(0, 1, 2)))) > 0
    many = torch.zeros([1] * 12)
    assert tensor_root(many).check({"x": torch.ones([1] * 12)})
    assert failures(tensor_root(many), x=torch.ones([1] * 11 + [2])) == [
        "L['x']: size mismatch at dim 11, expected 1, got 2"
    ]


def test_tensor_match_guards_built_with_one_reader_check_with_the_other() -> None:
    x = torch.randn(4, 64)
    previous = _guards.set_torch_fast_path(False)
    try:
        slow_built = tensor_root(x, dynamic_dims=(0,))
    finally:
        _guards.set_torch_fast_path(previous)
    fast_built = tensor_root(x, dynamic_dims=(0,))
    assert str(slow_built) == str(fast_built)
    inputs = [
        x,
        torch.randn(7, 64),
        torch.randn(4, 32),
        x.half(),
        x.t(),
        torch.randn(4, 64, requires_grad=True),
        torch.empty(4, 64, device="meta"),
        torch.nn.Parameter(x.clone()),
        "not a tensor",
    ]
    answers = []
    for fast in (True, False):
        _guards.set_torch_fast_path(fast)
        try:
            answers.append(
                [
                    (root.check({"x": v}), root.check_verbose({"x": v}).failures)
                    for root in (slow_built, fast_built)
                    for v in inputs
                ]
            )
        finally:
            _guards.set_torch_fast_path(previous)
    assert answers[0] == answers[1]
    assert [passed for passed, _ in answers[0]].count(True) == 4  # x and the 7-row tensor, twice


def test_tensor_match_through_the_hook(reader: str) -> None:
    def f(x: torch.Tensor) -> torch.Tensor:
        return x + 1

    compiled: list[tuple[int, ...]] = []

    def callback(frame: framecache.FrameView, entry: object, state: dict) -> Any:
        x = frame.f_locals["x"]
        compiled.append(tuple(x.shape))
        root = RootGuardManager()
        root.local("x").tensor_match(x)
        return framecache.CallbackResult(framecache.GuardedCode(frame.f_code.replace(), root))

    with framecache.optimize(callback):
        f(torch.ones(2, 3))
        f(torch.zeros(2, 3))
        f(torch.ones(3, 3))
        f(torch.ones(2, 3, dtype=torch.float64))
    assert compiled == [(2, 3), (3, 3), (2, 3)]
    hits = [e.hit_count for e in framecache.cache_entries(f.__code__)]
    assert sorted(hits) == [0, 0, 1]


def test_tensor_match_builder_errors() -> None:
    node = RootGuardManager().local("x")
    with pytest.raises(TypeError, match=r"tensor_match\(\) expects a torch.Tensor, got list"):
        node.tensor_match([1, 2])
    with pytest.raises(TypeError, match="dynamic_dims as an iterable of ints, got str"):
        node.tensor_match(torch.zeros(2), dynamic_dims="0")
    with pytest.raises(TypeError, match="dynamic_dims as an iterable of ints, got int"):
        node.tensor_match(torch.zeros(2), dynamic_dims=0)
    with pytest.raises(TypeError, match="expects an int index, got bool"):
        node.tensor_match(torch.zeros(2), dynamic_dims=(True,))
    with pytest.raises(ValueError, match="dim 2 is out of range for a 2-d tensor"):
        node.tensor_match(torch.zeros(2, 2), dynamic_dims=(2,))
    with pytest.raises(ValueError, match="dynamic_strides: dim -3 is out of range"):
        node.tensor_match(torch.zeros(2, 2), dynamic_strides=(-3,))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # nested tensors are a prototype and say so
        nested = torch.nested.nested_tensor([torch.randn(2), torch.randn(3)])
    with pytest.raises(ValueError, match="needs a tensor with concrete strides"):
        node.tensor_match(nested)
    with pytest.raises(ValueError, match="TENSOR_MATCH guards a value, and the root has none"):
        RootGuardManager().tensor_match(torch.zeros(2))
    assert node.num_guards() == 0


def test_tensor_match_kind_and_introspection() -> None:
    node = RootGuardManager().local("x")
    node.tensor_match(torch.zeros(2, 3, dtype=torch.int64))
    [(kind, text)] = node.leaf_guards()
    assert kind == "TENSOR_MATCH"
    assert text == (
        "TENSOR_MATCH(torch.Tensor, torch.int64, cpu, requires_grad=False, size=[2, 3], "
        "stride=[3, 1])"
    )


# --- tensor accessors --------------------------------------------------------------------


def test_tensor_size_and_stride_accessors(reader: str) -> None:
    root = RootGuardManager()
    x = root.local("x")
    x.tensor_size(1).equals_match(64)
    x.tensor_stride(0).equals_match(64)
    x.tensor_size(-2).equals_match(4)
    assert [c.source for c in x.children()] == [
        "L['x'].size()[1]",
        "L['x'].stride()[0]",
        "L['x'].size()[-2]",
    ]
    assert root.check({"x": torch.randn(4, 64)})
    size_failure, stride_failure = failures(root, x=torch.randn(4, 32))
    assert size_failure.startswith("L['x'].size()[1]: ")
    assert "64" in size_failure and "32" in size_failure
    assert stride_failure.startswith("L['x'].stride()[0]: ")
    [failure] = failures(root, x=torch.randn(5, 64))
    assert failure.startswith("L['x'].size()[-2]: ")


def test_tensor_storage_offset_accessor(reader: str) -> None:
    root = RootGuardManager()
    root.local("x").tensor_storage_offset().equals_match(64)
    base = torch.randn(8, 64)
    assert root.check({"x": base[1:]})
    [failure] = failures(root, x=base[2:])
    assert failure.startswith("L['x'].storage_offset(): ")
    assert "128" in failure


def test_tensor_accessors_fail_on_non_tensors_and_bad_indexes(reader: str) -> None:
    root = RootGuardManager()
    root.local("x").tensor_size(1).equals_match(64)
    assert failures(root, x=[1, 64]) == ["L['x'].size()[1]: expected a tensor, got list"]
    assert failures(root, x=torch.randn(64)) == [
        "L['x'].size()[1]: index 1 is out of range for a 1-d tensor"
    ]


def test_tensor_accessors_call_a_subclass_override(reader: str) -> None:
    class Reports7(torch.Tensor):
        def size(self, *args: Any) -> Any:  # type: ignore[override]
            return torch.Size([7, 7])

    root = RootGuardManager()
    root.local("x").tensor_size(0).equals_match(7)
    assert root.check({"x": torch.randn(2).as_subclass(Reports7)})
    assert not root.check({"x": torch.randn(2)})


def test_tensor_accessor_builder_errors() -> None:
    root = RootGuardManager()
    with pytest.raises(TypeError, match=r"tensor_size\(\) reads from a value"):
        root.tensor_size(0)
    with pytest.raises(TypeError, match=r"tensor_stride\(\) expects an int index, got str"):
        root.local("x").tensor_stride("0")
    with pytest.raises(TypeError, match=r"tensor_storage_offset\(\) reads from a value"):
        root.tensor_storage_offset()


# --- GLOBAL_STATE ------------------------------------------------------------------------


class RecordingFunctionMode(TorchFunctionMode):
    def __torch_function__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        return func(*args, **(kwargs or {}))


class RecordingDispatchMode(TorchDispatchMode):
    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        return func(*args, **(kwargs or {}))


def global_failure(root: RootGuardManager) -> str:
    [failure] = failures(root)
    return failure


@pytest.fixture
def state_root(reader: str) -> RootGuardManager:
    root = RootGuardManager()
    root.global_state()
    assert root.check({})
    return root


def test_global_state_grad_mode(state_root: RootGuardManager) -> None:
    with torch.no_grad():
        assert "grad mode changed: expected enabled, got disabled" in global_failure(state_root)
    assert state_root.check({})


def test_global_state_autocast(state_root: RootGuardManager) -> None:
    with torch.autocast("cpu"):
        assert "autocast (cpu) changed: expected disabled, got enabled" in global_failure(
            state_root
        )
    with torch.autocast("cpu", dtype=torch.float16, enabled=False):
        assert (
            "autocast dtype (cpu) changed: expected torch.bfloat16, got torch.float16"
            in global_failure(state_root)
        )
    assert state_root.check({})


def test_global_state_default_dtype(state_root: RootGuardManager) -> None:
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        assert "default dtype changed: expected torch.float32, got torch.float64" in global_failure(
            state_root
        )
    finally:
        torch.set_default_dtype(previous)
    assert state_root.check({})


def test_global_state_deterministic_algorithms(state_root: RootGuardManager) -> None:
    torch.use_deterministic_algorithms(True)
    try:
        assert "deterministic algorithms changed: expected disabled, got enabled" in (
            global_failure(state_root)
        )
        torch.use_deterministic_algorithms(False, warn_only=True)
        assert "deterministic algorithms warn_only changed" in global_failure(state_root)
    finally:
        torch.use_deterministic_algorithms(False)
    assert state_root.check({})


def test_global_state_torch_function_mode(state_root: RootGuardManager) -> None:
    with RecordingFunctionMode():
        failure = global_failure(state_root)
        assert "torch function mode stack changed: expected [], got [" in failure
        assert "RecordingFunctionMode]" in failure
    assert state_root.check({})


def test_global_state_mode_types_not_instances(reader: str) -> None:
    with RecordingFunctionMode():
        root = RootGuardManager()
        root.global_state()
        assert root.check({})
    with RecordingFunctionMode():  # a new instance of the same type
        assert root.check({})
    assert not root.check({})


def test_global_state_dispatch_mode(state_root: RootGuardManager) -> None:
    with RecordingDispatchMode():
        failure = global_failure(state_root)
        assert "dispatch mode stack changed: expected [], got [" in failure
        assert "RecordingDispatchMode]" in failure
    assert state_root.check({})


def test_global_state_default_device(state_root: RootGuardManager) -> None:
    with torch.device("meta"):
        assert "default device changed: expected cpu, got meta" in global_failure(state_root)
        inner = RootGuardManager()
        inner.global_state()
        assert inner.check({})
    with torch.device("meta"):
        assert inner.check({})
    with torch.device("cpu"):
        assert "default device changed: expected meta, got cpu" in global_failure(inner)
        # The same default device as without a DeviceContext, but one is on the stack.
        assert global_failure(state_root).endswith(
            "torch function mode stack changed: expected [], "
            "got [torch.utils._device.DeviceContext]"
        )
    torch.set_default_device("meta")
    try:
        assert "default device changed: expected cpu, got meta" in global_failure(state_root)
    finally:
        torch.set_default_device(None)
    assert state_root.check({})


def test_global_state_torch_function_disabled(state_root: RootGuardManager) -> None:
    with torch._C.DisableTorchFunction():
        assert "torch function changed: expected enabled, got disabled" in global_failure(
            state_root
        )
    with torch._C.DisableTorchFunctionSubclass():
        assert "got disabled for subclasses" in global_failure(state_root)
    assert state_root.check({})


def test_global_state_reports_every_change(state_root: RootGuardManager) -> None:
    with torch.no_grad(), torch.autocast("cpu"):
        failure = global_failure(state_root)
    assert "grad mode changed" in failure
    assert "; autocast (cpu) changed" in failure


def test_global_state_is_read_per_thread(state_root: RootGuardManager) -> None:
    # Grad mode is thread-local in torch: a thread's check sees its own state.
    seen: list[bool] = []

    def in_thread() -> None:
        seen.append(state_root.check({}))
        with torch.no_grad():
            seen.append(state_root.check({}))

    with torch.no_grad():
        worker = threading.Thread(target=in_thread)
        worker.start()
        worker.join()
        assert not state_root.check({})
    assert seen == [True, False]


def test_global_state_readers_agree() -> None:
    root = RootGuardManager()
    root.global_state()
    scenarios: list[Callable[[], Any]] = [
        torch.no_grad,
        lambda: torch.autocast("cpu"),
        lambda: torch.device("meta"),
        RecordingFunctionMode,
        RecordingDispatchMode,
        torch._C.DisableTorchFunction,
    ]
    previous = _guards.set_torch_fast_path(True)
    try:
        for scenario in scenarios:
            seen = []
            for fast in (True, False):
                _guards.set_torch_fast_path(fast)
                with scenario():
                    seen.append((root.check({}), root.check_verbose({}).failures))
            assert seen[0] == seen[1]
            assert seen[0][0] is False
    finally:
        _guards.set_torch_fast_path(previous)


def test_global_state_builder_errors() -> None:
    root = RootGuardManager()
    with pytest.raises(TypeError, match=r"global_state\(\) guards torch's ambient state"):
        root.local("x").global_state()
    root.global_state()
    [(kind, text)] = root.leaf_guards()
    assert kind == "GLOBAL_STATE"
    assert text.startswith("GLOBAL_STATE(grad enabled, autocast cpu disabled torch.bfloat16")


# --- attributes of a torch.nn.Module ---------------------------------------------------
# nn.Module defines __getattr__ (parameters, buffers and submodules live in its own
# dicts): instance attributes such as `training` are read directly from the instance's
# storage, the rest goes through __getattr__ as getattr does.


def test_module_attributes_through_the_attr_fast_path() -> None:
    lin = torch.nn.Linear(3, 2)
    root = RootGuardManager()
    m = root.local("m")
    m.type_match(torch.nn.Linear)
    m.attr("training").true_match()
    m.attr("in_features").equals_match(3)
    weight = m.attr("weight")
    weight.id_match(lin.weight)
    for _ in range(3):
        assert root.check({"m": lin})
    lin.eval()
    assert failures(root, m=lin) == ["L['m'].training: expected True, got False"]
    lin.train()
    assert root.check({"m": lin})
    lin.weight = torch.nn.Parameter(torch.zeros(2, 3))  # a new parameter in _parameters
    assert not root.check({"m": lin})
    lin.in_features = 4
    assert len(failures(root, m=lin)) == 2
    other = torch.nn.Linear(3, 2)
    assert not root.check({"m": other})  # another object's weight
    root2 = RootGuardManager()
    root2.local("m").attr("weight").id_match(other.weight)
    assert root2.check({"m": other})
    del other.weight  # gone from _parameters: __getattr__ raises
    assert not root2.check({"m": other})


# --- DICT_VERSION over a module tree -----------------------------------------------------


def module_tree(lin: torch.nn.Linear) -> tuple[RootGuardManager, Any, Any]:
    """The tree of one layer as a module's dicts reach it: attributes, then parameters."""
    root = RootGuardManager()
    node = root.local("layer")
    node.type_match(torch.nn.Linear)
    attrs = node.obj_dict().dict_version()
    attrs.dict_item("in_features").equals_match(lin.in_features)
    attrs.dict_item("out_features").equals_match(lin.out_features)
    attrs.dict_item("training").equals_match(lin.training)
    params = attrs.dict_item("_parameters").dict_version()
    params.dict_item("weight").tensor_match(lin.weight)
    params.dict_item("bias").tensor_match(lin.bias)
    buffers = attrs.dict_item("_buffers").dict_version()
    buffers.dict_item("scale").tensor_match(lin.scale)
    return root, attrs, params


def test_dict_version_skips_a_module_s_values_but_still_reads_its_tensors() -> None:
    # A tensor's metadata changes in place without its dict changing: the memo of
    # an unchanged module dict skips the int attributes, never the tensors.
    lin = torch.nn.Linear(3, 2)
    lin.register_buffer("scale", torch.ones(4))
    root, attrs, params = module_tree(lin)
    for _ in range(3):
        assert root.check({"layer": lin})
    assert attrs.dict_version_reruns == 2  # the _parameters and _buffers dicts
    assert params.dict_version_reruns == 2  # weight and bias
    lin.scale.resize_(5)
    assert not root.check({"layer": lin})
    lin.scale.resize_(4)
    assert root.check({"layer": lin})
    lin.weight.requires_grad_(False)
    assert not root.check({"layer": lin})
    lin.weight.requires_grad_(True)
    assert root.check({"layer": lin})
    with torch.no_grad():
        lin.bias.data = torch.zeros(2, dtype=torch.float64)
    assert not root.check({"layer": lin})
    lin.bias = torch.nn.Parameter(torch.zeros(2))
    assert root.check({"layer": lin})
    lin.in_features = 4
    assert not root.check({"layer": lin})
    lin.in_features = 3
    assert root.check({"layer": lin})
    lin.eval()
    assert not root.check({"layer": lin})
    lin.train()
    assert root.check({"layer": lin})
    assert attrs.dict_version_reruns == 2


# --- the root's tensor pass ------------------------------------------------------------------


def test_tensor_pass_gives_the_walk_s_answers() -> None:
    xs = [torch.zeros(2, 3), torch.ones(4), torch.zeros(1, 2, dtype=torch.float64)]
    root = RootGuardManager()
    nodes = []
    for i, t in enumerate(xs):
        node = root.local(f"x{i}")
        node.tensor_match(t)
        nodes.append(node)
    root.no_tensor_aliasing(nodes)
    root.local("n").type_match(int)
    root.global_state()
    assert root.tensor_pass_size() == 3
    good = {"x0": xs[0], "x1": xs[1], "x2": xs[2], "n": 1}
    assert root.check(good)
    assert root.check({**good, "x0": torch.ones(2, 3)})
    assert not root.check({**good, "x1": torch.ones(5)})
    assert not root.check({**good, "x2": xs[0]})  # wrong metadata
    assert not root.check({**good, "x2": xs[2].t()})  # wrong strides
    assert not root.check({**good, "n": "1"})
    assert not root.check({k: v for k, v in good.items() if k != "x1"})  # unbound
    # Aliasing: the same tensor under two names fails, and the relation is reset after.
    y = torch.zeros(4)
    alias_root = RootGuardManager()
    a, b = alias_root.local("a"), alias_root.local("b")
    a.tensor_match(y)
    b.tensor_match(y)
    alias_root.no_tensor_aliasing([a, b])
    assert alias_root.tensor_pass_size() == 2
    assert not alias_root.check({"a": y, "b": y})
    assert alias_root.check({"a": y, "b": torch.zeros(4)})
    assert not alias_root.check({"a": y, "b": y})
    info = alias_root.check_verbose({"a": y, "b": y})
    assert info.failures == ["L['b']: L['a'] and L['b'] are the same tensor"]
    # A failing tensor counts as a failure of its accessor, as in the walk.
    assert sum(alias_root.fail_counts()) >= 2
    with torch.inference_mode():
        assert not alias_root.check({"a": torch.zeros(4), "b": torch.zeros(4)})


def test_tensor_pass_takes_only_plain_tensor_nodes() -> None:
    t = torch.zeros(3)
    root = RootGuardManager()
    root.local("a").tensor_match(t)
    assert root.tensor_pass_size() == 1
    root.local("b").tensor_match(t)
    root.local("b").not_none()  # a third kind of leaf: walked
    root.local("c").tensor_match(t)
    root.local("c").tensor_size(0).equals_match(3)  # an accessor below: walked
    assert root.tensor_pass_size() == 1
    assert root.check({"a": t, "b": t, "c": t})
    assert not root.check({"a": t, "b": t, "c": torch.zeros(4)})
    # Adding a guard to a node in the pass takes it out of the pass.
    root.local("a").not_none()
    assert root.tensor_pass_size() == 0
    assert root.check({"a": t, "b": t, "c": t})
    assert not root.check({"a": None, "b": t, "c": t})


# --- the batched tensor pass (one call into _torch_C per check) ------------------------------


def batch_root(xs: list[torch.Tensor]) -> RootGuardManager:
    """A root of TENSOR_MATCH + NO_TENSOR_ALIASING over ``x0..xN``, with ambient state."""
    root = RootGuardManager()
    nodes = []
    for i, t in enumerate(xs):
        node = root.local(f"x{i}")
        node.tensor_match(t, dynamic_dims=(0,) if i == 1 else ())
        nodes.append(node)
    root.no_tensor_aliasing(nodes)
    root.global_state()
    return root


def test_tensor_batch_agrees_with_the_walk_and_the_python_reader() -> None:
    w = torch.nn.Parameter(torch.zeros(2, 2))
    xs = [torch.zeros(2, 3), torch.ones(4, 5), w, torch.zeros(3, dtype=torch.int64)]
    root = batch_root(xs)
    assert root.tensor_pass_size() == len(xs)
    good = {f"x{i}": t for i, t in enumerate(xs)}
    variants: list[tuple[str, dict[str, object], bool]] = [
        ("same", good, True),
        ("other tensors, same metadata", {**good, "x0": torch.ones(2, 3)}, True),
        ("dynamic first size", {**good, "x1": torch.ones(9, 5)}, True),
        ("static second size", {**good, "x1": torch.ones(4, 6)}, False),
        ("dtype", {**good, "x0": torch.zeros(2, 3, dtype=torch.float64)}, False),
        ("strides", {**good, "x0": torch.zeros(3, 2).t()}, False),
        ("ndim", {**good, "x3": torch.zeros(3, 1, dtype=torch.int64)}, False),
        ("requires_grad", {**good, "x0": torch.zeros(2, 3, requires_grad=True)}, False),
        ("Tensor for Parameter", {**good, "x2": torch.zeros(2, 2)}, False),
        ("Parameter for Tensor", {**good, "x0": torch.nn.Parameter(torch.zeros(2, 3))}, False),
        ("subclass", {**good, "x0": torch.zeros(2, 3).as_subclass(Subclass)}, False),
        ("not a tensor", {**good, "x3": [0, 0, 0]}, False),
        ("meta device", {**good, "x0": torch.zeros(2, 3, device="meta")}, False),
    ]
    alias = torch.zeros(2, 3)
    variants.append(("alias", {**good, "x0": alias, "x1": alias}, False))  # metadata differs too
    same = torch.zeros(3, dtype=torch.int64)
    two = [torch.zeros(3, dtype=torch.int64), torch.zeros(3, dtype=torch.int64)]
    root2 = batch_root(two)
    for name, f_locals, expected in variants:
        walk = root.check_verbose(f_locals).result
        assert root.check(f_locals) is expected is walk, name
        previous = _guards.set_torch_fast_path(False)
        try:
            assert root.check(f_locals) is expected, name
        finally:
            _guards.set_torch_fast_path(previous)
    # Pure aliasing: everything matches but one tensor is under two names; the
    # relation is reset after each check, so the next distinct pair passes.
    for _ in range(3):
        assert not root2.check({"x0": same, "x1": same})
        assert root2.check({"x0": same, "x1": two[1]})
    assert root2.check_verbose({"x0": same, "x1": same}).failures == [
        "L['x1']: L['x0'] and L['x1'] are the same tensor"
    ]
    with torch.inference_mode():
        assert not root.check(good)
    with torch.no_grad():
        assert not root.check(good)  # the ambient state, checked before the pass
    assert root.check(good)
    # A failing tensor counts as a failure of its accessor, as in the per-item pass.
    before = sum(root.fail_counts())
    assert not root.check({**good, "x0": torch.zeros(5)})
    assert sum(root.fail_counts()) == before + 1


def test_tensor_batch_relation_with_members_outside_the_pass() -> None:
    t = torch.zeros(3)
    root = RootGuardManager()
    a, b, c = root.local("a"), root.local("b"), root.local("c")
    for node in (a, b, c):
        node.tensor_match(t)
    c.not_none()  # c is walked, not in the pass: the relation is not decided in bulk
    root.no_tensor_aliasing([a, b, c])
    assert root.tensor_pass_size() == 2
    u, v, w = torch.zeros(3), torch.zeros(3), torch.zeros(3)
    for _ in range(2):
        assert root.check({"a": u, "b": v, "c": w})
        assert not root.check({"a": u, "b": v, "c": u})
        assert not root.check({"a": u, "b": u, "c": w})
    # OBJECT_ALIASING between two pass members: decided through the relation.
    root2 = RootGuardManager()
    p, q = root2.local("p"), root2.local("q")
    p.tensor_match(t)
    q.tensor_match(t)
    root2.object_aliasing(p, q)
    assert root2.tensor_pass_size() == 2
    for _ in range(2):
        assert root2.check({"p": u, "q": u})
        assert not root2.check({"p": u, "q": v})


def test_tensor_batch_through_the_hook_with_fast_locals_and_cells() -> None:
    def make() -> Callable[..., torch.Tensor]:
        c = torch.ones(2)

        def f(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            return x.sum() + y.sum() + c.sum()

        return f

    f = make()
    compiled = []

    def callback(frame: framecache.FrameView, entry: object, state: dict) -> Any:
        loc = frame.f_locals
        compiled.append(1)
        root = RootGuardManager()
        nodes = [root.local(n) for n in ("x", "y", "c")]
        for node, n in zip(nodes, ("x", "y", "c"), strict=True):
            node.tensor_match(loc[n])
        root.no_tensor_aliasing(nodes)
        return framecache.CallbackResult(framecache.GuardedCode(frame.f_code.replace(), root))

    x, y = torch.zeros(2), torch.zeros(2)
    with framecache.optimize(callback):
        f(x, y)
        f(torch.ones(2), torch.ones(2))  # hit
        f(x, x)  # aliased: recompiles
        f(torch.ones(3), y)  # another size: recompiles
    assert len(compiled) == 3
    hits = sorted(e.hit_count for e in framecache.cache_entries(f.__code__))
    assert hits == [0, 0, 1]


def test_tensor_batch_survives_a_dict_key_that_drops_values() -> None:
    # The check view reads locals from a dict; a key whose __eq__ runs on a
    # hash collision may delete values the batch read earlier. They are held.
    result = run_python(
        """
        import gc, torch
        from framecache.guards import RootGuardManager

        xs = [torch.zeros(3) for _ in range(4)]
        root = RootGuardManager()
        nodes = [root.local(f"x{i}") for i in range(4)]
        for node, t in zip(nodes, xs):
            node.tensor_match(t)
        root.no_tensor_aliasing(nodes)

        class Evil:
            def __init__(self, d):
                self.d = d
            def __hash__(self):
                return hash("x3")
            def __eq__(self, other):
                for k in ("x0", "x1", "x2"):
                    self.d[k] = torch.ones(3)  # drops the tensor read before
                gc.collect()
                return False

        results = []
        for _ in range(20):
            d = {f"x{i}": torch.zeros(3) for i in range(3)}
            d[Evil(d)] = 0
            d["x3"] = torch.zeros(3)
            results.append(root.check(d))
        print(results.count(True), results.count(False))
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["20", "0"]
