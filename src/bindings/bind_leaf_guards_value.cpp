// Builder methods for EQUALS_MATCH.
#include "framecache/bindings.h"
#include "framecache/guards/leaf_guards_value.h"

namespace framecache {

using guards::GuardManager;

namespace {
// Values whose equality cannot change after the guard is built.
bool is_immutable_constant(PyObject* v, int depth = 0) {
  if (depth > 32) return false;
  if (v == Py_None || v == Py_Ellipsis || v == Py_NotImplemented) return true;
  if (PyLong_CheckExact(v) || PyFloat_CheckExact(v) || PyComplex_CheckExact(v) ||
      PyBool_Check(v) || PyUnicode_CheckExact(v) || PyBytes_CheckExact(v) || PyRange_Check(v)) {
    return true;
  }
  if (PyTuple_CheckExact(v)) {
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(v); ++i) {
      if (!is_immutable_constant(PyTuple_GET_ITEM(v, i), depth + 1)) return false;
    }
    return true;
  }
  if (PyFrozenSet_CheckExact(v)) {
    Py_ssize_t pos = 0;
    PyObject* item;
    Py_hash_t hash;
    while (_PySet_NextEntry(v, &pos, &item, &hash)) {
      if (!is_immutable_constant(item, depth + 1)) return false;
    }
    return true;
  }
  return false;
}
}  // namespace

void bind_leaf_guards_value(GuardManagerClass& cls) {
  cls.def("equals_match",
          [](GuardManager& g, py::handle value) -> GuardManager& {
            if (!is_immutable_constant(value.ptr())) {
              throw py::type_error(
                  std::string("equals_match() expects an immutable constant (int, float, complex, "
                              "bool, str, bytes, None, range, or a tuple/frozenset of those), got ") +
                  Py_TYPE(value.ptr())->tp_name +
                  "; guard mutable objects with id_match() and guards on their contents");
            }
            g.add_leaf(std::make_unique<guards::EqualsMatch>(value.ptr()));
            return g;
          },
          py::arg("value"), py::return_value_policy::reference,
          "EQUALS_MATCH: type(value) is type(expected) and value == expected.");
}

}  // namespace framecache
