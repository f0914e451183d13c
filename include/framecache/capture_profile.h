// The profile function the compiler's side-effect monitor runs during a capture,
// with its common case in C.
//
// While a frame is captured, the monitor (python/framecache/compiler/side_effects.py)
// must see every call and C call that user code makes, and switches its line tracer on
// when control enters user code and off when it leaves. A profile function runs for
// every call, return and C call of every frame, torch's own included: make_fx on a
// resnet18 makes about a million of them, and a Python profile function cost about a
// microsecond each (1.4 s of a 1.8 s capture). Almost all are events of library code
// while the line tracer is off, which the monitor ignores. This filter answers those in
// C from the monitor's own table of code objects (a dict code -> is-user-code, which the
// monitor fills) and calls the monitor's Python function for the rest, with the same
// arguments sys.setprofile would pass.
//
// On 3.11 a profile function also makes every instruction of every frame on the thread
// take the tracing path, de-specialised (cpython.h, "per-evaluation tracing flag"): the
// Python half of make_fx and of fake tensors ran ~1.6x slower under the monitor than
// without it. When the monitor opts in (`per_frame`), the hook hands this filter every
// frame the capture starts (run_with_capture_events), and the filter runs the frames of
// known library code with the flag off: they emit no events at all and run specialised,
// while user code, the import system's entry and code not classified yet run with it
// on. The monitor then keeps its line tracer on for the whole capture, since only frames
// that should see it still call it.
#pragma once

#include <Python.h>

#include <unordered_map>
#include <vector>

#include "framecache/cpython.h"
#include "framecache/ref.h"

namespace framecache {

struct CaptureProfile {
  // Both strong, set once: the monitor's profile function (frame, event, arg), and its
  // dict {code object: bool or None} (True for user code, False for library code; codes
  // not in it go to Python, and so do every call and return of a code mapped to None:
  // the import system's entry, whose depth the monitor counts).
  Ref callback;
  Ref user_code;
  // Mirrors the monitor's line tracer: on while a user frame runs (the monitor sets it).
  bool tracing = false;
  // Set by the monitor before install(): the hook gives known library frames no events
  // (3.11; see above). The monitor keeps its line tracer on while this is set.
  bool per_frame = false;
  // The table's entries already seen, by code object identity. A code object hashes by
  // content (name, bytecode, constants...), not cached: ~0.4 µs per dict lookup for
  // torch's Module._call_impl, and a capture makes up to three lookups per event, most
  // of a capture's time on a vision model. The monitor writes each code's entry once and
  // never changes it, so an entry found once is the answer for good; codes not in the
  // table yet are looked up in it every time. `memo_held` keeps each memoised code alive,
  // so that no other code object can take its address while the memo lives.
  std::unordered_map<PyObject*, PyObject*> memo;  // code -> Py_True/Py_False/Py_None
  std::vector<Ref> memo_held;
};

// Makes `state` this thread's profile function (PyEval_SetProfile), `owner` (borrowed; the
// Python object that holds `state`) kept alive while it is installed. Returns false with a
// Python error set on failure. The previous profile function is replaced; the caller
// restores it (sys.setprofile) when the capture ends.
bool capture_profile_install(CaptureProfile* state, PyObject* owner);

// The profile function capture_profile_install installs (a Py_tracefunc; `obj` is its
// capsule, borrowed).
int capture_profile_trampoline(PyObject* obj, PyFrameObject* frame, int what, PyObject* arg);

// True when a capture's filter is this thread's profile function and frames' events can
// be chosen per frame (3.11). One load and compare: the hook asks it for frames it runs
// as they are.
inline bool capture_profile_running(PyThreadState* ts) {
  return cpy::kPerFrameTracingFlag && cpy::profile_function(ts) == &capture_profile_trampoline;
}

// Runs `frame` (borrowed) with `run`, the caller's tracing flag first set to what the
// frame's code needs (off for known library code when the monitor opted in; unchanged
// otherwise) and set back after it. Call only when capture_profile_running(ts). Returns
// what `run` returns (a new reference, or null with an exception set).
using FrameRunner = PyObject* (*)(PyThreadState* ts, cpy::Frame* frame, int throwflag);
PyObject* run_with_capture_events(PyThreadState* ts, cpy::Frame* frame, int throwflag,
                                  FrameRunner run);

}  // namespace framecache
