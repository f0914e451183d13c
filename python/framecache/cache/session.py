"""The disk cache as the compiler's miss path sees it: look up before capture, store after.

``CompileContext`` (compiler/callback.py) holds one ``DiskCache`` when the cache is on.
On a miss of the in-memory cache it calls

* ``lookup(...)`` after splitting the frame's arguments and deciding dynamic dims: the
  key is computed, each stored entry of the key is read, its guards rebuilt and checked
  against the frame; the first that holds becomes the cache entry (no capture, no
  backend compile for eager and inductor). A corrupt entry is a logged miss and is
  removed, so the compile that follows replaces it.
* ``lift(...)`` after capture: the graph takes its parameters as inputs (lifting.py).
* ``store(...)`` after the backend compiled: the entry is written, or the store is
  bypassed with a logged reason when the guards or the artifact are not portable.

With a remote store (remote.py), a local miss asks it, its entry goes through the same
checks and is written locally when it holds; a compile's entry is written to both.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import logging
import os
import threading
import time
import types
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ..compiler.stats import (
    CodeStats,
    disk_build,
    disk_bypass,
    disk_corrupt,
    disk_graph_only,
    disk_hit,
    disk_miss,
    disk_store,
)
from ..plan.plan import materialize
from . import builds, eviction, key, location, portable
from . import entry as entry_mod
from . import remote as remote_mod
from .entry import CorruptEntry, Entry, UnpicklableArtifact
from .refs import NotPortable
from .store import Store

log = logging.getLogger("framecache.cache")
_STORES: dict[Path, Store] = {}
_STORES_LOCK = threading.Lock()


def store_for(directory: str | Path | None) -> Store | None:
    """The (shared per directory) store of ``directory`` or of the environment's default.

    None, after one DiskCacheWarning, when the directory is unsafe; a memory-only store
    when it cannot be created.
    """
    path = Path(directory).expanduser() if directory is not None else location.default_dir()
    path = Path(path).absolute()
    with _STORES_LOCK:
        found = _STORES.get(path)
        if found is not None:
            return found
        store = Store(path)
        try:
            location.prepare(path)
        except location.UnsafeCacheError as exc:
            log.warning("refusing the disk cache %s: %s", path, exc)
            location.warn(
                f"framecache disk cache: refusing {path}: {exc}; loading an entry runs code, "
                "so the disk cache is off for it"
            )
            store.usable = False
            store._warned = True
        except OSError as exc:
            store.fall_back(f"cannot create {path}: {exc.strerror or exc}")
        _STORES[path] = store
        return store


def reset_stores() -> None:
    """Forget the per-directory stores (their warnings and memory fallbacks)."""
    with _STORES_LOCK:
        _STORES.clear()


class Pending:
    """What lookup learnt that store needs: the key and the disk store."""

    __slots__ = ("key", "signature")

    def __init__(self, key: str, signature: list[str]) -> None:
        self.key = key
        self.signature = signature


class DiskCache:
    """The disk cache of one framecache.compile'd function (or module)."""

    def __init__(
        self,
        directory: str | Path | None,
        backend_name: str,
        size: int | None,
        remote: str | bool | None = None,
    ) -> None:
        self.directory = directory
        self.backend_name = backend_name
        self.size = size
        # framecache.compile(cudagraphs=True): wraps each loaded callable in CUDA graphs.
        self.wrap_compiled: Callable[..., Any] | None = None
        self.remote_url = remote  # a URL; None: $FRAMECACHE_REMOTE; False: no remote store

    @property
    def remote(self) -> remote_mod.RemoteStore | None:
        if self.remote_url is False:
            return None
        return remote_mod.store_for(self.remote_url if isinstance(self.remote_url, str) else None)

    def use_remote(self, remote: str | bool | None) -> None:
        """Set the remote store and import its client now, not in the first call."""
        self.remote_url = remote
        store = self.remote
        if store is not None:
            store.prepare()

    @property
    def store(self) -> Store | None:
        return store_for(self.directory if self.directory is not None else None)

    # -- the warm path -------------------------------------------------------------------
    def lookup(
        self,
        code: types.CodeType,
        f_locals: dict[str, Any],
        f_globals: dict[str, Any],
        args: Any,
        dims: dict[Any, set[int]],
        backend: Callable[..., Any],
        counters: CodeStats,
    ) -> tuple[Any, Pending | None]:
        """``(WarmEntry or None, what store() needs)`` for a frame the memory cache missed."""
        store = self.store
        if store is None:
            return None, None
        try:
            signature = key.input_signature(args, dims)
            k = key.cache_key(code, signature, self.backend_name)
        except TypeError as exc:
            disk_bypass(counters, f"no content key: {exc}")
            return None, None
        for entry_id, data in store.entries(k):
            try:
                stored = entry_mod.loads(data)
            except CorruptEntry as exc:
                log.warning("corrupt disk cache entry %s/%s: %s", k, entry_id, exc.reason)
                disk_corrupt(counters, exc.reason)
                store.remove(k, entry_id)
                continue
            loaded = self._load(stored, code, f_locals, f_globals, args, backend, counters)
            if loaded is not None:
                store.record_hit(k, entry_id)
                disk_hit(counters)
                return loaded, None
        remote = self.remote
        if remote is not None:  # the local miss asks the remote store (remote.py)
            found = remote_mod.lookup(
                remote,
                k,
                lambda data: self._load(
                    entry_mod.loads(data), code, f_locals, f_globals, args, backend, counters
                ),
            )
            if found is not None:
                if store.write(k, found[1], found[2]):
                    eviction.evict(store, self.size or location.size_limit())
                disk_hit(counters)
                return found[0], None
        disk_miss(counters)
        return None, Pending(k, signature)

    def _load(
        self,
        stored: Entry,
        code: types.CodeType,
        f_locals: dict[str, Any],
        f_globals: dict[str, Any],
        args: Any,
        backend: Callable[..., Any],
        counters: CodeStats,
    ) -> Any:
        from ..compiler import shape_guards

        try:
            plan = portable.rebuild(stored.guards)
            exported = [] if stored.shape_guards else _exports(plan, stored.call_args, args.names)
            root = materialize(plan, [source for source, _ in exported])
        except (LookupError, TypeError, ValueError) as exc:
            log.info("disk entry of %s does not apply: %s", stored.qualname, exc)
            return None
        guard_manager: Any = root
        if stored.shape_guards:
            guard_manager = shape_guards.ShapeGuardedRoot(root, stored.shape_guards, f_globals)
            ok = guard_manager.check(f_locals)
        else:
            ok = root.check(f_locals, f_globals)
        if not ok:
            return None
        try:
            compiled = self._compiled(stored, f_locals, f_globals, args, backend, counters)
        except Exception as exc:
            log.warning(
                "disk entry of %s cannot be loaded: %s: %s",
                stored.qualname,
                type(exc).__name__,
                exc,
            )
            return None
        if self.wrap_compiled is not None:  # cudagraphs=True: recorded on the first call
            graph_args = (stored.call_args, args, f_globals, f_locals, counters)
            compiled, _ = self.wrap_compiled(
                compiled, *graph_args, None, stored.dynamic != "static"
            )
        return WarmEntry(stored, compiled, guard_manager, [index for _, index in exported])

    def _compiled(
        self,
        stored: Entry,
        f_locals: dict[str, Any],
        f_globals: dict[str, Any],
        args: Any,
        backend: Callable[..., Any],
        counters: CodeStats | None = None,
    ) -> Callable[..., Any]:
        from . import artifact

        why = "its entry holds the graph only"
        if stored.artifact_kind == "inductor":
            return artifact.load_inductor(stored.artifact, str(self.store.root))  # type: ignore[union-attr]
        if stored.artifact_kind == "aoti" and self.wrap_compiled is None:
            # With CUDA graphs the graph is compiled below instead: a package's runner
            # cannot be recorded (artifact._AotiCall.capture_target).
            try:
                return artifact.load_aoti(stored.artifact, str(self.store.root))  # type: ignore[union-attr]
            except Exception as exc:  # the package does not load here: compile the graph
                log.warning("AOTInductor package of %s does not load: %s", stored.qualname, exc)
                why = f"its package does not load here ({type(exc).__name__})"
        elif stored.artifact_kind == "aoti":
            why = "a package cannot be recorded into CUDA graphs"
        if stored.artifact_kind == "eager":
            from ..compiler.lean_graph import lean_forward

            return lean_forward(artifact.load_graph(stored.graph, module=False))
        gm = artifact.load_graph(stored.graph)
        # Graph only: the backend compiles it again, on the frame's own tensors.
        log.info(
            "disk entry of %s: %s; compiling it with %s", stored.qualname, why, self.backend_name
        )
        if counters is not None:
            disk_graph_only(counters, f"loaded and compiled again ({why})")
        scope = dict(f_globals)
        scope.update(f_locals)
        inputs = [eval(expr, scope) for expr in stored.call_args]  # expressions we wrote
        return backend(gm, inputs)

    # -- the cold path -------------------------------------------------------------------
    def lift(self, capture: Any, plan: Any, counters: CodeStats) -> Any:
        """The lifted capture (``lifting.Lifted``), or None when it cannot be stored."""
        from . import lifting

        try:
            return lifting.lift(capture, plan)
        except NotPortable as exc:
            disk_bypass(counters, str(exc))
            log.info("not storing %s: %s", capture.args.code.co_qualname, exc)
            return None

    def store_entry(
        self,
        pending: Pending,
        capture: Any,
        plan: Any,
        parts: list[str],
        call_args: Sequence[str],
        compiled: Any,
        lifted_ids: set[int],
        annotation: str,
        counters: CodeStats,
    ) -> None:
        """Write the entry of a fresh compile; a logged bypass when it is not portable."""
        from . import artifact

        store = self.store
        code = capture.args.code
        deferred = isinstance(compiled, artifact.DeferredAoti)
        try:
            guards = portable.describe(plan, lifted_ids)
            if deferred:
                kind, blob = "aoti", b""  # the package comes from the builder (builds.py)
            else:
                kind, blob = artifact.compiled_bytes(self.backend_name, compiled)
                if kind == "graph" and self.backend_name == "inductor":
                    disk_graph_only(
                        counters,
                        "inductor's output cannot be saved (standalone_compile keeps no "
                        "artifact with TORCHINDUCTOR_FORCE_DISABLE_CACHES set, or it fell back "
                        "to compile_fx): a warm start compiles the graph again",
                    )
            # Inductor's artifact is the whole compile; other kinds need the graph itself.
            graph = b"" if kind == "inductor" else artifact.graph_bytes(capture.gm)
            spec = capture.out_spec
            import torch.utils._pytree as pytree

            stored = Entry(
                qualname=code.co_qualname,
                backend=self.backend_name,
                guards=guards,
                shape_guards=list(parts),
                call_args=list(call_args),
                out_spec=None if spec.is_leaf() else pytree.treespec_dumps(spec),
                artifact_kind=kind,
                artifact=blob,
                graph=graph,
                dynamic=annotation,
                created=time.time(),
            )
            data = entry_mod.dumps(stored)
        except (NotPortable, UnpicklableArtifact) as exc:
            reason = exc.reason if isinstance(exc, UnpicklableArtifact) else str(exc)
            disk_bypass(counters, reason)
            log.info("not storing %s: %s", code.co_qualname, reason)
            if deferred:
                self.package_only(capture.gm, compiled, counters)
            return
        if store is None:
            return
        entry_id = hashlib.sha256(repr((guards, parts)).encode()).hexdigest()[:32]
        if deferred:
            if store.usable:
                self._build(store, pending.key, entry_id, data, graph, compiled, counters)
                return
            # A memory-only store: nothing a builder could write to. Keep the graph.
            data = entry_mod.dumps(dataclasses.replace(stored, artifact_kind="graph"))
        self.write(pending.key, entry_id, data, counters)

    def package_only(self, gm: Any, compiled: Any, counters: CodeStats) -> None:
        """For an entry that is not stored: its package, built after the call and run by
        this process once it is there (builds.py), as a stored entry's is."""
        from . import artifact

        store = self.store
        if store is None or not store.usable or not isinstance(compiled, artifact.DeferredAoti):
            return
        try:
            graph = artifact.graph_bytes(gm)
        except UnpicklableArtifact as exc:
            log.info("no package for %s: %s", counters.name, exc.reason)
            return
        job_id = hashlib.sha256(graph).hexdigest()[:32]
        self._build(store, f"process-{os.getpid()}", job_id, None, graph, compiled, counters)

    def _build(
        self,
        store: Store,
        k: str,
        entry_id: str,
        data: bytes | None,
        graph: bytes,
        compiled: Any,
        counters: CodeStats,
    ) -> None:
        """Start the package build of ``compiled`` (a DeferredAoti), which writes ``data``
        (None: nothing) with its package and hands the package back to ``compiled``."""
        try:
            builds.submit(
                store.root,
                k,
                entry_id,
                data,
                graph,
                compiled.inputs,
                self.size if data is not None else None,
                self.remote_url if data is not None else False,
                functools.partial(compiled.adopt, root=str(store.root)),
            )
        except OSError as exc:
            # An entry that is not stored after all (a package-only build's already was not).
            if data is not None:
                disk_bypass(counters, f"cannot start the package build: {exc}")
            log.warning("no package for %s: cannot start its build: %s", counters.name, exc)
            return
        disk_build(counters)

    def write(self, k: str, entry_id: str, data: bytes, counters: CodeStats | None) -> None:
        """Write an encoded entry: the store, the remote store, then eviction."""
        store = self.store
        if store is None:
            return
        store.write(k, entry_id, data)
        if counters is not None:
            disk_store(counters)
        remote = self.remote
        if remote is not None:
            remote.put(k, entry_id, data, after_miss=True)
        if store.usable:
            limit = self.size if self.size is not None else location.size_limit()
            eviction.evict(store, limit)


def _exports(plan: Any, call_args: Sequence[str], params: Sequence[str]) -> list[tuple[Any, int]]:
    """(source, index into call_args) of each lifted module parameter or buffer the plan
    guards: the guard tree exports it to the wrapper (``materialize``), as a fresh compile's
    does. A stored entry names its graph inputs by expression, which each such source
    spells one way (``lifting.wrapper_expr``)."""
    from ..plan.guards import TensorMatch
    from ..plan.sources import is_module_state_source
    from .lifting import wrapper_expr

    where = {expr: i for i, expr in enumerate(call_args)}
    out: list[tuple[Any, int]] = []
    taken: set[int] = set()
    names = set(params)
    for guard in plan.guards:
        if not isinstance(guard, TensorMatch) or not is_module_state_source(guard.source):
            continue
        try:
            index = where.get(wrapper_expr(guard.source, names))
        except NotPortable:
            continue
        if index is not None and index not in taken:
            taken.add(index)
            out.append((guard.source, index))
    return out


class WarmEntry:
    """A stored entry that holds for the frame: what the compiler needs to run it.

    ``exported``: indices into ``call_args`` of the inputs its guard tree exports, in slot
    order (``codegen.wrapper_code``).
    """

    __slots__ = ("annotation", "call_args", "compiled", "exported", "guard_manager", "out_spec")

    def __init__(
        self, stored: Entry, compiled: Any, guard_manager: Any, exported: Sequence[int] = ()
    ) -> None:
        import torch.utils._pytree as pytree

        # A single-tensor output is stored as None: its structure is a bare leaf.
        if stored.out_spec is not None:
            self.out_spec = pytree.treespec_loads(stored.out_spec)
        else:
            self.out_spec = pytree.tree_flatten(0)[1]
        self.call_args = list(stored.call_args)
        self.compiled = compiled
        self.guard_manager = guard_manager
        self.exported = list(exported)
        self.annotation = f"{stored.backend}; {stored.dynamic}; disk"


__all__ = ["DiskCache", "Pending", "WarmEntry", "reset_stores", "store_for"]
