// Builder methods for the attribute accessors: attr, generic_attr, type_,
// obj_dict, type_dict.
#include "framecache/bindings.h"
#include "framecache/builder_args.h"
#include "framecache/guards/accessors_attr.h"

namespace framecache {

using guards::GuardManager;

void bind_accessors_attr(GuardManagerClass& cls) {
  cls.def("attr",
          [](GuardManager& g, py::handle name) -> GuardManager& {
            require_value_node("attr()", g);
            return guards::add_attr(g, builder_name("attr()", name));
          },
          py::arg("name"), py::return_value_policy::reference_internal,
          "The node for getattr(value, name) (L['x'].name): __getattribute__, then __getattr__.")
      .def("generic_attr",
           [](GuardManager& g, py::handle name) -> GuardManager& {
             require_value_node("generic_attr()", g);
             return guards::add_generic_attr(g, builder_name("generic_attr()", name));
           },
           py::arg("name"), py::return_value_policy::reference_internal,
           "The node for object.__getattribute__(value, name): the instance __dict__ and the "
           "type's descriptors, never the class's own __getattribute__ or __getattr__.")
      .def("type_",
           [](GuardManager& g) -> GuardManager& {
             require_value_node("type_()", g);
             return guards::add_type(g);
           },
           py::return_value_policy::reference_internal, "The node for type(value).")
      .def("obj_dict",
           [](GuardManager& g) -> GuardManager& {
             require_value_node("obj_dict()", g);
             return guards::add_obj_dict(g);
           },
           py::return_value_policy::reference_internal,
           "The node for value.__dict__, the instance dict object.__getattribute__ finds.")
      .def("type_dict",
           [](GuardManager& g) -> GuardManager& {
             require_value_node("type_dict()", g);
             return guards::add_type_dict(g);
           },
           py::return_value_policy::reference_internal,
           "The node for a type's __dict__ (the dict behind its mappingproxy).");
}

}  // namespace framecache
