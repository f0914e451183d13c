// Builder method for ObjectSourceAccessor (root.object_source).
#include "framecache/bindings.h"
#include "framecache/guards/accessors_object.h"
#include "framecache/guards/root_guard_manager.h"

namespace framecache {

void bind_accessors_object(GuardManagerClass& cls) {
  cls.def("object_source",
          [](guards::GuardManager& g, py::handle obj, py::handle label) -> guards::GuardManager& {
            if (&g != &g.root()) {
              throw py::type_error("object_source() is a root accessor: call it on the root");
            }
            if (!py::isinstance<py::str>(label) || label.cast<std::string>().empty()) {
              throw py::type_error("object_source() expects a non-empty str label");
            }
            return guards::add_object_source(g, obj.ptr(), label.cast<std::string>());
          },
          py::arg("obj"), py::arg("label"), py::return_value_policy::reference_internal,
          "A node whose value is `obj` itself (held weakly when possible), shown as `label`.");
}

}  // namespace framecache
