// The recogniser of Python attribute hooks the guards perform in C
// (attr_hook_model.h), set by framecache/_runtime.py from _attr_hooks.py.
#include "framecache/bindings.h"
#include "framecache/guards/attr_hook_model.h"

namespace framecache {

void bind_attr_hook_model(py::module_& m) {
  m.def(
      "_set_attr_hook_recogniser",
      [](py::handle recogniser) {
        if (!PyCallable_Check(recogniser.ptr())) {
          throw py::type_error("the recogniser must be callable, got " + type_name(recogniser));
        }
        guards::attr_hook::set_recogniser(recogniser.ptr());
      },
      py::arg("recogniser"),
      "Set recogniser(code) -> (shape, parameter) | None, which says which Python "
      "__getattribute__ hooks and property getters the guards may perform in C.");
  m.def(
      "_attr_hook_verdict",
      [](py::handle code) -> std::string {
        if (!PyCode_Check(code.ptr())) {
          throw py::type_error("expected a code object, got " + type_name(code));
        }
        return guards::attr_hook::verdict_of(code.ptr());
      },
      py::arg("code"),
      "The guards' verdict on a code object: '', 'redirect', 'pass_through' or 'alias'.");
}

}  // namespace framecache
