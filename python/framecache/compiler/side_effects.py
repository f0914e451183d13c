"""Detecting Python side effects that a captured graph could not replay.

Capture runs the function once on fake tensors; what the graph records is tensor
computation. A write to a global, a nonlocal, an attribute or an outside container, or
a call such as ``print`` happens once during capture and never again when the graph
runs, so a frame that does any of that must run normally instead.

Two checks, both conservative (when in doubt, the frame is not captured):

* static, per user code object executed during capture: global/nonlocal writes, stores
  into containers that are not provably the frame's own, in-place operators on
  list/dict/set arguments;
* attribute writes (``obj.x = v``, ``del obj.x``) on objects that existed before: an
  object's attributes set for the duration of a call and restored before it returns
  (transformers sets and restores ``config.is_causal`` around every forward) have no net
  effect, which a graph replays by doing nothing. Each write's original value is noted
  just before it runs (an opcode event); at the end of the capture every written
  attribute must hold its original again, or the frame is not captured and every written
  attribute is put back (``AttributeWrites``). What is read from such an attribute while
  it is changed is no input: the capture computed it (the guard plan asks ``changed``).
  An object whose ``__init__`` ran during the capture on an empty instance dict was made
  by it: writes to it are the frame's own state. Third-party code (below) is held to
  this check too, though to none of the others;
* dynamic, through a profile function while capturing (``_profile``, behind a filter in C
  that answers library code's events itself): every C function called from
  user code must be on an allow-list (torch, math, pure builtins, read-only methods),
  and a mutating method of a list/dict/set must act on a container the calling frame
  built itself.

The monitor also runs a line trace function in user frames (``sys.settrace``, during the
capture only, and only while a user frame runs) for whoever records what the capture
reads (compiler/reads.py).
"""

from __future__ import annotations

import dis
import os
import sys
import sysconfig
import types
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch

from .. import _C
from . import reads

_TORCH_DIR = os.path.dirname(os.path.abspath(torch.__file__)) + os.sep
_FRAMECACHE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep


def _site_dirs() -> tuple[str, ...]:
    """Where third-party packages are installed: purelib, platlib and site's own list."""
    import site

    dirs = {sysconfig.get_paths().get(k) for k in ("purelib", "platlib")}
    dirs.update(getattr(site, "getsitepackages", list)())
    user_site = getattr(site, "getusersitepackages", lambda: None)()
    dirs.add(user_site)
    dirs.update(p for p in sys.path if os.path.basename(p) in ("site-packages", "dist-packages"))
    return tuple(sorted({os.path.abspath(d) + os.sep for d in dirs if d}))


# With a pyenv or system Python, site-packages sits under the stdlib directory: the
# standard library is that directory minus the site directories, so that third-party
# code is user code (its reads recorded and guarded, its side effects judged) whatever
# the install layout.
_STDLIB_DIRS = tuple(
    {os.path.abspath(sysconfig.get_paths()[k]) + os.sep for k in ("stdlib", "platstdlib")}
)
_SITE_DIRS = _site_dirs()


def _torch_dependency_dirs() -> tuple[str, ...]:
    """Packages that run during a capture without being the model's code: library.

    torch's internals run its dependencies while tracing (symbolic shapes use sympy), and
    test and tooling hooks run inside any frame (pytest's warning capture reads its stash
    when torch warns, coverage and hypothesis trace): their reads are no part of what a
    compiled graph depends on, and guarding them would pin harness objects that no other
    process has (the disk cache could then store nothing).
    """
    import importlib.util

    dirs = []
    for name in (
        "sympy",
        "mpmath",
        "networkx",
        "jinja2",
        "markupsafe",
        "filelock",
        "fsspec",
        "typing_extensions",
        "triton",
        "optree",
        "_pytest",
        "pytest",
        "pluggy",
        "xdist",
        "hypothesis",
        "coverage",
        "redis",
    ):
        try:
            spec = importlib.util.find_spec(name)
        except (ImportError, ValueError):
            continue
        if spec is not None and spec.origin and spec.origin != "built-in":
            origin = os.path.abspath(spec.origin)
            dirs.append(
                os.path.dirname(origin) + os.sep if spec.submodule_search_locations else origin
            )
    return tuple(dirs)


_TORCH_DEPENDENCY_DIRS = _torch_dependency_dirs()

_PURE_BUILTINS = {
    id(f)
    for f in (
        len,
        isinstance,
        issubclass,
        getattr,
        hasattr,
        vars,  # the object's own __dict__ (writes into it are checked as stores)
        callable,
        id,
        hash,
        abs,
        min,
        max,
        sum,
        any,
        all,
        round,
        divmod,
        pow,
        sorted,
        iter,
        next,
        repr,
        format,
        ord,
        chr,
        __import__,
    )
}
_READ_ONLY_METHODS = {
    list: {"index", "count", "copy", "__getitem__", "__len__", "__contains__", "__iter__"},
    dict: {
        "get",
        "keys",
        "values",
        "items",
        "copy",
        "__getitem__",
        "__len__",
        "__contains__",
        "__iter__",
    },
    set: {
        "copy",
        "issubset",
        "issuperset",
        "isdisjoint",
        "union",
        "intersection",
        "difference",
        "symmetric_difference",
        "__contains__",
        "__len__",
        "__iter__",
    },
}
_MUTABLE_CONTAINERS = (list, dict, set, bytearray)
_FRESH_PRODUCERS = {
    "BUILD_LIST",
    "BUILD_MAP",
    "BUILD_SET",
    "BUILD_CONST_KEY_MAP",
    "LIST_EXTEND",
    "SET_UPDATE",
    "DICT_UPDATE",
    "DICT_MERGE",
}


def is_third_party_code(code: types.CodeType) -> bool:
    """Code installed in a site directory: its reads are guarded; of its side effects only
    attribute writes to objects that existed before the capture are judged.

    Judging it like the user's own makes captures fall back on bookkeeping that packages
    and tools do (import hooks that note what they checked, registries, lazy caches). An
    attribute write to the caller's object is no bookkeeping: transformers' KV cache stores
    each step's keys that way, and the capture, which runs it on fake tensors, would leave
    them on the caller's cache where a graph never stores anything.
    """
    return code.co_filename.startswith(_SITE_DIRS) and not is_library_code(code)


def is_library_code(code: types.CodeType) -> bool:
    """Code of torch, framecache or the standard library: traced through, never judged.

    Third-party packages (site-packages, dist-packages) are not library code: their
    reads are guarded and their side effects judged like the user's own.
    """
    filename = code.co_filename
    if code.co_qualname.startswith("__create_fn__"):
        # Methods that dataclasses and namedtuples generate with exec().
        return True
    if filename.startswith("<") and not filename.startswith("<framecache"):
        # <eval_with_key>, <string>, <frozen ...>: generated or interactive code.
        return filename.startswith(("<eval_with_key", "<frozen"))
    if filename.startswith((_TORCH_DIR, _FRAMECACHE_DIR, *_TORCH_DEPENDENCY_DIRS)):
        return True
    return filename.startswith(_STDLIB_DIRS) and not filename.startswith(_SITE_DIRS)


class SideEffectAbort(BaseException):
    """Raised from the profile hook to stop a capture before a side effect happens.

    A BaseException, so that ``except Exception`` in user code does not swallow it.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass
class CodeReads:
    """Globals and free variables a code object may read, from its bytecode."""

    global_chains: list[tuple[str, ...]] = field(default_factory=list)
    freevars_read: list[str] = field(default_factory=list)


def _instructions(code: types.CodeType) -> list[dis.Instruction]:
    return [i for i in dis.get_instructions(code) if i.opname != "CACHE"]


def fresh_locals(code: types.CodeType) -> set[str]:
    """Locals that only ever hold containers built by this code itself.

    A ``**kwargs`` parameter is one: every call makes a new dict for it.
    """
    instrs = _instructions(code)
    n_args = code.co_argcount + code.co_kwonlyargcount
    varargs = bool(code.co_flags & 0x04)
    n_args += varargs + bool(code.co_flags & 0x08)
    args = set(code.co_varnames[:n_args])
    candidates: dict[str, bool] = {}
    if code.co_flags & 0x08:
        varkw = code.co_varnames[code.co_argcount + code.co_kwonlyargcount + varargs]
        args.discard(varkw)
        candidates[varkw] = True
    for k, ins in enumerate(instrs):
        if ins.opname == "STORE_FAST":
            ok = k > 0 and instrs[k - 1].opname in _FRESH_PRODUCERS
            candidates[ins.argval] = candidates.get(ins.argval, True) and ok
    return {name for name, ok in candidates.items() if ok and name not in args}


_CONSTRUCTORS = frozenset({"list", "dict", "set", "bytearray"})


def _builds_fresh(instrs: list[dis.Instruction], k: int, f_globals: dict[str, Any] | None) -> bool:
    """Whether ``instrs[k]`` (right before a STORE_FAST) leaves a container made right here:
    a BUILD_*/update instruction, or a call of the builtin ``list``/``dict``/``set``/
    ``bytearray`` (``args = list(args)``), which copies whatever it is given."""
    ins = instrs[k]
    if ins.opname in _FRESH_PRODUCERS:
        return True
    if ins.opname != "CALL" or f_globals is None:
        return False
    total, argc = 0, ins.arg or 0
    for j in range(k - 1, -1, -1):
        prev = instrs[j]
        if prev.opname in ("PRECALL", "KW_NAMES"):
            continue  # 3.11's call prologue
        if prev.is_jump_target or "JUMP" in prev.opname:
            return False
        try:
            total += dis.stack_effect(prev.opcode, prev.arg, jump=False)
        except ValueError:
            return False
        if total >= argc + 1:
            # The instruction that pushed the callee (3.11-3.13 push a NULL beside a global
            # loaded for a call: one more slot).
            return (
                prev.opname == "LOAD_GLOBAL"
                and total in (argc + 1, argc + 2)
                and prev.argval in _CONSTRUCTORS
                and prev.argval not in f_globals
            )
    return False


def _fresh_at(
    instrs: list[dis.Instruction], i: int, name: str, f_globals: dict[str, Any] | None
) -> bool:
    """Whether local ``name``, stored into at ``instrs[i]``, was last bound in the same
    straight run of code to a container made there (``args = list(args); args[0] = v``)."""
    for j in range(i - 1, 0, -1):
        ins = instrs[j]
        if ins.opname == "STORE_FAST" and ins.argval == name:
            return _builds_fresh(instrs, j - 1, f_globals)
        if ins.is_jump_target or "JUMP" in ins.opname or ins.opname in _NAME_UNBINDS:
            return False
    return False


_NAME_UNBINDS = frozenset({"DELETE_FAST", "LOAD_FAST_AND_CLEAR"})


def attribute_write_target(
    instrs: list[dis.Instruction], i: int
) -> tuple[str, str, tuple[str, ...]] | None:
    """``(root kind, root name, attribute steps)`` of the object that the STORE_ATTR or
    DELETE_ATTR at ``instrs[i]`` writes to, when the instructions right before it load it
    as a plain chain (``self.config``: LOAD_FAST self, LOAD_ATTR config); else None.

    Root kinds: ``"L"`` a frame variable (fast local, cell, free variable), ``"G"`` a
    global. The chain is re-read on the frame's variables just before the write runs.

    An augmented assignment (``self.n += k``: the chain, ``COPY 1``, ``LOAD_ATTR n``, the
    operand, ``BINARY_OP``, ``SWAP 2``, ``STORE_ATTR n``) writes to the chain before its
    ``COPY``.
    """
    if (
        i >= 3
        and instrs[i - 1].opname == "SWAP"
        and instrs[i - 1].arg == 2
        and instrs[i - 2].opname == "BINARY_OP"
    ):
        name = instrs[i].argval
        for j in range(i - 3, 0, -1):
            ins = instrs[j]
            if (
                ins.opname == "COPY"
                and ins.arg == 1
                and instrs[j + 1].opname == "LOAD_ATTR"
                and instrs[j + 1].argval == name
            ):
                return attribute_write_target(instrs, j)
        return None
    steps: list[str] = []
    for j in range(i - 1, -1, -1):
        ins = instrs[j]
        if ins.is_jump_target and j != i - 1 and steps == []:
            return None
        if ins.opname == "LOAD_ATTR":
            if sys.version_info >= (3, 12) and (ins.arg or 0) & 1:
                return None  # a method load pushes two values
            steps.append(ins.argval)
            continue
        if ins.opname in ("LOAD_FAST", "LOAD_FAST_CHECK", "LOAD_DEREF"):
            return "L", ins.argval, tuple(reversed(steps))
        if ins.opname == "LOAD_GLOBAL" and not (sys.version_info >= (3, 11) and (ins.arg or 0) & 1):
            return "G", ins.argval, tuple(reversed(steps))
        return None
    return None


_KEY_ROOTS = frozenset({"LOAD_CONST", "LOAD_FAST", "LOAD_FAST_CHECK", "LOAD_DEREF"})


def container_write_target(
    instrs: list[dis.Instruction], i: int
) -> tuple[str, str, tuple[str, ...]] | None:
    """``(root kind, root name, attribute steps)`` of the container that the STORE_SUBSCR
    or DELETE_SUBSCR at ``instrs[i]`` writes to, when it is an attribute of an object
    (``self.cache[k] = v``, at least one step) and the key a plain chain (a constant, a
    variable, their attributes); else None."""
    j = i - 1
    while j >= 0 and instrs[j].opname == "LOAD_ATTR":
        if sys.version_info >= (3, 12) and (instrs[j].arg or 0) & 1:
            return None  # a method load pushes two values
        j -= 1
    if j < 1 or instrs[j].opname not in _KEY_ROOTS or instrs[j].is_jump_target:
        return None
    found = attribute_write_target(instrs, j)
    return found if found is not None and found[2] else None


def _container_of_store(instrs: list[dis.Instruction], i: int) -> str | None:
    """The local name a STORE_SUBSCR at ``instrs[i]`` stores into, if it is a plain local."""
    total = 0
    for j in range(i - 1, -1, -1):
        ins = instrs[j]
        if ins.is_jump_target or "JUMP" in ins.opname or ins.opname.startswith("POP_JUMP"):
            return None
        try:
            effect = dis.stack_effect(ins.opcode, ins.arg, jump=False)
        except ValueError:
            return None
        before = total
        total += effect
        if total == 2 and before == 1:
            return ins.argval if ins.opname == "LOAD_FAST" and effect == 1 else None
        if total > 2:
            return None
    return None


def static_violations(
    code: types.CodeType, tensor_args: set[str], f_globals: dict[str, Any] | None = None
) -> list[str]:
    """Reasons why running ``code`` may have effects a graph cannot replay.

    Attribute writes whose object is a plain chain (``attribute_write_target``) are not
    among them: they are followed as they run (``AttributeWrites``). ``f_globals``, the
    globals the code runs with, tells a builtin ``list(...)`` from a global of that name.
    """
    out: list[str] = []
    where = f"{code.co_qualname} ({code.co_filename}:{code.co_firstlineno})"
    free = set(code.co_freevars)
    fresh = fresh_locals(code)
    instrs = _instructions(code)
    for i, ins in enumerate(instrs):
        op = ins.opname
        if op in ("STORE_GLOBAL", "DELETE_GLOBAL"):
            out.append(f"{where} assigns the global {ins.argval!r}")
        elif op in ("STORE_DEREF", "DELETE_DEREF") and ins.argval in free:
            out.append(f"{where} assigns the nonlocal {ins.argval!r}")
        elif op in ("STORE_ATTR", "DELETE_ATTR"):
            if attribute_write_target(instrs, i) is None:
                out.append(f"{where} sets the attribute .{ins.argval}")
        elif op in ("STORE_SUBSCR", "DELETE_SUBSCR"):
            target = _container_of_store(instrs, i)
            if target is None or (
                target not in fresh
                and target not in tensor_args
                and not _fresh_at(instrs, i, target, f_globals)
            ):
                what = f"{target!r}" if target else "a container it did not create"
                out.append(f"{where} stores into {what}")
        elif op in ("YIELD_VALUE", "SEND", "ASYNC_GEN_WRAP"):
            out.append(f"{where} is a generator or coroutine")
    return out


def code_reads(code: types.CodeType) -> CodeReads:
    """Global attribute chains (``torch.nn.functional``) and free variables ``code`` reads."""
    reads = CodeReads()
    instrs = _instructions(code)
    free = set(code.co_freevars)
    for k, ins in enumerate(instrs):
        if ins.opname in ("LOAD_GLOBAL", "LOAD_NAME"):
            chain = [ins.argval]
            for nxt in instrs[k + 1 :]:
                if nxt.opname in ("LOAD_ATTR", "LOAD_METHOD"):
                    chain.append(nxt.argval)
                else:
                    break
            reads.global_chains.append(tuple(chain))
        elif ins.opname in ("LOAD_DEREF", "LOAD_CLASSDEREF") and ins.argval in free:
            # ``__class__`` is zero-argument super()'s cell, filled once when the class is
            # made: no input. 3.12+ loads it with LOAD_DEREF (3.11's super() reads it in C),
            # which made every method calling super() a closure to cover.
            if ins.argval != "__class__" and ins.argval not in reads.freevars_read:
                reads.freevars_read.append(ins.argval)
    return reads


@dataclass
class ExecutedCode:
    """A user code object that ran during capture, with the globals it ran with."""

    code: types.CodeType
    f_globals: dict[str, Any]
    function: types.FunctionType | None


_ABSENT = object()
# (root kind, root name, attribute steps, the attribute written, or None for a store into
# the container the chain reaches).
_WriteTarget = tuple[str, str, tuple[str, ...], str | None]
_SCALARS = (bool, int, float, complex, str, bytes, type(None))


def _current(obj: Any, name: str) -> Any:
    try:
        return getattr(obj, name, _ABSENT)
    except Exception:
        return _ABSENT


def _same(a: Any, b: Any) -> bool:
    return a is b or (type(a) is type(b) and type(a) in _SCALARS and a == b)


def _same_contents(container: Any, before: Any) -> bool:
    """Whether a dict or list holds what its shallow copy ``before`` holds, in order."""
    if len(container) != len(before):
        return False
    if type(container) is dict:
        return list(container) == list(before) and all(
            _same(container[k], before[k]) for k in before
        )
    return all(_same(a, b) for a, b in zip(container, before, strict=True))


class AttributeWrites:
    """Attributes that a capture's judged code wrote, with their values from before.

    Keyed by object identity (the objects are kept alive here for the capture's duration).
    """

    def __init__(self) -> None:
        self._original: dict[tuple[int, str], tuple[Any, Any]] = {}
        # Objects made during the capture (their __init__ ran in it, on an empty instance
        # dict): what is written to them is the frame's own state, made anew when the
        # frame runs, not a side effect. Kept alive so that their ids stay theirs.
        self._fresh: dict[int, Any] = {}

        # Dicts and lists held by such objects' attributes that code stored into
        # (``cache.is_updated[i] = True``), with a shallow copy from before the first store
        # and the type of the object holding them.
        self._containers: dict[int, tuple[Any, Any, str]] = {}

    def __bool__(self) -> bool:
        return bool(self._original) or bool(self._containers)

    def before_container_write(self, container: Any, owner: Any) -> None:
        """Note the contents of ``container`` (an attribute of ``owner``) just before code
        stores into it or deletes from it (the first store counts)."""
        key = id(container)
        if key in self._containers or id(owner) in self._fresh:
            return
        if type(container) is dict:
            self._containers[key] = (container, dict(container), type(owner).__name__)
        elif type(container) is list:
            self._containers[key] = (container, list(container), type(owner).__name__)

    def changed_containers(self) -> list[tuple[Any, str]]:
        """(container, owner's type name) of the noted containers whose contents differ
        from their copies (other keys, or another object under a key)."""
        return [
            (container, owner)
            for container, before, owner in self._containers.values()
            if not _same_contents(container, before)
        ]

    def note_fresh(self, obj: Any) -> None:
        """``obj`` was made during the capture (see ``_fresh``)."""
        self._fresh[id(obj)] = obj

    def before_write(self, obj: Any, name: str) -> None:
        """Note ``obj.name`` as it is just before code writes it (the first write counts)."""
        key = (id(obj), name)
        if key not in self._original:
            self._original[key] = (obj, _current(obj, name))

    def changed(self, obj: Any, name: str) -> bool:
        """Whether ``obj.name`` was written and does not hold its original now."""
        entry = self._original.get((id(obj), name))
        return entry is not None and not _same(_current(obj, name), entry[1])

    def unrestored(self) -> list[tuple[Any, str]]:
        """The written attributes of objects that existed before the capture that do not
        hold their original values."""
        return [
            (obj, name)
            for (key, name), (obj, before) in self._original.items()
            if key not in self._fresh and not _same(_current(obj, name), before)
        ]

    def undo(self) -> None:
        """Put back every written attribute's original value (or remove it again), and
        every noted container's contents."""
        for container, _ in self.changed_containers():
            before = self._containers[id(container)][1]
            if type(container) is dict:
                container.clear()
                container.update(before)
            else:
                container[:] = before
        for obj, name in self.unrestored():
            before = self._original[(id(obj), name)][1]
            try:
                if before is _ABSENT:
                    delattr(obj, name)
                else:
                    setattr(obj, name, before)
            except Exception:
                pass  # a setter that refuses: nothing more can be done here


def _static_attribute(obj: Any, name: str) -> Any:
    """``obj.name`` where reading it runs no Python: a module's parameter, buffer or
    submodule, a module attribute, an instance-dict entry no data descriptor overrides."""
    if isinstance(obj, torch.nn.Module):
        state = obj.__dict__
        for table in ("_parameters", "_buffers", "_modules"):
            entries = state.get(table)
            if entries is not None and name in entries:
                return entries[name]
    if isinstance(obj, types.ModuleType):
        return obj.__dict__.get(name, _ABSENT)
    tp = type(obj)
    state = getattr(obj, "__dict__", None)
    if (
        type(state) is not dict
        or name not in state
        or reads.python_attribute_hooks(tp)
        or reads.is_data_descriptor(tp, name)
    ):
        return _ABSENT
    return state[name]


def _import_entry_code() -> types.CodeType | None:
    """The code every import that loads a module runs (``importlib._bootstrap``)."""
    bootstrap = sys.modules.get("_frozen_importlib")
    fn = getattr(bootstrap, "_find_and_load", None)
    return getattr(fn, "__code__", None)


_IMPORT_ENTRY = _import_entry_code()


class SideEffectMonitor:
    """Watches a capture: records user code executed and every side effect found.

    Code that runs inside an import (a module body, a meta-path finder such as setuptools'
    ``_distutils_hack``, the registrations a module makes as it loads) is the import
    system's, not the captured computation's: its reads are not guarded and its side
    effects not judged. An import the capture triggers (a lazy import) happens once, as it
    would have in the first eager call.
    """

    def __init__(
        self,
        top_code: types.CodeType,
        tensor_args: set[str],
        on_line: Callable[[types.FrameType], None] | None = None,
        on_opcode: Callable[[types.FrameType], None] | None = None,
        on_c_call: Callable[[types.FrameType, Any], None] | None = None,
    ) -> None:
        self.top_code = top_code
        self._on_line = on_line
        self._on_opcode = on_opcode
        self._on_c_call = on_c_call
        self._tracing = False
        self.tensor_args = tensor_args
        self.violations: list[str] = []
        self.executed: dict[types.CodeType, ExecutedCode] = {}
        self._static_checked: set[types.CodeType] = set()
        self.writes = AttributeWrites()
        # Per judged code: the offsets of its attribute writes, the chain of the object each
        # writes to (attribute_write_target) and the attribute's name.
        self._write_targets: dict[types.CodeType, dict[int, _WriteTarget]] = {}
        self._fresh: dict[types.CodeType, set[str]] = {}
        # is-user-code answers for codes with a file: the profile function runs for every
        # call torch makes while tracing, so it must be one dict lookup for library code.
        self._user_code: dict[types.CodeType, bool | None] = {}
        # How many imports are running (calls of _IMPORT_ENTRY, which the table maps to
        # None so that the C filter passes each of its calls and returns here).
        self._in_import = 0
        if _IMPORT_ENTRY is not None:
            self._user_code[_IMPORT_ENTRY] = None
        self._third_party_code: dict[types.CodeType, bool] = {}
        # The profile function as installed while watching: events of code this table
        # calls library code, which _profile would ignore, are answered in C
        # (include/framecache/capture_profile.h); the rest call _profile. Made per watch
        # and dropped after it: it refers back to this monitor, and a C++ object is no
        # part of the garbage collector's cycles.
        self._filter: Any = None
        # Whether library frames run without events for this watch (watching()).
        self._per_frame = False

    def _is_user_frame(self, frame: types.FrameType) -> bool:
        """User code is judged; library code (and what it generates) is traced through.

        Code without a file (exec'd, ``<string>``) belongs to whoever runs it: the nearest
        caller that has a file decides.
        """
        code = frame.f_code
        if code is self.top_code:
            return True
        if code.co_filename.startswith("<") and not is_library_code(code):
            back = frame.f_back
            for _ in range(64):
                if back is None:
                    return False
                if back.f_code is self.top_code:
                    return True
                if not back.f_code.co_filename.startswith("<"):
                    return not is_library_code(back.f_code)
                back = back.f_back
            return False
        return not is_library_code(code)

    def _third_party(self, code: types.CodeType) -> bool:
        third = self._third_party_code.get(code)
        if third is None:
            third = self._third_party_code[code] = is_third_party_code(code)
        return third

    def _is_user(self, frame: types.FrameType) -> bool:
        if self._in_import:
            return False
        code = frame.f_code
        if code is _IMPORT_ENTRY:
            return False
        user = self._user_code.get(code)
        if user is None:
            user = self._is_user_frame(frame)
            if not code.co_filename.startswith("<") or is_library_code(code):
                # Only file-less code that is not library code (<string>, exec'd) depends
                # on its caller; the rest (frozen modules, fx's generated code, files) is
                # decided once.
                self._user_code[code] = user
        return user

    def _trace(self, frame: types.FrameType, event: str, arg: Any) -> Any:
        """The global trace function: user frames get the line tracer, others nothing."""
        if event == "call" and self._is_user(frame):
            return self._line
        return None

    def _line(self, frame: types.FrameType, event: str, arg: Any) -> Any:
        if event == "line":
            if self._on_line is not None:
                self._on_line(frame)
        elif event == "opcode":
            # Only in frames that turned f_trace_opcodes on: the reader's (dynamic reads)
            # and those with attribute writes (below).
            targets = self._write_targets.get(frame.f_code)
            if targets:
                target = targets.get(frame.f_lasti)
                if target is not None:
                    self._before_write(frame, target)
            if self._on_opcode is not None:
                self._on_opcode(frame)
        return self._line

    def _before_write(self, frame: types.FrameType, target: _WriteTarget) -> None:
        """The STORE_ATTR / DELETE_ATTR at ``frame.f_lasti`` is about to run: note the
        original of what it writes, or stop the capture when its object is out of reach."""
        kind, root, steps, name = target
        if kind == "L":
            obj = frame.f_locals.get(root, _ABSENT)
        else:
            obj = frame.f_globals.get(root, _ABSENT)
        owner = _ABSENT
        for step in steps:
            if obj is _ABSENT:
                break
            owner = obj
            obj = _static_attribute(obj, step)
        if name is None:
            # A store into a container attribute (container_write_target): one the chain
            # does not reach is left to the static checks.
            if obj is not _ABSENT:
                self.writes.before_container_write(obj, owner)
            return
        if obj is _ABSENT:
            self._abort(
                [
                    f"{frame.f_code.co_qualname} sets the attribute .{name} at line "
                    f"{frame.f_lineno} on an object framecache cannot follow"
                ]
            )
        self.writes.before_write(obj, name)

    def _watch_writes(self, frame: types.FrameType) -> None:
        """Opcode events for a judged frame whose code writes attributes."""
        code = frame.f_code
        targets = self._write_targets.get(code)
        if targets is None:
            instrs = _instructions(code)
            targets = {}
            for i, ins in enumerate(instrs):
                if ins.opname in ("STORE_ATTR", "DELETE_ATTR"):
                    found = attribute_write_target(instrs, i)
                    if found is not None:
                        targets[ins.offset] = (*found, ins.argval)
                elif ins.opname in ("STORE_SUBSCR", "DELETE_SUBSCR"):
                    found = container_write_target(instrs, i)
                    if found is not None:
                        targets[ins.offset] = (*found, None)
            self._write_targets[code] = targets
        if targets:
            if frame.f_trace is None:
                frame.f_trace = self._line
            if not frame.f_trace_opcodes:
                frame.f_trace_opcodes = True
                if sys.version_info[:2] == (3, 12):
                    # 3.12's settrace over sys.monitoring turns instruction events on only
                    # when settrace runs after a frame asked for them. Delete with 3.12.
                    sys.settrace(sys.gettrace())

    def finish(self) -> None:
        """After the capture: attributes written and not restored are a side effect.

        They are put back (the frame then runs for real, from the state it started in).
        """
        left = self.writes.unrestored()
        if left:
            self.violations.extend(
                f"sets the attribute .{name} of a {type(obj).__name__} and does not restore it"
                for obj, name in left
            )
        self.violations.extend(
            f"stores into a {type(container).__name__} of a {owner} and does not restore it"
            for container, owner in self.writes.changed_containers()
        )
        self.writes.undo()

    def _set_tracing(self, on: bool) -> None:
        """The line tracer is on only while a user frame runs.

        A global trace function costs a Python call (and a locals dict) for every frame
        that starts while it is set, torch's included; the profile function (which runs
        for every call and return anyway) turns it on when control enters user code and
        off when it enters library code.
        """
        if not on and self._per_frame:
            return
        if on != self._tracing:
            self._tracing = on
            if self._filter is not None:
                self._filter.tracing = on
            sys.settrace(self._trace if on else None)

    def _profile(self, frame: types.FrameType, event: str, arg: Any) -> None:
        if frame.f_code is _IMPORT_ENTRY:
            if event == "call":
                self._in_import += 1
                self._set_tracing(False)
                return
            if event == "return":
                self._in_import -= 1
        if event == "return":
            if self._on_line is not None:
                # Inlined: this runs on every return of every frame during a capture.
                back = frame.f_back
                if back is None:
                    want = False
                else:
                    want = self._user_code.get(back.f_code)
                    if want is None or self._in_import:
                        want = self._is_user(back)
                if want is not self._tracing:
                    self._set_tracing(want)
            return
        if event != "call" and event != "c_call":
            return
        code = frame.f_code
        if event == "call" and self._on_line is not None:
            user = self._is_user(frame)
            if user:
                frame.f_trace = self._line
            self._set_tracing(user)
            if not user:
                return
        elif not self._is_user(frame):
            return
        # Both events come before anything runs (the frame's first instruction, the C
        # call), so raising here stops the capture before the side effect happens.
        if event == "call":
            if code not in self.executed:
                self.executed[code] = ExecutedCode(code, frame.f_globals, None)
            if code.co_name == "__init__" and code.co_argcount:
                self._note_init(frame)
            if code is not self.top_code and self._third_party(code):
                # A package's bookkeeping is not judged, but what it writes to objects
                # that existed before is: the capture runs it on fake tensors (a
                # transformers cache stores them), and a graph would not replay it.
                self._watch_writes(frame)
                return
            if code not in self._static_checked:
                self._static_checked.add(code)
                tensor_args = self.tensor_args if code is self.top_code else set()
                found = static_violations(code, tensor_args, frame.f_globals)
                if found:
                    self._abort(found)
            self._watch_writes(frame)
        else:
            if self._on_c_call is not None:
                self._on_c_call(frame, arg)
            if code is not self.top_code and self._third_party(code):
                return
            reason = self._check_c_call(frame, arg)
            if reason is not None:
                self._abort([reason])

    def _note_init(self, frame: types.FrameType) -> None:
        """An ``__init__`` starting on an instance with an empty ``__dict__``: an object
        being made (``Cls(...)``), whose attribute writes are its own state."""
        obj = frame.f_locals.get(frame.f_code.co_varnames[0], _ABSENT)
        state = getattr(obj, "__dict__", None)
        if type(state) is dict and not state:
            self.writes.note_fresh(obj)

    def _abort(self, reasons: list[str]) -> None:
        self.violations.extend(reasons)
        raise SideEffectAbort("; ".join(reasons))

    def _check_c_call(self, frame: types.FrameType, fn: Any) -> str | None:
        if id(fn) in _PURE_BUILTINS:
            return None
        module = getattr(fn, "__module__", None) or ""
        if module in ("math", "_operator", "operator") or module.startswith("torch"):
            return None
        receiver = getattr(fn, "__self__", None)
        if isinstance(receiver, (torch.Tensor, torch.Size)):
            return None
        if isinstance(receiver, type):
            # T.__new__, dict.fromkeys, int.from_bytes: they build new objects.
            return None
        if isinstance(receiver, types.ModuleType) and receiver.__name__.split(".")[0] in (
            "torch",
            "math",
            "operator",
            "_operator",
            "builtins",
        ):
            return None if receiver.__name__ != "builtins" else self._builtin(fn, frame)
        if isinstance(receiver, (str, bytes, tuple, int, float, complex, frozenset, range)):
            return None
        if isinstance(receiver, _MUTABLE_CONTAINERS):
            name = getattr(fn, "__name__", "?")
            if name in _READ_ONLY_METHODS.get(type(receiver), set()):
                return None
            if self._is_fresh(receiver, frame):
                return None
            return (
                f"{frame.f_code.co_qualname} mutates a {type(receiver).__name__} it did not "
                f"create ({name}() at line {frame.f_lineno})"
            )
        name = getattr(fn, "__qualname__", getattr(fn, "__name__", repr(fn)))
        return (
            f"{frame.f_code.co_qualname} calls {name}() at line {frame.f_lineno}, "
            "which may have side effects"
        )

    def _builtin(self, fn: Any, frame: types.FrameType) -> str | None:
        if id(fn) in _PURE_BUILTINS:
            return None
        return (
            f"{frame.f_code.co_qualname} calls {fn.__name__}() at line {frame.f_lineno}, "
            "which may have side effects"
        )

    def _is_fresh(self, container: Any, frame: types.FrameType) -> bool:
        code = frame.f_code
        fresh = self._fresh.get(code)
        if fresh is None:
            fresh = self._fresh[code] = fresh_locals(code)
        f_locals = frame.f_locals
        return any(f_locals.get(name) is container for name in fresh)

    @contextmanager
    def watching(self) -> Iterator[SideEffectMonitor]:
        """Install the profile (and line trace) functions for the duration of a capture."""
        previous = sys.getprofile()
        previous_trace = sys.gettrace()
        self._tracing = previous_trace is self._trace
        self._filter = _C._CaptureProfile(self._profile, self._user_code)
        self._filter.tracing = self._tracing
        # 3.11: the hook runs known library frames with no events at all (see
        # capture_profile.h), so the line tracer, which then only user frames and code not
        # classified yet call, stays on for the whole capture.
        self._per_frame = _C._capture_per_frame_available()
        self._filter.per_frame = self._per_frame
        self._filter.install()
        if self._per_frame and self._on_line is not None:
            self._set_tracing(True)
        try:
            yield self
        finally:
            sys.setprofile(previous)
            self._filter = None
            self._per_frame = False
            if self._on_line is not None or self._write_targets:
                sys.settrace(previous_trace)
            self.finish()


__all__ = [
    "AttributeWrites",
    "CodeReads",
    "SideEffectAbort",
    "ExecutedCode",
    "SideEffectMonitor",
    "attribute_write_target",
    "code_reads",
    "fresh_locals",
    "is_library_code",
    "is_third_party_code",
    "static_violations",
]
