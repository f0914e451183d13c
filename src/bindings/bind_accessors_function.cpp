// Builder methods for the function accessors: closure_cell, func_defaults,
// func_kwdefaults, func_code, func_globals.
#include "framecache/bindings.h"
#include "framecache/builder_args.h"
#include "framecache/guards/accessors_function.h"

namespace framecache {

using guards::GuardManager;

void bind_accessors_function(GuardManagerClass& cls) {
  cls.def("closure_cell",
          [](GuardManager& g, py::handle index) -> GuardManager& {
            require_value_node("closure_cell()", g);
            return guards::add_closure_cell(g, builder_index("closure_cell()", index, false));
          },
          py::arg("index"), py::return_value_policy::reference_internal,
          "The node for the contents of a function's closure cell `index` "
          "(L['f'].__closure__[i].cell_contents).")
      .def("func_defaults",
           [](GuardManager& g) -> GuardManager& {
             require_value_node("func_defaults()", g);
             return guards::add_func_defaults(g);
           },
           py::return_value_policy::reference_internal,
           "The node for a function's __defaults__ (None when it has none).")
      .def("func_kwdefaults",
           [](GuardManager& g) -> GuardManager& {
             require_value_node("func_kwdefaults()", g);
             return guards::add_func_kwdefaults(g);
           },
           py::return_value_policy::reference_internal,
           "The node for a function's __kwdefaults__ (None when it has none).")
      .def("func_code",
           [](GuardManager& g) -> GuardManager& {
             require_value_node("func_code()", g);
             return guards::add_func_code(g);
           },
           py::return_value_policy::reference_internal, "The node for a function's __code__.")
      .def("func_globals",
           [](GuardManager& g) -> GuardManager& {
             require_value_node("func_globals()", g);
             return guards::add_func_globals(g);
           },
           py::return_value_policy::reference_internal,
           "The node for a function's __globals__.");
}

}  // namespace framecache
