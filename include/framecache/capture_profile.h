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
#pragma once

#include <Python.h>

#include <unordered_map>
#include <vector>

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

}  // namespace framecache
