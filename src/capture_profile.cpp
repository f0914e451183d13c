// See include/framecache/capture_profile.h.
#include "framecache/capture_profile.h"

namespace framecache {

namespace {

constexpr const char* kCaptureProfileCapsule = "framecache.CaptureProfile";

struct InstalledProfile {
  CaptureProfile* state;  // owned by `owner`
  Ref owner;
};

void release_installed_profile(PyObject* capsule) {
  delete static_cast<InstalledProfile*>(PyCapsule_GetPointer(capsule, kCaptureProfileCapsule));
}

// The table's entry for `code` (borrowed), or null when it has none: from the memo when
// seen before (see CaptureProfile::memo), else from the dict. The result is borrowed (a
// singleton: True, False or None).
PyObject* table_entry(CaptureProfile& state, PyObject* code) {
  auto found = state.memo.find(code);
  if (found != state.memo.end()) return found->second;
  PyObject* entry = PyDict_GetItemWithError(state.user_code.get(), code);  // borrowed
  if (entry == nullptr) {
    PyErr_Clear();  // a lookup error is the same as unknown
    return nullptr;
  }
  if (entry == Py_True || entry == Py_False || entry == Py_None) {
    state.memo.emplace(code, entry);
    state.memo_held.push_back(Ref::borrow(code));
  }
  return entry;
}

// 1: `code` (borrowed) is in the table as library code; 0: user code or not known yet.
int known_library_code(CaptureProfile& state, PyObject* code) {
  return table_entry(state, code) == Py_False ? 1 : 0;
}

// Whether the monitor would do nothing for this event; see capture_profile.h. Mirrors
// SideEffectMonitor._profile: C calls of library code return at once; calls of library
// code return at once unless the line tracer must be switched off; returns matter only
// when the tracer's state would change, i.e. when control goes back to user code.
bool capture_event_ignorable(CaptureProfile& state, PyFrameObject* frame, int what) {
  Ref code = Ref::steal(reinterpret_cast<PyObject*>(PyFrame_GetCode(frame)));
  PyObject* entry = table_entry(state, code.get());
  if (what == PyTrace_C_CALL) return entry == Py_False;
  // The import system's entry: the monitor counts how deep in an import control is.
  if (entry == Py_None) return false;
  if (state.tracing) return false;
  if (what == PyTrace_CALL) return entry == Py_False;
  // PyTrace_RETURN with the tracer off: it stays off unless the caller is user code.
  Ref back = Ref::steal(reinterpret_cast<PyObject*>(PyFrame_GetBack(frame)));
  if (!back) return true;
  Ref back_code = Ref::steal(
      reinterpret_cast<PyObject*>(PyFrame_GetCode(reinterpret_cast<PyFrameObject*>(back.get()))));
  return known_library_code(state, back_code.get()) == 1;
}

}  // namespace

// The Py_tracefunc: `obj` is the capsule (borrowed), `frame` borrowed, `arg` borrowed or
// null. Returns 0, or -1 with the monitor's exception set (the capture's abort), after
// removing itself as CPython's own sys.setprofile trampoline does on an error.
int capture_profile_trampoline(PyObject* obj, PyFrameObject* frame, int what, PyObject* arg) {
  static PyObject* const kCall = PyUnicode_InternFromString("call");
  static PyObject* const kCCall = PyUnicode_InternFromString("c_call");
  static PyObject* const kReturn = PyUnicode_InternFromString("return");
  PyObject* event;
  switch (what) {
    case PyTrace_CALL:
      event = kCall;
      break;
    case PyTrace_C_CALL:
      event = kCCall;
      break;
    case PyTrace_RETURN:
      event = kReturn;
      break;
    default:
      return 0;  // c_return, c_exception: the monitor ignores them
  }
  auto* installed =
      static_cast<InstalledProfile*>(PyCapsule_GetPointer(obj, kCaptureProfileCapsule));
  if (installed == nullptr || event == nullptr) return -1;
  CaptureProfile& state = *installed->state;
  if (capture_event_ignorable(state, frame, what)) return 0;
  PyObject* args[3] = {reinterpret_cast<PyObject*>(frame), event, arg ? arg : Py_None};
  Ref result = Ref::steal(PyObject_Vectorcall(state.callback.get(), args, 3, nullptr));
  if (!result) {
    PyEval_SetProfile(nullptr, nullptr);
    return -1;
  }
  return 0;
}

PyObject* run_with_capture_events(PyThreadState* ts, cpy::Frame* frame, int throwflag,
                                  FrameRunner run) {
  // Inside a trace or profile callback CPython has the flag off already; a frame the
  // monitor's own Python runs is left to it.
  if (cpy::in_trace_callback(ts)) return run(ts, frame, throwflag);
  // Checked without setting an error: a frame thrown into starts with one set.
  PyObject* capsule = cpy::profile_object(ts);
  if (!PyCapsule_IsValid(capsule, kCaptureProfileCapsule)) return run(ts, frame, throwflag);
  auto* installed =
      static_cast<InstalledProfile*>(PyCapsule_GetPointer(capsule, kCaptureProfileCapsule));
  CaptureProfile& state = *installed->state;
  if (!state.per_frame) return run(ts, frame, throwflag);
  // A frame thrown into (generator.throw) starts with the exception set, which a table
  // lookup must not see: it gets its events whatever its code.
  PyObject* code = reinterpret_cast<PyObject*>(cpy::frame_code(frame));
  const bool library = throwflag == 0 && table_entry(state, code) == Py_False;
  const uint8_t wanted = library ? 0 : cpy::tracing_flag_now(ts);
  const uint8_t saved = cpy::caller_tracing_flag(ts);
  if (wanted == saved) return run(ts, frame, throwflag);
  cpy::set_caller_tracing_flag(ts, wanted);
  PyObject* result = run(ts, frame, throwflag);
  // The frame's evaluation copied its flag back into the caller's. The caller gets its
  // own back: off if it was off (a library frame), else what CPython would set now (the
  // profile function may be gone: an abort removes it).
  cpy::set_caller_tracing_flag(ts, saved == 0 ? 0 : cpy::tracing_flag_now(ts));
  return result;
}

bool capture_profile_install(CaptureProfile* state, PyObject* owner) {
  if (!state->callback || !state->user_code || !PyDict_Check(state->user_code.get())) {
    PyErr_SetString(PyExc_TypeError, "CaptureProfile needs a callable and a dict");
    return false;
  }
  auto* installed = new InstalledProfile{state, Ref::borrow(owner)};
  Ref capsule =
      Ref::steal(PyCapsule_New(installed, kCaptureProfileCapsule, release_installed_profile));
  if (!capsule) {
    delete installed;
    return false;
  }
  // PyEval_SetProfile takes its own reference to the capsule.
  PyEval_SetProfile(capture_profile_trampoline, capsule.get());
  return true;
}

}  // namespace framecache
