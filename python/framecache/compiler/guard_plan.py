"""Making the guard plan of a capture from what the capture read.

The plan itself (framecache/plan) is data: guards on sources, shown to a person
(``explain``), lowered to a C++ guard tree (``materialize``) and written down for the disk
cache. This module decides which guards: those on the frame's arguments, on the module
trees it was given, and on every value the capture's code read (reads.py), recorded while
the capture ran.
"""

from __future__ import annotations

import builtins
import sys
import types
from typing import TYPE_CHECKING, Any

import torch

from ..plan import guards as g
from ..plan import sources
from ..plan.plan import GuardPlan, materialize
from ..plan.sources import Source
from . import reads
from .errors import Unsupported
from .fx_patches import outside_trace
from .inputs import CONSTANT_TYPES
from .side_effects import code_reads

if TYPE_CHECKING:  # capture imports symbolic shapes (sympy): only a miss needs it
    from .capture import Capture

_MAX_DEPTH = 8  # closures nested in closures' cells
# Hook dicts whose contents change what calling a module does.
_MODULE_HOOK_DICTS = (
    "_forward_hooks",
    "_forward_pre_hooks",
    "_backward_hooks",
    "_backward_pre_hooks",
    "_state_dict_hooks",
    "_load_state_dict_pre_hooks",
)


def relaxed(plan: GuardPlan, lifted: set[int]) -> GuardPlan:
    """The plan once the graph takes the tensors ``lifted`` (ids) as inputs.

    Their identity no longer matters (their metadata guards stay), and neither does a
    module's: the graph reads its state through the guarded sources, so a module is
    guarded by its class and that state.
    """
    out = GuardPlan(globals_read=list(plan.globals_read))
    for guard in plan.guards:
        if isinstance(guard, g.IdMatch):
            value = guard.value
            if isinstance(value, torch.Tensor) and id(value) in lifted:
                continue
            if isinstance(value, torch.nn.Module):
                out.add(g.TypeMatch(guard.source, type(value)))
                continue
        out.add(guard)
    return out


is_module_state_source = sources.is_module_state_source


def build_plan(capture: Capture, closure: tuple[Any, ...] | None = None) -> GuardPlan:
    """The guards that make reusing ``capture`` sound.

    Most of the plan was made while the capture ran (``PlanBuilder.on_line``): what is
    left are the guards that relate values to each other and the closures of the
    functions the capture ran. Raises Unsupported when the capture read something no
    guard can reach (a closure whose cells have no source, globals of no module).
    """
    builder = capture.builder
    builder.unresolved_hooked_reads()
    if builder.failure is not None:
        raise Unsupported(builder.failure)
    builder.aliasing()
    builder.plan.add(g.GlobalState(()))
    builder.check_closures_covered(capture.monitor.executed)
    return builder.plan


_CONTAINER_BUDGET = 64  # items of one container read guarded one by one; more: identity
_WHOLE_BUDGET = 256  # items of a container read with a key the parser could not follow
_READ_DEPTH = 4  # nesting of containers walked below one read value


class PlanBuilder:
    """Makes the guard plan of one capture from the values its code read.

    Created before the capture with the frame's arguments (each gets its local source);
    ``on_line`` is the line trace function's body for user code during the capture
    (reads.py says why lines); ``build_plan`` finishes the plan afterwards.

    Every object a guard is made for gets a source in ``known`` (by id; the builder keeps
    the object alive so that the id is not reused during the capture): a read rooted at
    that object (``self.lin`` in a callee whose ``self`` is the caller's
    ``L['self'].encoder``) is guarded at a path from the compiled frame.
    """

    def __init__(
        self,
        args: Any,
        dynamic_dims: dict[Source, set[int]],
        top_globals: dict[str, Any],
        closure: tuple[Any, ...] | None,
    ) -> None:
        self.plan = GuardPlan()
        self.args = args
        self.dynamic_dims = dynamic_dims
        self.input_sources = set(args.tensor_sources)
        self.top_globals = top_globals
        self.failure: str | None = None
        self.known: dict[int, Source] = {}
        self._alive: list[Any] = []
        self._done: set[Source] = set()
        # Closures guarded by structure: id -> the depth their walk started at.
        self._closures_walked: dict[int, int] = {}
        self._chains: dict[types.CodeType, dict[int, list[reads.Chain]]] = {}
        self._roots: dict[int, Source | None] = {id(top_globals): None}
        self._types: dict[type, Source] = {}  # classes of guarded objects: type(x)'s source
        self._classes: dict[type, Source] = {}  # classes read as values, at their source
        # getattr()/hasattr() with a computed name on an object whose type's own Python
        # __getattribute__ runs for every read: (source, object, what, line), resolved when
        # that __getattribute__ starts with the name in its arguments (``on_line``).
        self._hooked: list[tuple[Source, Any, str, int]] = []
        # Codes whose free variables are guarded (their function was read with a source).
        self.covered: set[types.CodeType] = {args.code}
        # The capture's side_effects.AttributeWrites (capture.py sets it): an attribute
        # read while it holds a value the capture's own code wrote (transformers' config
        # set for the call, restored after) is computed, not an input, and not guarded.
        self.writes: Any = None
        for name in args.names:
            self.argument(sources.local(name), args.values[name], 0)
        self.own_closure(args.code, closure)

    # -- values ---------------------------------------------------------------------------
    def _written(self, obj: Any, name: str) -> bool:
        return self.writes is not None and self.writes.changed(obj, name)

    def _register(self, source: Source, value: Any) -> None:
        key = id(value)
        if key not in self.known:
            self.known[key] = source
            self._alive.append(value)

    def argument(self, source: Source, value: Any, depth: int) -> None:
        """A frame argument: containers walked whole (split_arguments bounded them)."""
        if type(value) in (tuple, list):
            self.plan.add(g.TypeMatch(source, type(value)))
            self.plan.add(g.LengthCheck(source, len(value)))
            for i, item in enumerate(value):
                self.argument(sources.item(source, i), item, depth + 1)
            return
        if type(value) is dict:
            self.plan.add(g.TypeMatch(source, dict))
            self.plan.add(g.MappingKeysMatch(source, tuple(value.keys())))
            for key, item in value.items():
                self.argument(sources.item(source, key), item, depth + 1)
            return
        self.read(source, value, 0)

    def read(self, source: Source, value: Any, depth: int) -> None:
        """Guard ``value``, read at ``source``: its type and what can be seen without a walk."""
        if source in self._done:
            return
        self._done.add(source)
        value = outside_trace(value)
        plan = self.plan
        if isinstance(value, torch.Tensor):
            if source not in self.input_sources:
                # Not a graph input: the graph holds this very tensor as a constant, so
                # another tensor with the same metadata must not reuse it.
                plan.add(g.IdMatch(source, value))
            dims = frozenset(self.dynamic_dims.get(source, set()))
            plan.add(g.TensorMatch(source, value, dims))
            self._register(source, value)
            return
        if value is None:
            plan.add(g.NoneMatch(source))
            return
        if type(value) is float and value != value:
            plan.add(g.FloatIsNan(source))
            return
        if type(value) is complex and value != value:
            # A complex with a NaN part equals nothing, itself included.
            self.fail(f"{sources.render(source)} is a complex NaN, which cannot be guarded")
            return
        if type(value) in (bool, int, float, complex, str, bytes):
            plan.add(g.EqualsMatch(source, value))
            return
        if isinstance(value, torch.device):
            plan.add(g.DeviceMatch(source, str(value)))
            return
        if isinstance(value, CONSTANT_TYPES):
            # dtype, layout, memory_format: interned by torch, identity is equality.
            plan.add(g.IdMatch(source, value))
            return
        if isinstance(value, (torch.SymInt, torch.SymFloat, torch.SymBool)):
            return  # a symbolic value of the capture itself: shape guards cover it
        self._register(source, value)
        if type(value) in (tuple, list):
            plan.add(g.TypeMatch(source, type(value)))
            plan.add(g.LengthCheck(source, len(value)))
            if len(value) > _CONTAINER_BUDGET or depth >= _READ_DEPTH:
                plan.add(g.IdMatch(source, value))
                return
            for i, item in enumerate(value):
                self.read(sources.item(source, i), item, depth + 1)
            return
        if type(value) is dict:
            plan.add(g.TypeMatch(source, dict))
            if len(value) > _CONTAINER_BUDGET or depth >= _READ_DEPTH:
                # Identity only: reads through constant keys are guarded item by item.
                plan.add(g.IdMatch(source, value))
                return
            plan.add(g.MappingKeysMatch(source, tuple(value.keys())))
            for key, item in value.items():
                if isinstance(key, reads.KEY_TYPES):
                    self.read(sources.item(source, key), item, depth + 1)
            return
        if isinstance(value, torch.nn.Module):
            self.module(source, value)
            return
        if isinstance(value, types.MethodType):
            # Bound methods are made anew by each attribute read: guard what they bind.
            self.read(sources.attr(source, "__func__"), value.__func__, depth + 1)
            self.read(sources.attr(source, "__self__"), value.__self__, depth + 1)
            return
        if isinstance(value, types.FunctionType) and value.__closure__ is not None:
            self.closure_value(source, value, depth)
            return
        # Functions, classes, modules and other objects: the same object (their attributes
        # are guarded where the capture read them).
        plan.add(g.IdMatch(source, value))
        if isinstance(value, types.FunctionType):
            self.function_closure(source, value, depth)
        elif isinstance(value, type):
            # A class the capture called or read: its methods (a dataclass's wrapped
            # __init__) run when it is instantiated; check_closures_covered finds them here.
            self._classes.setdefault(value, source)
        elif not isinstance(value, types.ModuleType):
            self._note_type(source, value)

    def _same_as_before(self, source: Source, value: Any) -> None:
        """One object under two sources stays one: the graph read it through the first."""
        first = self.known.get(id(value))
        if first is not None and first != source:
            self.plan.add(g.ObjectAliasing(source, first, source))

    def _note_type(self, source: Source, value: Any) -> None:
        tp = type(value)
        if tp not in self._types and tp.__module__ != "builtins":
            self._types[tp] = sources.type_of(source)

    def closure_value(self, source: Source, fn: types.FunctionType, depth: int) -> None:
        """A closure, guarded by what calling it computes rather than by identity.

        A closure is made anew each time its enclosing function runs: transformers builds
        its attention-mask functions (``and_masks(...)``, ``packed_sequence_mask_function``)
        on every forward and hands them to the next frame, so an identity guard failed on
        every call and the frame recompiled each time. Two closures of one code object, with
        the same globals, defaults and contents in the cells the code reads, compute the
        same thing (dynamo's CLOSURE_MATCH makes the same bet). What a capture can still
        observe of the object itself: it cannot return it (a graph output must be a tensor
        or a constant, capture.py refuses others) nor store it (a side effect); ``is``
        between two of the frame's closures is kept by an aliasing guard when they were one
        object. Attributes read from the function are guarded where they are read.
        """
        plan = self.plan
        first = self.known.get(id(fn))
        walked = self._closures_walked.get(id(fn))
        if first is not None and first != source and walked is not None and walked <= depth:
            # The same function object, already guarded by structure at ``first`` at least
            # as deep: tie this path to it rather than walk it again. Decorators that keep
            # the wrapper in one of its own cells (transformers' output-capturing and
            # deprecation wrappers do) made each revisit repeat the whole subtree until
            # _MAX_DEPTH, ~180 guards on one GPT-2 block's forward.
            plan.add(g.ObjectAliasing(source, first, source))
            return
        if walked is None or depth < walked:
            self._closures_walked[id(fn)] = depth
        self._same_as_before(source, fn)
        plan.add(g.TypeMatch(source, types.FunctionType))
        # Read from the function's fields, after the TYPE_MATCH above (leaves run first).
        plan.add(g.IdMatch(sources.function_part(source, "__code__"), fn.__code__))
        plan.add(g.IdMatch(sources.function_part(source, "__globals__"), fn.__globals__))
        self.read(sources.function_part(source, "__defaults__"), fn.__defaults__, depth + 1)
        self.read(sources.function_part(source, "__kwdefaults__"), fn.__kwdefaults__, depth + 1)
        self.function_closure(source, fn, depth)

    def function_closure(self, source: Source, fn: types.FunctionType, depth: int) -> None:
        """The cells a function's code reads are part of what calling it computes."""
        code = fn.__code__
        self.covered.add(code)
        if not fn.__closure__ or depth > _MAX_DEPTH:
            return
        read = set(code_reads(code).freevars_read)
        for i, (name, cell) in enumerate(zip(code.co_freevars, fn.__closure__, strict=False)):
            if name not in read:
                continue
            try:
                contents = cell.cell_contents
            except ValueError:
                continue  # an empty cell: reading it raises, as it will next time
            self.read(sources.cell(source, i), contents, depth + 1)

    def module(self, source: Source, module: torch.nn.Module) -> None:
        """An nn.Module: itself, training flag, hooks, parameters, buffers, submodules.

        Bounded by the module tree; its other attributes are guarded where they are read.
        """
        plan = self.plan
        self._same_as_before(source, module)
        self._register(source, module)
        self._done.add(source)
        plan.add(g.IdMatch(source, module))
        self._note_type(source, module)
        d = sources.obj_dict(source)
        state = module.__dict__
        plan.add(g.EqualsMatch(sources.item(d, "training"), bool(module.training)))
        for hooks in _MODULE_HOOK_DICTS:
            if hooks in state:
                plan.add(g.DictLength(sources.item(d, hooks), len(state[hooks])))
        for kind in ("_parameters", "_buffers"):
            table = state.get(kind, {})
            table_source = sources.item(d, kind)
            plan.add(g.MappingKeysMatch(table_source, tuple(table.keys())))
            for name, tensor in table.items():
                item_source = sources.item(table_source, name)
                self._done.add(item_source)
                if tensor is None:
                    plan.add(g.NoneMatch(item_source))
                    continue
                self._same_as_before(item_source, tensor)
                # Captured graphs hold parameters by reference: same object, same metadata.
                plan.add(g.IdMatch(item_source, tensor))
                plan.add(g.TensorMatch(item_source, tensor))
                self._register(item_source, tensor)
        submodules = state.get("_modules", {})
        plan.add(g.MappingKeysMatch(sources.item(d, "_modules"), tuple(submodules.keys())))
        for name, sub in submodules.items():
            sub_source = sources.item(sources.item(d, "_modules"), name)
            if sub is None:
                plan.add(g.NoneMatch(sub_source))
                self._done.add(sub_source)
            elif id(sub) not in self.known:
                self.module(sub_source, sub)
            else:
                # Shared (tied) submodule: the graph read its state through the first
                # source, so the two must stay one object.
                self._same_as_before(sub_source, sub)
                plan.add(g.TypeMatch(sub_source, type(sub)))
                self._done.add(sub_source)

    def own_closure(self, code: types.CodeType, closure: tuple[Any, ...] | None) -> None:
        """The compiled function's own cells: frame locals of the compiled frame."""
        if not closure:
            return
        read = set(code_reads(code).freevars_read)
        for name, cell in zip(code.co_freevars, closure, strict=False):
            if name not in read:
                continue
            try:
                value = cell.cell_contents
            except ValueError:
                continue
            self.read(sources.local(name), value, 0)

    def fail(self, reason: str) -> None:
        if self.failure is None:
            self.failure = reason

    # -- reads during the capture -----------------------------------------------------------
    def on_line(self, frame: types.FrameType) -> None:
        """Guard what the line about to run in ``frame`` (user code) reads.

        Never raises into the traced frame: a failure makes the plan fail afterwards.
        """
        try:
            self._on_line(frame)
        except Exception as exc:
            self.fail(f"recording what the capture read failed: {type(exc).__name__}: {exc}")

    def on_opcode(self, frame: types.FrameType) -> None:
        """Guard the dynamic reads (reads.py) of the instruction about to run in ``frame``.

        Never raises into the traced frame: a failure makes the plan fail afterwards.
        """
        try:
            table = self._code_chains(frame.f_code)
            chains = table.by_offset.get(frame.f_lasti)
            if chains:
                self._resolve(frame, chains)
        except Exception as exc:
            self.fail(f"recording what the capture read failed: {type(exc).__name__}: {exc}")

    def on_c_call(self, frame: types.FrameType, fn: Any) -> None:
        """A C function about to be called from user code: a read the parser lost track of.

        ``getattr``/``hasattr``/``vars`` called where the parser did not see the call (a
        name or object computed across a branch) fail the plan; a dict's ``get`` there
        guards the dict whole, when it has a source.
        """
        try:
            if fn is builtins.getattr or fn is builtins.hasattr or fn is builtins.vars:
                table = self._code_chains(frame.f_code)
                offset = frame.f_lasti
                if offset not in table.read_calls and offset not in table.opaque_calls:
                    self.fail(
                        f"{fn.__name__}() at line {frame.f_lineno} of {frame.f_code.co_qualname} "
                        "reads through an object or name framecache could not follow"
                    )
                return
            receiver = getattr(fn, "__self__", None)
            if type(receiver) is dict and getattr(fn, "__name__", None) == "get":
                table = self._code_chains(frame.f_code)
                if frame.f_lasti in table.read_calls:
                    return
                source = self.known.get(id(receiver))
                if source is not None:
                    self._whole(source, receiver, f"dict.get() at line {frame.f_lineno}")
        except Exception as exc:
            self.fail(f"recording what the capture read failed: {type(exc).__name__}: {exc}")

    def _code_chains(self, code: types.CodeType) -> reads.CodeChains:
        table = self._chains.get(code)
        if table is None:
            table = self._chains[code] = reads.code_chains(code)
        return table

    def _hooked_read(self, frame: types.FrameType) -> None:
        """The first line of a ``__getattribute__(self, name)`` that a pending computed
        getattr()/hasattr() on ``self`` called: guard ``self.<name>`` as if read with a dot."""
        code = frame.f_code
        if code.co_name != "__getattribute__" or code.co_argcount < 2:
            return
        f_locals = frame.f_locals
        obj = f_locals.get(code.co_varnames[0], _ABSENT)
        for i, (source, value, what, _line) in enumerate(self._hooked):
            if value is not obj:
                continue
            del self._hooked[i]
            name = f_locals.get(code.co_varnames[1], _ABSENT)
            if type(name) is not str:
                self.fail(f"{what}() on {sources.render(source)} with a name that is no string")
                return
            if self._written(value, name):
                return
            found = self._step(source, value, ("attr", name))
            if found is None:
                self.plan.add(g.NoHasattr(source, name))
            else:
                self.read(found[0], found[1], 0)
            return

    def unresolved_hooked_reads(self) -> None:
        """Fail the plan for a computed getattr() whose __getattribute__ was not seen."""
        for source, _value, what, line in self._hooked:
            self.fail(
                f"{what}() with a computed name at line {line} reads {sources.render(source)} "
                "through a __getattribute__ framecache did not see run"
            )
        self._hooked.clear()

    def _on_line(self, frame: types.FrameType) -> None:
        if self._hooked:
            self._hooked_read(frame)
        table = self._code_chains(frame.f_code)
        if table.by_offset and not frame.f_trace_opcodes:
            # Dynamic reads are resolved just before their instruction runs.
            frame.f_trace_opcodes = True
            if sys.version_info[:2] == (3, 12):
                # 3.12's sys.settrace over sys.monitoring turns instruction events on only
                # when settrace runs after a frame asked for opcodes (3.13's frame setter
                # does it itself): install the same trace function again. Delete with 3.12.
                sys.settrace(sys.gettrace())
        chains = table.by_line.get(frame.f_lineno)
        if chains:
            self._resolve(frame, chains)

    def _resolve(self, frame: types.FrameType, chains: list[reads.Chain]) -> None:
        f_locals: dict[str, Any] | None = None
        for kind, name, steps in chains:
            if kind == "G":
                found = self._global(frame.f_globals, name)
                if found is None:
                    continue
                source, value = found
            elif kind == "M":  # ``from m import a``
                found = self._module_attribute(sys.modules.get(name), steps)
                if found is None:
                    continue
                source, value = found
                steps = steps[1:]
            else:
                if f_locals is None:
                    f_locals = frame.f_locals
                value = f_locals.get(name, _ABSENT)
                if value is _ABSENT:
                    continue
                source = self.known.get(id(value))
                if source is None:
                    # A module the frame imported itself (``import m`` in a function) is
                    # read through its globals; anything else was made by the capture or
                    # got from a call.
                    found = self._module_attribute(value, steps)
                    if found is None:
                        continue
                    source, value = found
                    steps = steps[1:]
            for step in steps:
                if step[0] in ("attr", "item"):
                    found = self._step(source, value, step)
                else:
                    if f_locals is None:
                        f_locals = frame.f_locals
                    found = self._dynamic_step(frame, f_locals, source, value, step)
                if found is None:
                    break
                source, value = found
                self.read(source, value, 0)
                source = self._first_source(source, value)

    def _first_source(self, source: Source, value: Any) -> Source:
        """Where the rest of a chain reads ``value`` from: the source it was first guarded
        at, when both guard its identity.

        Each layer of a transformers model reads ``self.config._attn_implementation``
        through its own path to the one config; both paths are identity-guarded, so they
        give the same object at every check, and a second path's reads of it would repeat
        the first one's guards (through the config's Python ``__getattribute__``, about
        3 µs each). Modules (guarded by class, one entry for every instance), containers
        (walked) and closures (guarded by what they compute) keep their own paths.
        """
        first = self.known.get(id(value))
        if first is None or first == source or not _identity_guarded(value):
            return source
        # On disk an identity guard becomes a type check, relying on the object's read
        # state being guarded at its source: the aliasing guard keeps the paths one object
        # there too (without it, a stored entry served another object on the second path).
        self._same_as_before(source, value)
        return first

    def _module_attribute(
        self, module: Any, steps: tuple[tuple[Any, ...], ...]
    ) -> tuple[Source, Any] | None:
        """``module.<first step>`` guarded as an item of the module's globals."""
        if not isinstance(module, types.ModuleType) or not steps or steps[0][0] != "attr":
            return None
        name = steps[0][1]
        if sys.modules.get(module.__name__) is not module or name not in module.__dict__:
            return None
        return self._global(module.__dict__, name)

    def _dynamic_step(
        self,
        frame: types.FrameType,
        f_locals: dict[str, Any],
        source: Source,
        value: Any,
        step: tuple[Any, ...],
    ) -> tuple[Source, Any] | None:
        """A read whose key the frame holds (``getattr(o, name)``, ``d[k]``, ``d.get(k)``).

        A key that is present is read like a constant one; an absent one gets a guard on
        its absence (the code took the default or the other branch); a key the parser
        could not follow guards the whole container read, or fails the plan.
        """
        what = step[0]
        if what in ("getattr", "hasattr", "vars") and not self._is_builtin(frame, what):
            return None  # a function of the user's own: its code is traced
        if what == "vars":
            state = getattr(value, "__dict__", None)
            if type(state) is not dict or isinstance(value, type):
                return None
            return sources.obj_dict(source), state
        ref = step[1]
        if ref[0] == "const":
            key = ref[1]
        elif ref[0] == "local":
            key = f_locals.get(ref[1], _ABSENT)
            if key is _ABSENT:
                return None  # unbound: the read raises, as it will next time
        else:
            key = _ABSENT
        if what == "contains":
            if type(value) is dict and key is not _ABSENT and type(key) in reads.KEY_TYPES:
                self.plan.add(g.DictContains(source, key, key in value))
            elif type(value) in (dict, list, tuple):
                self._whole(source, value, f"an `in` test at line {frame.f_lineno}")
            return None
        if what == "item_of" or what == "get":
            if type(value) not in ((dict,) if what == "get" else (dict, list, tuple)):
                # A tensor's subscript is graph computation; another type's __getitem__ or
                # get() is Python that is traced, or C that reads no Python state.
                return None
            if key is _ABSENT or type(key) not in reads.KEY_TYPES:
                self._whole(source, value, f"a subscript at line {frame.f_lineno}")
                return None
            found = self._step(source, value, ("item", key))
            if found is None and type(value) is dict:
                self.plan.add(g.DictContains(source, key, False))
            elif found is None and type(value) in (list, tuple):
                self.plan.add(g.LengthCheck(source, len(value)))
            return found
        # getattr / hasattr
        if isinstance(value, (torch.Tensor, torch.SymInt, torch.SymFloat, torch.SymBool)):
            return None  # a tensor's attributes are its metadata (TENSOR_MATCH)
        if type(key) is str and self._written(value, key):
            return None  # set by the capture's own code: no input
        if key is _ABSENT and reads.python_attribute_hooks(type(value)):
            # The name is on the value stack, out of reach here; the type's __getattribute__
            # is about to receive it (a config's alias map, say).
            self._alive.append(value)
            self._hooked.append((source, value, what, frame.f_lineno))
            return None
        if key is _ABSENT or type(key) is not str:
            self._whole(source, value, f"{what}() with a computed name at line {frame.f_lineno}")
            return None
        found = self._step(source, value, ("attr", key))
        if found is not None:
            if what == "hasattr":
                self.read(found[0], found[1], 0)  # reading it guards that it is there
                return None
            return found
        try:
            present = hasattr(value, key)  # what the code itself just asked
        except Exception:
            present = True
        if not present:
            self.plan.add(g.NoHasattr(source, key))
        # Present but not resolved statically: a class member (the guarded type keeps it),
        # a property or __getattr__ (Python the capture traced), a tensor's metadata
        # (TENSOR_MATCH): guarded like the same attribute read with a dot.
        return None

    @staticmethod
    def _is_builtin(frame: types.FrameType, name: str) -> bool:
        found = frame.f_globals.get(name, _ABSENT)
        if found is _ABSENT:
            b = frame.f_builtins
            found = b.get(name, _ABSENT) if isinstance(b, dict) else _ABSENT
        return found is getattr(builtins, name)

    def _whole(self, source: Source, value: Any, why: str) -> None:
        """Guard all of a container (or an object's ``__dict__``) read with a key framecache
        could not follow: keys and every value, to _WHOLE_BUDGET items; else fail."""
        if type(value) in (tuple, list):
            target, container = source, value
        elif type(value) is dict:
            target, container = source, value
        elif (
            not isinstance(value, (type, types.ModuleType, torch.Tensor))
            and type(getattr(value, "__dict__", None)) is dict
            and not reads.python_attribute_hooks(type(value))
        ):
            target, container = sources.obj_dict(source), value.__dict__
        else:
            self.fail(f"{why} reads {sources.render(source)}, which framecache cannot guard whole")
            return
        if len(container) > _WHOLE_BUDGET:
            self.fail(
                f"{why} reads {sources.render(source)} with a key framecache cannot follow, "
                f"and it has {len(container)} items (more than {_WHOLE_BUDGET} to guard whole)"
            )
            return
        plan = self.plan
        plan.add(g.TypeMatch(target, type(container)))
        if type(container) is dict:
            if not all(type(k) in reads.KEY_TYPES for k in container):
                self.fail(f"{why} reads {sources.render(source)}, whose keys are not constants")
                return
            plan.add(g.MappingKeysMatch(target, tuple(container.keys())))
            for k, item in container.items():
                self.read(sources.item(target, k), item, 1)
        else:
            plan.add(g.LengthCheck(target, len(container)))
            for i, item in enumerate(container):
                self.read(sources.item(target, i), item, 1)

    def _global(self, f_globals: dict[str, Any], name: str) -> tuple[Source, Any] | None:
        key = id(f_globals)
        if key in self._roots:
            root = self._roots[key]
        else:
            module_name = f_globals.get("__name__")
            module = sys.modules.get(module_name) if isinstance(module_name, str) else None
            if module is None or module.__dict__ is not f_globals:
                self.fail(f"code running with globals of no module ({module_name!r}) was captured")
                self._roots[key] = root = None
                return None
            self._roots[key] = root = sources.module_globals(module_name)
        if name in f_globals:
            value = outside_trace(f_globals[name])
            source = sources.global_(name) if root is None else sources.item(root, name)
        else:
            builtins = f_globals.get("__builtins__")
            bdict = builtins.__dict__ if isinstance(builtins, types.ModuleType) else builtins
            if not isinstance(bdict, dict) or name not in bdict:
                return None
            value = bdict[name]
            source = sources.builtin(name)
        if source not in self._done:
            rendered = sources.render(source)
            if rendered not in self.plan.globals_read:
                self.plan.globals_read.append(rendered)
            self.read(source, value, 0)
        return source, value

    def _step(self, source: Source, value: Any, step: tuple[str, Any]) -> tuple[Source, Any] | None:
        """``(source, value)`` one access further, or None where nothing can be guarded."""
        found = self._step_within(source, value, step)
        if found is None:
            return None
        return found[0], outside_trace(found[1])

    def _step_within(
        self, source: Source, value: Any, step: tuple[str, Any]
    ) -> tuple[Source, Any] | None:
        """``_step`` as the capture sees it (torch.fx's tracer patches still in place)."""
        if step[0] == "item":
            key = step[1]
            if type(value) is dict:
                if key in value:
                    return sources.item(source, key), value[key]
                return None
            if (
                type(value) in (list, tuple)
                and type(key) is int
                and -len(value) <= key < len(value)
            ):
                index = key % len(value)
                return sources.item(source, index), value[index]
            return None
        name = step[1]
        if isinstance(value, (torch.Tensor, torch.SymInt, torch.SymFloat, torch.SymBool)):
            return None
        if self._written(value, name):
            return None
        if (
            name == "__dict__"
            and not isinstance(value, (type, types.ModuleType))
            and not reads.python_attribute_hooks(type(value))
            and type(getattr(value, "__dict__", None)) is dict
        ):
            return sources.obj_dict(source), value.__dict__  # ``obj.__dict__.get(name)``
        if isinstance(value, torch.nn.Module):
            state = value.__dict__
            d = sources.obj_dict(source)
            for table in ("_parameters", "_buffers", "_modules"):
                entries = state.get(table)
                if entries is not None and name in entries:
                    return sources.item(sources.item(d, table), name), entries[name]
            if name in state:
                return sources.item(d, name), state[name]
            return self._class_member(source, type(value), name)
        if isinstance(value, types.ModuleType):
            state = value.__dict__
            return (sources.attr(source, name), state[name]) if name in state else None
        if isinstance(value, type):
            found = reads.class_value(value, name)
            if found is reads.missing():
                found = reads.class_function(value, name)
            return None if found is reads.missing() else (sources.attr(source, name), found)
        tp = type(value)
        if reads.python_attribute_hooks(tp):
            # Every read runs the type's own Python (a config mapping aliases): the capture
            # ran it already; the guard reads through it too.
            try:
                return sources.attr(source, name), getattr(value, name)
            except Exception:
                return None
        state = getattr(value, "__dict__", None)
        if type(state) is dict and name in state and not reads.is_data_descriptor(tp, name):
            # Guarded as the instance-dict entry (a DICT_VERSION node skips it while the
            # dict is unchanged); that reading holds for this class, which is guarded.
            self.plan.add(g.TypeMatch(source, tp))
            return sources.dict_attr(source, name), state[name]
        return self._class_member(source, tp, name)

    @staticmethod
    def _class_member(source: Source, tp: type, name: str) -> tuple[Source, Any] | None:
        """``obj.name`` found on the class ``tp`` of the object at ``source``, not on it.

        The class is no constant: a registry dict on it is updated, a method is
        monkeypatched (``Model.act = other``), a class-level object's attributes change. A
        value is guarded where it is read (``obj.name``); a method as the class gives it
        (``type(obj).name``: the bound method is made anew at every read). A property or
        class method runs Python that the capture traced, where its reads are guarded.
        """
        found = reads.class_value(tp, name)
        if found is not reads.missing():
            return sources.attr(source, name), found
        fn = reads.class_function(tp, name)
        if fn is reads.missing():
            return None
        return sources.attr(sources.type_of(source), name), fn

    # -- after the capture -------------------------------------------------------------------
    def aliasing(self) -> None:
        """Tensors that were distinct stay distinct; tensors that were one object stay one."""
        args = self.args
        first_by_id: dict[int, Source] = {}
        distinct: list[Source] = []
        for tensor, source in zip(args.tensors, args.tensor_sources, strict=False):
            seen = first_by_id.get(id(tensor))
            if seen is None:
                first_by_id[id(tensor)] = source
                distinct.append(source)
            else:
                self.plan.add(g.ObjectAliasing(source, seen, source))
        if len(distinct) > 1:
            self.plan.add(g.NoTensorAliasing((), tuple(distinct)))

    def check_closures_covered(self, executed: dict[types.CodeType, Any]) -> None:
        """Every closure the capture ran had its cells guarded, or the frame is not captured.

        A function read with a source had its cells guarded when it was read; a method
        reached through an object's class (a decorated ``forward``) or run by instantiating
        a class the capture read (a wrapped ``__init__``) is found here, in the classes of
        the objects the plan guards and the classes it guards.
        """
        created: set[types.CodeType] = set()
        for code in executed:
            for const in code.co_consts:
                if isinstance(const, types.CodeType):
                    created.add(const)
        for code in executed:
            if not code.co_freevars or code in self.covered or code in created:
                continue
            if not code_reads(code).freevars_read:
                continue
            found = self._class_function_of(code)
            if found is None:
                raise Unsupported(
                    f"the capture ran the closure {code.co_qualname}, whose captured variables "
                    "framecache cannot reach to guard"
                )
            source, fn = found
            self.read(source, fn, 0)

    def _class_function_of(self, code: types.CodeType) -> tuple[Source, Any] | None:
        """The method of a guarded class that runs ``code``: itself, or a function its
        decorators hold in their cells (``@torch.no_grad()`` over ``@dynamic_rope_update``:
        the class holds torch's wrapper, whose cell holds transformers' closure). Reading
        the outer function guards the cells its code reads, down to ``code``'s."""
        for tp, type_source in [*self._types.items(), *self._classes.items()]:
            for klass in tp.__mro__:
                for name, member in klass.__dict__.items():
                    fn = member.__func__ if isinstance(member, staticmethod) else member
                    if isinstance(fn, types.FunctionType) and _runs_code(fn, code, 0):
                        if reads.class_function(tp, name) is not fn:
                            continue  # shadowed by a subclass: not what type(x).name gives
                        return sources.attr(type_source, name), fn
        return None


def _identity_guarded(value: Any) -> bool:
    """Whether ``PlanBuilder.read`` guards ``value`` by identity (``ID_MATCH``), a guard
    ``relaxed`` keeps."""
    # Constants (scalars, strings, dtypes) end a chain anyway; the rest are guarded by
    # value, by class, walked or by what they compute.
    passed_over = (torch.Tensor, torch.nn.Module, torch.SymInt, torch.SymFloat, torch.SymBool)
    if isinstance(value, (*CONSTANT_TYPES, *passed_over, types.MethodType, tuple, list, dict)):
        return False
    return not (isinstance(value, types.FunctionType) and value.__closure__ is not None)


def _runs_code(fn: types.FunctionType, code: types.CodeType, depth: int) -> bool:
    """Whether ``fn`` is ``code``'s function or wraps one in the cells its code reads."""
    if fn.__code__ is code:
        return True
    if not fn.__closure__ or depth >= 4:
        return False
    read = set(code_reads(fn.__code__).freevars_read)
    for name, cell in zip(fn.__code__.co_freevars, fn.__closure__, strict=False):
        if name not in read:
            continue
        try:
            inner = cell.cell_contents
        except ValueError:
            continue
        if isinstance(inner, types.FunctionType) and _runs_code(inner, code, depth + 1):
            return True
    return False


_ABSENT = object()


__all__ = [
    "GuardPlan",
    "PlanBuilder",
    "build_plan",
    "is_module_state_source",
    "materialize",
    "relaxed",
]
