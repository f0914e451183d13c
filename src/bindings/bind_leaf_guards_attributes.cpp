// Builder methods for NO_HASATTR.
#include "framecache/bindings.h"
#include "framecache/guards/leaf_guards_attributes.h"

namespace framecache {

using guards::GuardManager;

void bind_leaf_guards_attributes(GuardManagerClass& cls) {
  cls.def("no_hasattr",
          [](GuardManager& g, py::handle name) -> GuardManager& {
            if (!PyUnicode_Check(name.ptr())) {
              throw py::type_error(std::string("no_hasattr() expects a str attribute name, got ") +
                                   Py_TYPE(name.ptr())->tp_name);
            }
            if (PyUnicode_GET_LENGTH(name.ptr()) == 0) {
              throw py::value_error("no_hasattr() expects a non-empty attribute name");
            }
            g.add_leaf(std::make_unique<guards::NoHasattr>(name.ptr()));
            return g;
          },
          py::arg("name"), py::return_value_policy::reference,
          "NO_HASATTR: value has no attribute `name` (getattr raises AttributeError; any other "
          "exception fails the guard).");
}

}  // namespace framecache
