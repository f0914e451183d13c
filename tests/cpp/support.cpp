// Helpers of the GoogleTest suite (see support.h).
#include "support.h"

#include "framecache/cpython.h"

namespace framecache::fctest {

namespace {
ProbeEvaluator* g_probe = nullptr;  // the innermost live probe
}

py::module_ fc() { return py::module_::import("_fc"); }

py::object new_root() { return fc().attr("guards").attr("RootGuardManager")(); }

py::dict run_source(const std::string& source, const std::string& filename) {
  py::dict ns;
  ns["__builtins__"] = py::module_::import("builtins");
  py::object code = py::module_::import("builtins").attr("compile")(source, filename, "exec");
  py::module_::import("builtins").attr("exec")(code, ns);
  return ns;
}

py::object define(const std::string& source, const std::string& name, const std::string& filename) {
  return run_source(source, filename)[name.c_str()];
}

PyCodeObject* code_of(const py::handle& fn) {
  py::object code = fn.attr("__code__");
  return reinterpret_cast<PyCodeObject*>(code.ptr());  // the function keeps it alive
}

std::string take_error() {
  if (!PyErr_Occurred()) return "";
  py::error_already_set err;
  return std::string(Py_TYPE(err.value().ptr())->tp_name) + ": " +
         py::str(err.value()).cast<std::string>();
}

ProbeEvaluator::ProbeEvaluator(PyCodeObject* target, Handler on_frame)
    : target_(target), on_frame_(std::move(on_frame)), outer_(g_probe) {
  PyInterpreterState* interp = PyInterpreterState_Get();
  previous_ = reinterpret_cast<void*>(cpy::get_eval_frame(interp));
  cpy::set_eval_frame(interp, &ProbeEvaluator::evaluate);
  g_probe = this;
}

ProbeEvaluator::~ProbeEvaluator() {
  g_probe = outer_;
  cpy::set_eval_frame(PyInterpreterState_Get(), reinterpret_cast<cpy::EvalFrameFn>(previous_));
}

namespace {
// The frame the innermost handler was given, until it runs it normally.
thread_local _PyInterpreterFrame* t_unrun = nullptr;
}  // namespace

PyObject* ProbeEvaluator::run_normally(PyThreadState* ts, _PyInterpreterFrame* frame) {
  if (t_unrun == frame) t_unrun = nullptr;
  return cpy::eval_frame_default(ts, frame, 0);
}

PyObject* ProbeEvaluator::evaluate(PyThreadState* ts, _PyInterpreterFrame* frame, int throwflag) {
  ProbeEvaluator* probe = g_probe;
  if (probe != nullptr && throwflag == 0 && cpy::frame_code(frame) == probe->target_ &&
      !cpy::frame_started(frame)) {
    ++probe->seen_;
    _PyInterpreterFrame* outer = t_unrun;
    t_unrun = frame;
    PyObject* result = probe->on_frame_(ts, frame);
    const bool unrun = t_unrun == frame;
    t_unrun = outer;
    if (unrun) cpy::finish_unrun_frame(ts, frame);
    return result;
  }
  return cpy::eval_frame_default(ts, frame, throwflag);
}

}  // namespace framecache::fctest
