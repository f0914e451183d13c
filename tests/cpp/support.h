// Shared helpers of the GoogleTest suite: Python source compiled in the one
// embedded interpreter (started by main.cpp), and a probe evaluator that hands
// real, unstarted interpreter frames of one code object to a test.
#pragma once

#include <pybind11/embed.h>

#include <functional>
#include <string>

#include "framecache/ref.h"

struct _PyInterpreterFrame;

namespace framecache::fctest {

namespace py = pybind11;

// The embedded module "_fc" (bind_runtime plus the guard tree bindings, with
// the guards in "_fc.guards"), imported once by main.cpp.
py::module_ fc();
// A new framecache.guards.RootGuardManager Python object.
py::object new_root();

// Runs `source` in a fresh namespace (whose code objects get `filename`) and
// returns that namespace.
py::dict run_source(const std::string& source, const std::string& filename = "<fc-test>");
// Runs `source` and returns the global `name` it defined.
py::object define(const std::string& source, const std::string& name,
                  const std::string& filename = "<fc-test>");
// fn.__code__ (borrowed: valid while `fn` lives).
PyCodeObject* code_of(const py::handle& fn);
// A Python object's reference count.
inline Py_ssize_t refcount(const py::handle& obj) { return Py_REFCNT(obj.ptr()); }

// While alive, every unstarted frame of `target` is handed to `on_frame`
// (with the GIL held) instead of being evaluated; other frames run through the
// evaluator that was installed before. `on_frame` returns a new reference or
// null with an exception set, like an evaluator. A frame the handler does not
// pass to run_normally is cleared and popped afterwards where the evaluator
// would have (3.12+, cpy::finish_unrun_frame), as framecache's hook does.
class ProbeEvaluator {
 public:
  using Handler = std::function<PyObject*(PyThreadState*, _PyInterpreterFrame*)>;
  ProbeEvaluator(PyCodeObject* target, Handler on_frame);
  ~ProbeEvaluator();
  ProbeEvaluator(const ProbeEvaluator&) = delete;
  ProbeEvaluator& operator=(const ProbeEvaluator&) = delete;
  // Frames of `target` seen so far.
  int frames_seen() const { return seen_; }
  // Evaluates `frame` normally (for handlers that only observe).
  static PyObject* run_normally(PyThreadState* ts, _PyInterpreterFrame* frame);

 private:
  static PyObject* evaluate(PyThreadState* ts, _PyInterpreterFrame* frame, int throwflag);
  PyCodeObject* target_;
  Handler on_frame_;
  int seen_ = 0;
  void* previous_;  // the evaluator to restore (cpy::EvalFrameFn)
  ProbeEvaluator* outer_;
};

// The message of the pending Python exception (type name + ": " + str),
// cleared; "" if none is set.
std::string take_error();

}  // namespace framecache::fctest
