// Builder methods for TYPE_MATCH, ID_MATCH, NONE/TRUE/FALSE_MATCH, NOT_NONE.
#include "framecache/bindings.h"
#include "framecache/guards/leaf_guards_identity.h"

namespace framecache {

using guards::GuardManager;

void bind_leaf_guards_identity(GuardManagerClass& cls) {
  using Which = guards::SingletonMatch::Which;
  cls.def("type_match",
          [](GuardManager& g, py::handle type) -> GuardManager& {
            if (!PyType_Check(type.ptr())) {
              throw py::type_error(std::string("type_match() expects a type, got ") +
                                   Py_TYPE(type.ptr())->tp_name + " (did you mean type(x)?)");
            }
            g.add_leaf(std::make_unique<guards::TypeMatch>(type.ptr()));
            return g;
          },
          py::arg("type"), py::return_value_policy::reference,
          "TYPE_MATCH: type(value) is `type` exactly.")
      .def("id_match",
           [](GuardManager& g, py::handle obj) -> GuardManager& {
             g.add_leaf(std::make_unique<guards::IdMatch>(obj.ptr()));
             return g;
           },
           py::arg("obj"), py::return_value_policy::reference, "ID_MATCH: value is `obj`.")
      .def("none_match",
           [](GuardManager& g) -> GuardManager& {
             g.add_leaf(std::make_unique<guards::SingletonMatch>(Which::kNone));
             return g;
           },
           py::return_value_policy::reference, "NONE_MATCH: value is None.")
      .def("true_match",
           [](GuardManager& g) -> GuardManager& {
             g.add_leaf(std::make_unique<guards::SingletonMatch>(Which::kTrue));
             return g;
           },
           py::return_value_policy::reference, "TRUE_MATCH: value is True.")
      .def("false_match",
           [](GuardManager& g) -> GuardManager& {
             g.add_leaf(std::make_unique<guards::SingletonMatch>(Which::kFalse));
             return g;
           },
           py::return_value_policy::reference, "FALSE_MATCH: value is False.")
      .def("not_none",
           [](GuardManager& g) -> GuardManager& {
             g.add_leaf(std::make_unique<guards::SingletonMatch>(Which::kNotNone));
             return g;
           },
           py::return_value_policy::reference, "NOT_NONE: value is not None.");
}

}  // namespace framecache
