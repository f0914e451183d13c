"""Detecting Python side effects that a captured graph could not replay.

Capture runs the function once on fake tensors; what the graph records is tensor
computation. A write to a global, a nonlocal, an attribute or an outside container, or
a call such as ``print`` happens once during capture and never again when the graph
runs, so a frame that does any of that must run normally instead.

Two checks, both conservative (when in doubt, the frame is not captured):

* static, per user code object executed during capture: global/nonlocal/attribute
  writes, stores into containers that are not provably the frame's own, in-place
  operators on list/dict/set arguments;
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
    """Code installed in a site directory: its reads are guarded, its side effects not judged.

    Judging it like the user's own makes captures fall back on bookkeeping that packages
    and tools do (import hooks that note what they checked, registries, lazy caches).
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


def static_violations(code: types.CodeType, tensor_args: set[str]) -> list[str]:
    """Reasons why running ``code`` may have effects a graph cannot replay."""
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
            out.append(f"{where} sets the attribute .{ins.argval}")
        elif op in ("STORE_SUBSCR", "DELETE_SUBSCR"):
            target = _container_of_store(instrs, i)
            if target is None or (target not in fresh and target not in tensor_args):
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
            if ins.argval not in reads.freevars_read:
                reads.freevars_read.append(ins.argval)
    return reads


@dataclass
class ExecutedCode:
    """A user code object that ran during capture, with the globals it ran with."""

    code: types.CodeType
    f_globals: dict[str, Any]
    function: types.FunctionType | None


class SideEffectMonitor:
    """Watches a capture: records user code executed and every side effect found."""

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
        self._fresh: dict[types.CodeType, set[str]] = {}
        # is-user-code answers for codes with a file: the profile function runs for every
        # call torch makes while tracing, so it must be one dict lookup for library code.
        self._user_code: dict[types.CodeType, bool] = {}
        self._third_party_code: dict[types.CodeType, bool] = {}
        # The profile function as installed while watching: events of code this table
        # calls library code, which _profile would ignore, are answered in C
        # (include/framecache/capture_profile.h); the rest call _profile. Made per watch
        # and dropped after it: it refers back to this monitor, and a C++ object is no
        # part of the garbage collector's cycles.
        self._filter: Any = None

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
        code = frame.f_code
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
            self._on_line(frame)  # type: ignore[misc]
        elif event == "opcode" and self._on_opcode is not None:
            # Only in frames whose reader turned f_trace_opcodes on (dynamic reads).
            self._on_opcode(frame)
        return self._line

    def _set_tracing(self, on: bool) -> None:
        """The line tracer is on only while a user frame runs.

        A global trace function costs a Python call (and a locals dict) for every frame
        that starts while it is set, torch's included; the profile function (which runs
        for every call and return anyway) turns it on when control enters user code and
        off when it enters library code.
        """
        if on != self._tracing:
            self._tracing = on
            if self._filter is not None:
                self._filter.tracing = on
            sys.settrace(self._trace if on else None)

    def _profile(self, frame: types.FrameType, event: str, arg: Any) -> None:
        if event == "return":
            if self._on_line is not None:
                # Inlined: this runs on every return of every frame during a capture.
                back = frame.f_back
                if back is None:
                    want = False
                else:
                    want = self._user_code.get(back.f_code)
                    if want is None:
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
            if code is not self.top_code and self._third_party(code):
                return
            if code not in self._static_checked:
                self._static_checked.add(code)
                tensor_args = self.tensor_args if code is self.top_code else set()
                found = static_violations(code, tensor_args)
                if found:
                    self._abort(found)
        else:
            if self._on_c_call is not None:
                self._on_c_call(frame, arg)
            if code is not self.top_code and self._third_party(code):
                return
            reason = self._check_c_call(frame, arg)
            if reason is not None:
                self._abort([reason])

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
        self._filter.install()
        try:
            yield self
        finally:
            sys.setprofile(previous)
            self._filter = None
            if self._on_line is not None:
                sys.settrace(previous_trace)


__all__ = [
    "CodeReads",
    "SideEffectAbort",
    "ExecutedCode",
    "SideEffectMonitor",
    "code_reads",
    "fresh_locals",
    "is_library_code",
    "is_third_party_code",
    "static_violations",
]
