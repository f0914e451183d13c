// The only file that reaches into CPython's internals.
//
// It alone defines Py_BUILD_CORE (around the internal includes only) and
// offers small accessors for the parts of an interpreter frame the hook reads.
// Everything version-specific is decided here: the rest of framecache sees
// `cpy::Frame` as an opaque type and calls these functions. Only .cpp files
// include this header; other headers forward-declare `_PyInterpreterFrame`.
//
// Supported: CPython 3.11, 3.12 and 3.13, GIL builds only. One flag per
// version is defined below (FRAMECACHE_PY311 / FRAMECACHE_PY312 /
// FRAMECACHE_PY313, plus FRAMECACHE_PY312_PLUS) and used at the few places
// that differ; each of those says which CPython change made it necessary and
// when it can go. Facts were read from the 3.11.7, 3.12.1 and 3.13.0 headers
// (Include/internal/pycore_frame.h, cpython/pystate.h, cpython/code.h,
// cpython/dictobject.h) and from Python/ceval.c, Python/frame.c and
// Objects/dictobject.c of those releases.
//
// 3.14 turns the frame's object fields into _PyStackRef tagged pointers and
// removes ma_version_tag: it is refused below rather than guessed at.
#pragma once

#include <Python.h>

#include <cstdint>
#include <cstring>

#if PY_VERSION_HEX < 0x030B0000
#error "framecache needs CPython 3.11, 3.12 or 3.13 (this is older than 3.11)"
#elif PY_VERSION_HEX < 0x030C0000
#define FRAMECACHE_PY311 1
#elif PY_VERSION_HEX < 0x030D0000
#define FRAMECACHE_PY312 1
#define FRAMECACHE_PY312_PLUS 1
#elif PY_VERSION_HEX < 0x030E0000
#define FRAMECACHE_PY313 1
#define FRAMECACHE_PY312_PLUS 1
#else
#error "framecache supports CPython 3.11 to 3.13; 3.14 changes the frame layout (_PyStackRef)"
#endif
#ifdef Py_GIL_DISABLED
// The guard trees, the co_extra state and the dict tags below all rely on
// the GIL to serialise access. A free-threaded build needs all of it redone.
#error "framecache does not support free-threaded CPython builds (Py_GIL_DISABLED)"
#endif

#ifndef Py_BUILD_CORE
#define Py_BUILD_CORE 1
#define FRAMECACHE_DEFINED_BUILD_CORE
#endif
#ifdef FRAMECACHE_PY312
// Two 3.12 headers that do not compile as C++ once Py_BUILD_CORE is on, both
// pulled in by pycore_dict.h and pycore_interp.h, so this comes before any
// internal include. pycore_atomic.h uses C11 <stdatomic.h> names
// when HAVE_STD_ATOMIC is set; without it, it uses the GCC builtins, which
// C++ has (the layout is the same: a struct around the value). pycore_gc.h
// defines an inline _PyGC_FINALIZED that the public macro of the same name
// turns into a clashing PyObject_GC_IsFinalized (gh-108216, fixed in 3.13).
// Both go with 3.12 support.
#undef HAVE_STD_ATOMIC
#undef _PyGC_FINALIZED
#endif
#include <internal/pycore_code.h>
#include <internal/pycore_dict.h>
#include <internal/pycore_frame.h>
#ifdef FRAMECACHE_PY312_PLUS
// The interpreter's sys.monitoring state (interp->monitors), 3.12+.
#include <internal/pycore_interp.h>
#endif
#ifdef FRAMECACHE_PY313
// _PyEval_FrameClearAndPop (see finish_unrun_frame), exported since 3.13.
#include <internal/pycore_ceval.h>
// 3.13 moved _PySet_NextEntry from cpython/setobject.h to the internal
// header (still exported). Remove with 3.13 support, or when the guards
// iterate sets with the public PyObject_GetIter instead.
#include <internal/pycore_setobject.h>
#endif
#ifdef FRAMECACHE_PY312_PLUS
// The range and tuple iterator structs (see range_iter_rest below).
#include <internal/pycore_range.h>
#include <internal/pycore_tuple.h>
#endif
#ifdef FRAMECACHE_DEFINED_BUILD_CORE
#undef Py_BUILD_CORE
#undef FRAMECACHE_DEFINED_BUILD_CORE
#endif

#include "framecache/guards/dict_watch.h"

namespace framecache::cpy {

using Frame = _PyInterpreterFrame;
using EvalFrameFn = _PyFrameEvalFunction;

// --- the evaluator slot --------------------------------------------------
inline EvalFrameFn get_eval_frame(PyInterpreterState* interp) {
  return _PyInterpreterState_GetEvalFrameFunc(interp);
}
inline void set_eval_frame(PyInterpreterState* interp, EvalFrameFn fn) {
  _PyInterpreterState_SetEvalFrameFunc(interp, fn);
}
// The interpreter's own evaluator. Returns a new reference (or null + error).
inline PyObject* eval_frame_default(PyThreadState* ts, Frame* frame, int throwflag) {
  return _PyEval_EvalFrameDefault(ts, frame, throwflag);
}
// The default evaluator itself, to reinstall: setting exactly this function
// lets CPython go back to its own fast path (it then stores null).
inline EvalFrameFn default_eval_frame_fn() { return _PyEval_EvalFrameDefault; }
inline bool is_default_eval_frame(EvalFrameFn fn) { return fn == _PyEval_EvalFrameDefault; }

// --- frame fields (all borrowed) ------------------------------------------
inline PyCodeObject* frame_code(Frame* f) {
#ifdef FRAMECACHE_PY313
  // 3.13 (gh-100987) renamed f_code to f_executable, a PyObject* that may be
  // None for the C-stack trampoline frames; those never reach an evaluator.
  return _PyFrame_GetCode(f);
#else
  return f->f_code;
#endif
}
// The function being run, or null. Every frame an evaluator is given has one
// (module and class bodies too: PyEval_EvalCode makes one).
inline PyFunctionObject* frame_function(Frame* f) {
#ifdef FRAMECACHE_PY311
  return f->f_func;
#else
  // 3.12 (gh-99003) renamed f_func to f_funcobj and typed it PyObject*: 3.13's
  // trampoline frames hold None there. Goes with 3.11 support (the rename) and
  // 3.14 (the field becomes a _PyStackRef).
  PyObject* fn = f->f_funcobj;
  return PyFunction_Check(fn) ? reinterpret_cast<PyFunctionObject*>(fn) : nullptr;
#endif
}
inline PyObject* frame_globals(Frame* f) { return f->f_globals; }
inline PyObject* frame_builtins(Frame* f) { return f->f_builtins; }
// The locals mapping of module and class-body frames; null for functions.
inline PyObject* frame_locals_mapping(Frame* f) { return f->f_locals; }
inline PyObject** frame_fast_locals(Frame* f) { return f->localsplus; }

// A frame that already ran an instruction is a resumed generator/coroutine
// (or a frame handed back by another evaluator): it must run normally, never
// be looked up again. Only a fresh frame pushed by a call is looked up.
//
// How "fresh" shows differs per version. 3.11 and 3.12 start prev_instr one
// code unit before the first instruction (lasti == -1). 3.13 (gh-117045)
// replaced prev_instr with instr_ptr, which points at the next instruction
// to run, so a fresh frame has instr_ptr == the first code unit (lasti 0).
// A generator's frame is made by RETURN_GENERATOR, the first instruction of
// a generator code after the MAKE_CELL/COPY_FREE_VARS prefix, and its
// instruction pointer is past that when it is resumed; a frame owned by a
// generator is never fresh, whatever the version, so that is checked too.
inline bool frame_started(Frame* f) {
  if (f->owner == FRAME_OWNED_BY_GENERATOR) return true;
#ifdef FRAMECACHE_PY313
  return f->instr_ptr != _PyCode_CODE(frame_code(f));
#else
  return _PyInterpreterFrame_LASTI(f) >= 0;
#endif
}
// Index (in code units) of the last instruction started, -1 before the first
// one on every version (3.13's instr_ptr-based LASTI reads 0 there).
inline int frame_lasti(Frame* f) { return frame_started(f) ? _PyInterpreterFrame_LASTI(f) : -1; }
// The closure tuple (or null) of the frame's function. Before COPY_FREE_VARS
// runs, free variables live only here, not yet in the fast locals.
inline PyObject* frame_closure(Frame* f) {
  PyFunctionObject* fn = frame_function(f);
  return fn ? fn->func_closure : nullptr;
}

// Who clears and pops a frame the hook answered without running it.
//
// A PEP 523 evaluator is handed a frame that its caller pushed on the
// thread's data stack and initialised (arguments in localsplus, strong
// references to the function, the code and f_locals). Someone must drop
// those references and pop the frame exactly once.
//
//  * 3.11: whoever pushed the frame does it after the evaluator returns
//    (_PyEval_Vector calls _PyEvalFrameClearAndPop; the default evaluator
//    leaves entry frames alone). The hook has nothing to do.
//  * 3.12 and 3.13 (gh-96421, the entry-frame rework): the default
//    evaluator clears and pops the frame it ran, on return and on error
//    (_PyEvalFrameClearAndPop -> clear_thread_frame), and _PyEval_Vector no
//    longer does. A frame the hook answers some other way (a cached entry
//    run as a separate call, an error before anything ran) would leak its
//    references and its stack space unless the hook does what
//    clear_thread_frame does. That is this function.
//
// Preconditions, true of every frame the hook answers (eval_frame.cpp only
// calls this for frames it did not pass to an evaluator):
//  - owned by the thread (a generator's frame is always started, so it is
//    run normally and cleared by gen_send_ex2 / the evaluator);
//  - the top of the data stack: the cached code ran as a separate call
//    whose frames were pushed above it and are already popped;
//  - never linked into the frame chain and never given a frame object: the
//    default evaluator links a frame (previous, current_frame) only when it
//    starts running it, and a frame object can only be made for a complete
//    frame (_PyFrame_GetFrameObject asserts !_PyFrame_IsIncomplete), which a
//    frame before its first RESUME is not.
// So clearing is: drop the fast locals (stacktop covers exactly the
// co_nlocalsplus slots _PyFrame_Initialize set), f_locals, the function and
// the code, then pop. 3.13 exports the interpreter's own routine
// (_PyEval_FrameClearAndPop, PyAPI_FUNC in pycore_ceval.h); 3.12 exports
// neither _PyFrame_ClearExceptCode nor _PyThreadState_PopFrame (both hidden
// by -fvisibility=hidden), so for 3.12 the few lines are repeated here, the
// chunk free through the public arena allocator that _PyObject_VirtualFree
// wraps. Remove the 3.12 branch with 3.12 support; revisit on 3.14, where
// the fields become _PyStackRef.
inline void finish_unrun_frame(PyThreadState* ts, Frame* f) {
#if defined(FRAMECACHE_PY311)
  (void)ts;
  (void)f;
#elif defined(FRAMECACHE_PY313)
  assert(f->owner == FRAME_OWNED_BY_THREAD);
  assert(f->frame_obj == nullptr);
  assert(reinterpret_cast<PyObject**>(f) + frame_code(f)->co_framesize == ts->datastack_top);
  _PyEval_FrameClearAndPop(ts, f);
#else
  assert(f->owner == FRAME_OWNED_BY_THREAD);
  assert(f->frame_obj == nullptr);
  assert(reinterpret_cast<PyObject**>(f) + f->f_code->co_framesize == ts->datastack_top);
  // As clear_thread_frame: finalizers run by these decrefs count one C level.
  ts->c_recursion_remaining--;
  for (int i = 0; i < f->stacktop; i++) Py_XDECREF(f->localsplus[i]);
  f->stacktop = 0;
  Py_XDECREF(f->f_locals);
  Py_DECREF(f->f_funcobj);
  Py_DECREF(f->f_code);
  ts->c_recursion_remaining++;
  // _PyThreadState_PopFrame.
  PyObject** base = reinterpret_cast<PyObject**>(f);
  _PyStackChunk* chunk = ts->datastack_chunk;
  if (base == &chunk->data[0]) {
    // The frame opened this chunk: go back to the previous one (the root
    // chunk is never popped, push_chunk guarantees a previous one).
    _PyStackChunk* previous = chunk->previous;
    ts->datastack_top = &previous->data[previous->top];
    ts->datastack_chunk = previous;
    ts->datastack_limit = reinterpret_cast<PyObject**>(reinterpret_cast<char*>(previous) +
                                                       previous->size);
    PyObjectArenaAllocator arena;
    PyObject_GetArenaAllocator(&arena);
    arena.free(arena.ctx, chunk, chunk->size);
  } else {
    ts->datastack_top = base;
  }
#endif
}
// True where the hook must call finish_unrun_frame at all (3.12+).
#ifdef FRAMECACHE_PY311
inline constexpr bool kHookFinishesUnrunFrames = false;
#else
inline constexpr bool kHookFinishesUnrunFrames = true;
#endif

// --- the thread's tracing state ---------------------------------------------
#ifndef FRAMECACHE_PY311
// 3.12+ only (3.11 has no sys.monitoring); the #ifndef goes with 3.11 support.
// The tools with any of the first N events on, in a monitors array (one byte of tool
// bits per event): the bytes ORed as two overlapping 8-byte words, ~10 instructions where
// a byte loop costs ~60 on every frame the hook runs.
template <size_t N>
inline uint8_t any_tool(const uint8_t* tools) {
  static_assert(N >= 8 && N <= 16, "two overlapping 8-byte words cover N bytes");
  uint64_t low;
  uint64_t high;
  std::memcpy(&low, tools, 8);
  std::memcpy(&high, tools + N - 8, 8);
  uint64_t x = low | high;
  x |= x >> 32;
  x |= x >> 16;
  x |= x >> 8;
  return static_cast<uint8_t>(x);
}
#endif

// True while frames must run normally so that debuggers, profilers and
// coverage tools see the real code: sys.settrace/sys.setprofile is set on
// this thread, a trace/profile/monitoring callback is running, or a
// sys.monitoring tool has events on (globally, or locally on `code`).
//
// 3.11 kept one flag for settrace/setprofile (cframe->use_tracing; see below). 3.12
// (PEP 669) removed it: settrace/setprofile became sys.monitoring tools 6 and
// 7 whose events are global but whose callbacks check the thread's
// c_tracefunc/c_profilefunc, so those two per-thread fields decide for them;
// tools 0-5 (debuggers, coverage, cProfile since 3.12, optimizers) are read
// from interp->monitors and the code's local monitors. tstate->tracing counts
// running callbacks on every version. The 3.11 branch goes with 3.11 support.
inline bool tracing_active(PyThreadState* ts, PyCodeObject* code) {
#ifdef FRAMECACHE_PY311
  // The two functions, not cframe->use_tracing: the flag is CPython's derived copy of
  // them, which a capture turns off for library frames while its profile function is
  // installed (run_with_capture_events); those frames still run as they are.
  (void)code;
  return ts->tracing != 0 || ts->c_tracefunc != nullptr || ts->c_profilefunc != nullptr;
#else
  if (ts->tracing != 0 || ts->c_tracefunc != nullptr || ts->c_profilefunc != nullptr) return true;
  constexpr uint8_t kLegacyTools =
      (1u << PY_MONITORING_SYS_PROFILE_ID) | (1u << PY_MONITORING_SYS_TRACE_ID);
  uint8_t tools = any_tool<_PY_MONITORING_UNGROUPED_EVENTS>(ts->interp->monitors.tools);
  if (code->_co_monitoring != nullptr) {
    // Only the first _PY_MONITORING_LOCAL_EVENTS bytes of the local array are events.
    tools |= any_tool<_PY_MONITORING_LOCAL_EVENTS>(code->_co_monitoring->local_monitors.tools);
  }
  return (tools & ~kLegacyTools) != 0;
#endif
}

// --- 3.11's per-evaluation tracing flag -------------------------------------
// 3.11 decides for each C-level evaluation whether its frame emits trace and profile
// events: cframe->use_tracing (255 or 0), copied from the caller's cframe when
// _PyEval_EvalFrameDefault starts and copied back to it when it ends. While the flag is
// 255 every instruction goes through the tracing path with its specialisation undone, so
// a profile function slows all Python code on the thread, not only the frames it cares
// about. The capture's profile filter (capture_profile.h) uses these to give each frame
// the flag its code needs. 3.12 replaced the flag with sys.monitoring's per-code
// instrumentation; the 3.11 branch goes with 3.11 support.
#ifdef FRAMECACHE_PY311
inline constexpr bool kPerFrameTracingFlag = true;
// The flag of the evaluation that is calling (the frame about to start inherits it).
inline uint8_t caller_tracing_flag(PyThreadState* ts) { return ts->cframe->use_tracing; }
inline void set_caller_tracing_flag(PyThreadState* ts, uint8_t flag) {
  ts->cframe->use_tracing = flag;
}
// What CPython itself would set the flag to now (_PyThreadState_UpdateTracingState).
inline uint8_t tracing_flag_now(PyThreadState* ts) {
  const bool on = ts->tracing == 0 && (ts->c_tracefunc != nullptr || ts->c_profilefunc != nullptr);
  return on ? 255 : 0;
}
#else
inline constexpr bool kPerFrameTracingFlag = false;
inline uint8_t caller_tracing_flag(PyThreadState*) { return 0; }
inline void set_caller_tracing_flag(PyThreadState*, uint8_t) {}
inline uint8_t tracing_flag_now(PyThreadState*) { return 0; }
#endif
// The thread's profile function and its argument (borrowed); the same fields on 3.11-3.13.
inline Py_tracefunc profile_function(PyThreadState* ts) { return ts->c_profilefunc; }
inline PyObject* profile_object(PyThreadState* ts) { return ts->c_profileobj; }
inline bool in_trace_callback(PyThreadState* ts) { return ts->tracing != 0; }

// True once the interpreter has started finalizing (Py_FinalizeEx past its
// atexit handlers): module globals may already be cleared and sys.meta_path
// is None, so the hook compiles nothing then. 3.13 made the function public
// as Py_IsFinalizing; 3.11 and 3.12 export it as _Py_IsFinalizing. The 3.11/3.12
// branch goes with their support.
inline bool interpreter_finalizing() {
#ifdef FRAMECACHE_PY313
  return Py_IsFinalizing() != 0;
#else
  return _Py_IsFinalizing() != 0;
#endif
}

// --- code objects ---------------------------------------------------------
inline int code_nlocalsplus(PyCodeObject* co) { return co->co_nlocalsplus; }
inline int code_nfreevars(PyCodeObject* co) { return co->co_nfreevars; }
// Borrowed str (co_qualname exists from 3.11 on; unstable struct, so here).
inline PyObject* code_qualname(PyCodeObject* co) { return co->co_qualname; }
// Borrowed tuple of names for every fast local, cell and free variable.
inline PyObject* code_localsplus_names(PyCodeObject* co) { return co->co_localsplusnames; }
inline bool code_slot_is_free(PyCodeObject* co, int i) {
  return (_PyLocals_GetKind(co->co_localspluskinds, i) & CO_FAST_FREE) != 0;
}
inline bool code_slot_is_cell(PyCodeObject* co, int i) {
  return (_PyLocals_GetKind(co->co_localspluskinds, i) & CO_FAST_CELL) != 0;
}
// A slot of an inlined comprehension's variable (PEP 709, 3.12+): set only
// while the comprehension runs, not a local of the function as Python shows
// it (frame.f_locals and locals() skip it). Never set in a fresh frame.
inline bool code_slot_is_hidden(PyCodeObject* co, int i) {
#ifdef FRAMECACHE_PY311
  (void)co;
  (void)i;
  return false;
#else
  return (_PyLocals_GetKind(co->co_localspluskinds, i) & CO_FAST_HIDDEN) != 0;
#endif
}

// --- co_extra ----------------------------------------------------------------
// 3.12 renamed the co_extra API PyUnstable_* (PEP 689); the old names remain
// as inline aliases in 3.12/3.13. The 3.11 branch goes with 3.11 support.
inline Py_ssize_t request_code_extra_index(freefunc free) {
#ifdef FRAMECACHE_PY311
  return _PyEval_RequestCodeExtraIndex(free);
#else
  return PyUnstable_Eval_RequestCodeExtraIndex(free);
#endif
}
// The slot `index` of co_extra, or null. Read directly rather than through
// _PyCode_GetExtra / PyUnstable_Code_GetExtra: the hook reads it for every
// Python call, and the exported function (a call through the PLT, a type
// check and an error path) costs about as much again as the rest of the
// SKIP exit. co_extra points to CPython's private _PyCodeObjectExtra, a
// size followed by the slots, defined in Objects/codeobject.c with the same
// layout from 3.6 to 3.13; the mirror below goes when that layout changes
// (3.14 keeps it, but is refused above for other reasons).
struct CodeExtraLayout {
  Py_ssize_t size;
  void* slots[1];
};
inline void* code_get_extra(PyCodeObject* co, Py_ssize_t index) {
  const auto* extra = static_cast<const CodeExtraLayout*>(co->co_extra);
  if (extra == nullptr || index < 0 || index >= extra->size) return nullptr;
  return extra->slots[index];
}
// Returns 0, or -1 with an exception set.
inline int code_set_extra(PyCodeObject* co, Py_ssize_t index, void* extra) {
#ifdef FRAMECACHE_PY311
  return _PyCode_SetExtra(reinterpret_cast<PyObject*>(co), index, extra);
#else
  return PyUnstable_Code_SetExtra(reinterpret_cast<PyObject*>(co), index, extra);
#endif
}

// --- dicts ------------------------------------------------------------------
// The tag DICT_VERSION compares (guards/dict_version.h): equal tags of one
// exact dict mean the same dict object with the same contents; 0 means "no
// tag", never remembered.
//
// 3.11: the dict's own PEP 509 version tag (ma_version_tag).
// 3.12 deprecated that field (PEP 699, removed in 3.14), so from 3.12 on the
// tag comes from framecache's dict watcher (guards/dict_watch.h). Both see
// the same mutations: CPython bumps ma_version_tag exactly where it notifies
// watchers (_PyDict_NotifyEvent).
// 3.13 stores an object's attributes in inline values that its materialised
// __dict__ shares (ma_values == the object's values); obj.attr = v then
// writes the values directly, firing no watcher and leaving ma_version_tag
// alone (store_instance_attr_lock_held; checked on 3.13.0). Such a dict gets
// no tag. 3.12 moves the values into the dict when it is materialised, so
// every store goes through the dict there.
inline uint64_t dict_version(PyObject* dict) {
#ifdef FRAMECACHE_PY311
  return reinterpret_cast<PyDictObject*>(dict)->ma_version_tag;
#else
#ifdef FRAMECACHE_PY313
  if (reinterpret_cast<PyDictObject*>(dict)->ma_values != nullptr) return 0;
#endif
  return guards::dict_watch::tag(dict);
#endif
}

// --- sets, attributes, types ---------------------------------------------------
// Iterates a set or frozenset without running Python; 1 with borrowed key and
// its hash, 0 at the end. (3.13 moved it to the internal header, see above.)
inline int set_next_entry(PyObject* set, Py_ssize_t* pos, PyObject** key, Py_hash_t* hash) {
  return _PySet_NextEntry(set, pos, key, hash);
}
// getattr that reports a missing attribute without raising: 1 with a new
// reference in *attr, 0 absent (*attr null), -1 with an exception set.
// 3.13 made it public as PyObject_GetOptionalAttr and stopped exporting
// _PyObject_LookupAttr; the 3.11/3.12 branch goes with 3.12 support.
inline int lookup_attr(PyObject* obj, PyObject* name, PyObject** attr) {
#ifdef FRAMECACHE_PY313
  return PyObject_GetOptionalAttr(obj, name, attr);
#else
  return _PyObject_LookupAttr(obj, name, attr);
#endif
}
// True if a type's version tag is valid (set, and reset by any change to the
// type or its bases). 3.11 and 3.12 mark it with Py_TPFLAGS_VALID_VERSION_TAG;
// 3.13 no longer sets that flag ("legacy") and says it with a non-zero tag
// alone. The flag test goes with 3.12 support.
inline bool valid_version_tag(PyTypeObject* t) {
#ifdef FRAMECACHE_PY313
  return t->tp_version_tag != 0;
#else
  return PyType_HasFeature(t, Py_TPFLAGS_VALID_VERSION_TAG) && t->tp_version_tag != 0;
#endif
}
// A type's own dict, as a new reference (null only for a type not yet ready).
// 3.12 (gh-94673) keeps the dicts of static builtin types per interpreter,
// leaving tp_dict null for them; PyType_GetDict finds either. The 3.11
// branch goes with 3.11 support.
inline PyObject* type_dict(PyTypeObject* type) {
#ifdef FRAMECACHE_PY311
  return Py_XNewRef(type->tp_dict);
#else
  return PyType_GetDict(type);
#endif
}

// --- iterators (RANGE_ITERATOR_MATCH, TUPLE_ITERATOR_LEN) ----------------------
// 3.11 keeps rangeiterobject and tupleiterobject in Objects/rangeobject.c and
// Objects/tupleobject.c, in no header: mirrored here. 3.12 moved both into
// internal headers (pycore_range.h, pycore_tuple.h) and dropped the range
// iterator's index (its start advances instead). The guards still
// probe the layout at run time (leaf_guards_iterators.cpp) before trusting it.
// The 3.11 mirrors go with 3.11 support.
#ifdef FRAMECACHE_PY311
struct RangeIterObject {
  PyObject ob_base;
  long index;
  long start;
  long step;
  long len;
};
struct TupleIterObject {
  PyObject ob_base;
  Py_ssize_t it_index;
  PyTupleObject* it_seq;  // null once exhausted
};
#else
using RangeIterObject = _PyRangeIterObject;
using TupleIterObject = _PyTupleIterObject;
#endif
inline constexpr Py_ssize_t kRangeIterSize = sizeof(RangeIterObject);
inline constexpr Py_ssize_t kTupleIterSize = sizeof(TupleIterObject);

// What an exact range_iterator (borrowed) has left: `length` values from
// `first` by `step`, read without advancing it.
struct RangeRest {
  long first = 0;
  long length = 0;
  long step = 1;
};
inline RangeRest range_iter_rest(PyObject* it) {
  const auto* r = reinterpret_cast<const RangeIterObject*>(it);
  RangeRest rest;
  rest.step = r->step;
#ifdef FRAMECACHE_PY311
  rest.length = r->index < r->len ? r->len - r->index : 0;
  // Unsigned arithmetic, as CPython's rangeiter_next does, to avoid overflow.
  rest.first = static_cast<long>(static_cast<unsigned long>(r->start) +
                                 static_cast<unsigned long>(r->index) *
                                     static_cast<unsigned long>(r->step));
#else
  rest.length = r->len > 0 ? r->len : 0;
  rest.first = r->start;
#endif
  return rest;
}
// An exact tuple_iterator's (borrowed) index and tuple (null once exhausted).
inline Py_ssize_t tuple_iter_index(PyObject* it) {
  return reinterpret_cast<const TupleIterObject*>(it)->it_index;
}
inline PyObject* tuple_iter_seq(PyObject* it) {
  return reinterpret_cast<PyObject*>(reinterpret_cast<const TupleIterObject*>(it)->it_seq);
}

// --- instance attribute storage (the getattr accessors' fast path) ----------
// An instance of a Py_TPFLAGS_MANAGED_DICT type (a class statement without
// __slots__) keeps its attributes in a values array laid out like its type's
// shared keys (PyHeapTypeObject.ht_cached_keys) until a real __dict__ is made
// (obj.__dict__, too many attributes, a key the shared keys cannot take);
// then the dict holds them. Where these two live differs by version, and the
// accessors of pycore_object.h that say it do not compile as C++, hence the
// arithmetic here:
//  * 3.11: the values pointer is the word 4 before the object (null once a
//    dict exists) and the dict the word 3 before (_PyObject_ValuesPointer,
//    _PyObject_ManagedDictPointer);
//  * 3.12: one word 3 before the object, a PyDictOrValues union: the values
//    pointer minus one (odd, so tagged by its low bit) or the dict pointer
//    (_PyObject_DictOrValuesPointer, _PyDictOrValues_IsValues/GetValues);
//  * 3.13: the values inline after the object with a `valid` flag, and a dict
//    that may share them. Not read: there the getattr accessors take
//    PyObject_GetAttr for managed-dict instances (correct, slower). Port it,
//    then drop this flag; the 3.11 branch goes with 3.11's end of life
//    (October 2027), the 3.12 one with 3.12's (October 2028).
#if defined(FRAMECACHE_PY311) || defined(FRAMECACHE_PY312)
inline constexpr bool kManagedDictReadable = true;
#else
inline constexpr bool kManagedDictReadable = false;
#endif
// Borrowed values array of a managed-dict instance, or null (a dict holds its
// attributes, or this version's layout is not read).
inline PyObject** instance_values(PyObject* obj) {
#if defined(FRAMECACHE_PY311)
  PyDictValues* values = *(reinterpret_cast<PyDictValues**>(obj) - 4);
  return values != nullptr ? values->values : nullptr;
#elif defined(FRAMECACHE_PY312)
  const uintptr_t word = *(reinterpret_cast<uintptr_t*>(obj) - 3);
  if ((word & 1) == 0) return nullptr;
  return reinterpret_cast<PyDictValues*>(word + 1)->values;
#else
  (void)obj;
  return nullptr;
#endif
}
// Borrowed materialised __dict__ of a managed-dict instance, or null.
inline PyObject* managed_dict(PyObject* obj) {
#if defined(FRAMECACHE_PY311)
  return *(reinterpret_cast<PyObject**>(obj) - 3);
#elif defined(FRAMECACHE_PY312)
  const uintptr_t word = *(reinterpret_cast<uintptr_t*>(obj) - 3);
  return (word & 1) != 0 ? nullptr : reinterpret_cast<PyObject*>(word);
#else
  (void)obj;
  return nullptr;
#endif
}
// Index of the interned str `name` in the shared keys of a managed-dict type
// (3.11: ht_cached_keys, its str-only entries DK_UNICODE_ENTRIES), or -1. The
// keys are append-only, so an index stays valid as long as the type's version
// tag, which is what CPython's own LOAD_ATTR_INSTANCE_VALUE relies on.
inline Py_ssize_t shared_keys_index(PyTypeObject* type, PyObject* name) {
  PyDictKeysObject* keys = reinterpret_cast<PyHeapTypeObject*>(type)->ht_cached_keys;
  if (keys == nullptr || !DK_IS_UNICODE(keys)) return -1;
  PyDictUnicodeEntry* entries = DK_UNICODE_ENTRIES(keys);
  for (Py_ssize_t i = 0; i < keys->dk_nentries; ++i) {
    if (entries[i].me_key == name) return i;
  }
  return -1;
}

}  // namespace framecache::cpy
