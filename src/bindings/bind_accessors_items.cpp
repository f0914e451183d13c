// Builder methods for the item accessors: item, dict_item, list_item,
// tuple_item.
#include "framecache/bindings.h"
#include "framecache/builder_args.h"
#include "framecache/guards/accessors_items.h"

namespace framecache {

using guards::GuardManager;

void bind_accessors_items(GuardManagerClass& cls) {
  cls.def("item",
          [](GuardManager& g, py::handle key) -> GuardManager& {
            require_value_node("item()", g);
            return guards::add_item(g, key.ptr());
          },
          py::arg("key"), py::return_value_policy::reference_internal,
          "The node for value[key] (L['x'][key]), through __getitem__.")
      .def("dict_item",
           [](GuardManager& g, py::handle key) -> GuardManager& {
             require_value_node("dict_item()", g);
             if (PyObject_Hash(key.ptr()) == -1) {
               PyErr_Clear();
               throw py::type_error(std::string("dict_item() expects a hashable key, got ") +
                                    Py_TYPE(key.ptr())->tp_name);
             }
             return guards::add_dict_item(g, key.ptr());
           },
           py::arg("key"), py::return_value_policy::reference_internal,
           "The node for a dict's stored item (L['x'][key]), read without calling "
           "__getitem__; fails for a value that is not a dict.")
      .def("list_item",
           [](GuardManager& g, py::handle index) -> GuardManager& {
             require_value_node("list_item()", g);
             return guards::add_list_item(g, builder_index("list_item()", index, true));
           },
           py::arg("index"), py::return_value_policy::reference_internal,
           "The node for element `index` of a list (negative counts from the end).")
      .def("tuple_item",
           [](GuardManager& g, py::handle index) -> GuardManager& {
             require_value_node("tuple_item()", g);
             return guards::add_tuple_item(g, builder_index("tuple_item()", index, true));
           },
           py::arg("index"), py::return_value_policy::reference_internal,
           "The node for element `index` of a tuple (negative counts from the end).");
}

}  // namespace framecache
