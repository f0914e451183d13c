#include "framecache/passthrough_evaluator.h"

#include <Python.h>

#include "framecache/cpython.h"

namespace framecache {
namespace {

// Borrowed in, new reference (or null with an error set) out, like CPython's.
PyObject* passthrough(PyThreadState* ts, cpy::Frame* frame, int throwflag) {
  return cpy::eval_frame_default(ts, frame, throwflag);
}

}  // namespace

bool passthrough_install() {
  PyInterpreterState* interp = PyInterpreterState_Get();
  const cpy::EvalFrameFn current = cpy::get_eval_frame(interp);
  if (current == passthrough) return true;
  if (!cpy::is_default_eval_frame(current)) {
    PyErr_SetString(PyExc_RuntimeError,
                    "the pass-through evaluator is installed only over CPython's own; another "
                    "frame evaluator (framecache's hook while a thread has a callback, or a "
                    "debugger's) is installed");
    return false;
  }
  cpy::set_eval_frame(interp, passthrough);
  return true;
}

bool passthrough_uninstall() {
  PyInterpreterState* interp = PyInterpreterState_Get();
  const cpy::EvalFrameFn current = cpy::get_eval_frame(interp);
  if (cpy::is_default_eval_frame(current)) return true;
  if (current != passthrough) {
    PyErr_SetString(PyExc_RuntimeError,
                    "another frame evaluator was installed over the pass-through one (it chains "
                    "to it); turn that one off first");
    return false;
  }
  cpy::set_eval_frame(interp, cpy::default_eval_frame_fn());
  return true;
}

bool passthrough_installed() {
  return cpy::get_eval_frame(PyInterpreterState_Get()) == passthrough;
}

}  // namespace framecache
