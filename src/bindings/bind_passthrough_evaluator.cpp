// _C._passthrough_evaluator: the floor any frame evaluator costs, for the benchmarks
// (include/framecache/passthrough_evaluator.h says why).
#include "framecache/bindings.h"
#include "framecache/passthrough_evaluator.h"

namespace framecache {

void bind_passthrough_evaluator(py::module_& m) {
  m.def(
      "_passthrough_evaluator",
      [](py::object enable) {
        if (!PyBool_Check(enable.ptr())) {
          throw py::type_error("_passthrough_evaluator expects True or False, got " +
                               type_name(enable));
        }
        const bool ok = enable.ptr() == Py_True ? passthrough_install() : passthrough_uninstall();
        if (!ok) throw py::error_already_set();
      },
      py::arg("enable"),
      "Install (True) or remove (False) a frame evaluator that only hands each frame to "
      "CPython's: what installing any evaluator costs Python code. For benchmarks; "
      "RuntimeError when another evaluator is in the way.");
  m.def("_passthrough_evaluator_installed", &passthrough_installed,
        "Whether the pass-through evaluator is the interpreter's evaluator.");
}

}  // namespace framecache
