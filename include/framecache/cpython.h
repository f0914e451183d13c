// The only file that reaches into CPython's internals.
//
// It alone defines Py_BUILD_CORE (around the internal includes only) and
// offers small accessors for the parts of an interpreter frame the hook reads.
// Everything version-specific is decided here: the rest of framecache sees
// `cpy::Frame` as an opaque type and calls these functions. Only .cpp files
// include this header; other headers forward-declare `_PyInterpreterFrame`.
//
// Supported: CPython 3.11 (the layout of _PyInterpreterFrame in
// Include/internal/pycore_frame.h of 3.11). 3.12 renames f_func to f_funcobj,
// makes the evaluator clear the frames it ran, and renames the co_extra API to
// PyUnstable_*; 3.13 renames f_code and prev_instr. Each of those lands here,
// behind FRAMECACHE_PY312 / FRAMECACHE_PY313 flags, when 3.12+ is supported.
#pragma once

#include <Python.h>

#if PY_VERSION_HEX < 0x030B0000 || PY_VERSION_HEX >= 0x030C0000
#error "framecache's frame hook supports CPython 3.11 only; 3.12/3.13 are not supported yet"
#endif
#ifdef Py_GIL_DISABLED
#error "framecache does not support free-threaded CPython builds"
#endif

#ifndef Py_BUILD_CORE
#define Py_BUILD_CORE 1
#define FRAMECACHE_DEFINED_BUILD_CORE
#endif
#include <internal/pycore_code.h>
#include <internal/pycore_dict.h>
#include <internal/pycore_frame.h>
#ifdef FRAMECACHE_DEFINED_BUILD_CORE
#undef Py_BUILD_CORE
#undef FRAMECACHE_DEFINED_BUILD_CORE
#endif

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

// --- frame fields (all borrowed) ------------------------------------------
inline PyCodeObject* frame_code(Frame* f) { return f->f_code; }
// The function being run. 3.11 gives every frame one (module and class bodies
// too). 3.12: the field becomes f_funcobj.
inline PyFunctionObject* frame_function(Frame* f) { return f->f_func; }
inline PyObject* frame_globals(Frame* f) { return f->f_globals; }
inline PyObject* frame_builtins(Frame* f) { return f->f_builtins; }
// The locals mapping of module and class-body frames; null for functions.
inline PyObject* frame_locals_mapping(Frame* f) { return f->f_locals; }
inline PyObject** frame_fast_locals(Frame* f) { return f->localsplus; }
// Index of the last instruction started, -1 before the first one.
// 3.13: prev_instr becomes instr_ptr (pointing at the next instruction).
inline int frame_lasti(Frame* f) { return _PyInterpreterFrame_LASTI(f); }
// A frame that already ran an instruction is a resumed generator/coroutine:
// it must run normally, never be looked up again.
inline bool frame_started(Frame* f) { return frame_lasti(f) >= 0; }
// The closure tuple (or null) of the frame's function. Before COPY_FREE_VARS
// runs, free variables live only here, not yet in the fast locals.
inline PyObject* frame_closure(Frame* f) {
  PyFunctionObject* fn = frame_function(f);
  return fn ? fn->func_closure : nullptr;
}

// A frame the hook answered without running it. On 3.11 whoever pushed the
// frame clears and pops it after the evaluator returns (_PyEval_Vector,
// gen_send_ex2), so there is nothing to do. 3.12 moves clearing into the
// evaluator: this is where the hook will clear and pop it there.
inline void finish_unrun_frame(PyThreadState*, Frame*) {}

// --- the thread's tracing state ---------------------------------------------
// True while sys.settrace/sys.setprofile is active or a trace function runs:
// frames then run normally so that debuggers and profilers see the real code.
// 3.12 replaces cframe->use_tracing with tstate->tracing + sys.monitoring.
inline bool tracing_active(PyThreadState* ts) {
  return ts->tracing != 0 || ts->cframe->use_tracing != 0;
}

// --- code objects ---------------------------------------------------------
inline int code_nlocalsplus(PyCodeObject* co) { return co->co_nlocalsplus; }
inline int code_nfreevars(PyCodeObject* co) { return co->co_nfreevars; }
// Borrowed tuple of names for every fast local, cell and free variable.
inline PyObject* code_localsplus_names(PyCodeObject* co) { return co->co_localsplusnames; }
inline bool code_slot_is_free(PyCodeObject* co, int i) {
  return (_PyLocals_GetKind(co->co_localspluskinds, i) & CO_FAST_FREE) != 0;
}
inline bool code_slot_is_cell(PyCodeObject* co, int i) {
  return (_PyLocals_GetKind(co->co_localspluskinds, i) & CO_FAST_CELL) != 0;
}

// --- co_extra (3.12 renames these PyUnstable_Code_GetExtra/SetExtra) -------
inline Py_ssize_t request_code_extra_index(freefunc free) {
  return _PyEval_RequestCodeExtraIndex(free);
}
inline void* code_get_extra(PyCodeObject* co, Py_ssize_t index) {
  void* extra = nullptr;
  if (_PyCode_GetExtra(reinterpret_cast<PyObject*>(co), index, &extra) < 0) {
    PyErr_Clear();
    return nullptr;
  }
  return extra;
}
// Returns 0, or -1 with an exception set.
inline int code_set_extra(PyCodeObject* co, Py_ssize_t index, void* extra) {
  return _PyCode_SetExtra(reinterpret_cast<PyObject*>(co), index, extra);
}

// --- dicts ------------------------------------------------------------------
// 3.11's per-dict version tag; 3.12 deprecates it for dict watchers.
inline uint64_t dict_version(PyObject* dict) {
  return reinterpret_cast<PyDictObject*>(dict)->ma_version_tag;
}

// --- instance attribute storage (the getattr accessors' fast path) ----------
// On 3.11 an instance of a Py_TPFLAGS_MANAGED_DICT type (a class statement
// without __slots__) keeps its attributes in a values array laid out like its
// type's shared keys (PyHeapTypeObject.ht_cached_keys), pointed to from the
// word 4 before the object; once a real __dict__ is made (obj.__dict__, too
// many attributes) that pointer is null and the dict sits 3 words before.
// These are _PyObject_ValuesPointer / _PyObject_ManagedDictPointer of
// pycore_object.h, which does not compile as C++, hence the arithmetic here.
// 3.12 keeps the same two words; 3.13 moves the values inline after the object
// (_PyObject_InlineValues, the object's dict or values in one word).
// Borrowed values array of a managed-dict instance, or null.
inline PyObject** instance_values(PyObject* obj) {
  PyDictValues* values = *(reinterpret_cast<PyDictValues**>(obj) - 4);
  return values != nullptr ? values->values : nullptr;
}
// Borrowed materialised __dict__ of a managed-dict instance, or null.
inline PyObject* managed_dict(PyObject* obj) { return *(reinterpret_cast<PyObject**>(obj) - 3); }
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
