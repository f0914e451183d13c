// Builder method for LAMBDA.
#include "framecache/bindings.h"
#include "framecache/guards/leaf_guards_lambda.h"

namespace framecache {

using guards::GuardManager;

void bind_leaf_guards_lambda(GuardManagerClass& cls) {
  cls.def("lambda_guard",
          [](GuardManager& g, py::handle fn, py::handle description) -> GuardManager& {
            if (!PyCallable_Check(fn.ptr())) {
              throw py::type_error(std::string("lambda_guard() expects a callable, got ") +
                                   Py_TYPE(fn.ptr())->tp_name);
            }
            std::string text;
            if (description.is_none()) {
              text = guards::safe_repr(fn.ptr());
            } else if (PyUnicode_Check(description.ptr())) {
              text = description.cast<std::string>();
            } else {
              throw py::type_error(std::string("lambda_guard() expects a str description, got ") +
                                   Py_TYPE(description.ptr())->tp_name);
            }
            g.add_leaf(std::make_unique<guards::LambdaGuard>(fn.ptr(), std::move(text)));
            return g;
          },
          py::arg("fn"), py::arg("description") = py::none(), py::return_value_policy::reference,
          "LAMBDA: fn(value) is truthy; an exception fails the guard (KeyboardInterrupt and "
          "other fatal ones propagate). `description` says what fn tests, for check_verbose(). "
          "The tree holds fn strongly.");
}

}  // namespace framecache
