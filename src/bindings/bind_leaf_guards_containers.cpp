// Builder methods for LENGTH_CHECK, DICT_LENGTH, DICT_CONTAINS, MAPPING_KEYS_MATCH.
#include "framecache/bindings.h"
#include "framecache/guards/leaf_guards_containers.h"

namespace framecache {

using guards::GuardManager;

namespace {

// A length argument: an int (or __index__ object, not a bool) from 0 to
// PY_SSIZE_T_MAX.
Py_ssize_t checked_length(const std::string& method, const py::handle& n) {
  if (PyBool_Check(n.ptr()) || !PyIndex_Check(n.ptr())) {
    throw py::type_error(method + " expects an int length, got " + type_name(n));
  }
  py::int_ as_int = py::reinterpret_steal<py::int_>(PyNumber_Index(n.ptr()));
  if (!as_int) throw py::error_already_set();
  const Py_ssize_t v = PyLong_AsSsize_t(as_int.ptr());
  if (v == -1 && PyErr_Occurred()) {
    PyErr_Clear();
    throw py::value_error(method + " expects a length between 0 and " +
                          std::to_string(PY_SSIZE_T_MAX) + ", got " +
                          py::repr(as_int).cast<std::string>());
  }
  if (v < 0) throw py::value_error(method + " expects a length >= 0, got " + std::to_string(v));
  return v;
}

// Raises TypeError if `key` is not hashable.
void check_hashable(const std::string& method, const py::handle& key) {
  if (PyObject_Hash(key.ptr()) == -1) {
    PyErr_Clear();
    throw py::type_error(method + " expects hashable keys, got an unhashable " + type_name(key));
  }
}

}  // namespace

void bind_leaf_guards_containers(GuardManagerClass& cls) {
  cls.def("length_check",
          [](GuardManager& g, py::handle n) -> GuardManager& {
            g.add_leaf(std::make_unique<guards::LengthCheck>(checked_length("length_check()", n)));
            return g;
          },
          py::arg("n"), py::return_value_policy::reference,
          "LENGTH_CHECK: len(value) == n (lists, tuples, dicts, sets, or anything with __len__).")
      .def("dict_length",
           [](GuardManager& g, py::handle n) -> GuardManager& {
             g.add_leaf(std::make_unique<guards::DictLength>(checked_length("dict_length()", n)));
             return g;
           },
           py::arg("n"), py::return_value_policy::reference,
           "DICT_LENGTH: value is a dict (or subclass) holding n entries.")
      .def("dict_contains",
           [](GuardManager& g, py::handle key, py::handle contains) -> GuardManager& {
             check_hashable("dict_contains()", key);
             if (!PyBool_Check(contains.ptr())) {
               throw py::type_error("dict_contains() expects contains=True or False, got " +
                                    type_name(contains));
             }
             g.add_leaf(std::make_unique<guards::DictContains>(key.ptr(), contains.ptr() == Py_True));
             return g;
           },
           py::arg("key"), py::arg("contains") = true, py::return_value_policy::reference,
           "DICT_CONTAINS: `key in value` is `contains` (contains=False: key not in value).")
      .def("mapping_keys_match",
           [](GuardManager& g, py::handle keys) -> GuardManager& {
             const std::string method = "mapping_keys_match()";
             if (PyUnicode_Check(keys.ptr()) || PyBytes_Check(keys.ptr()) ||
                 !py::isinstance<py::iterable>(keys)) {
               throw py::type_error(method + " expects an iterable of keys (a list or tuple), got " +
                                    type_name(keys));
             }
             std::vector<Ref> expected;
             py::set distinct;
             for (py::handle key : keys) {
               check_hashable(method, key);
               if (distinct.contains(key)) {
                 throw py::value_error(method + " got the key " + py::repr(key).cast<std::string>() +
                                       " twice; a mapping cannot hold it twice");
               }
               distinct.add(key);
               expected.push_back(Ref::borrow(key.ptr()));
             }
             g.add_leaf(std::make_unique<guards::MappingKeysMatch>(std::move(expected)));
             return g;
           },
           py::arg("keys"), py::return_value_policy::reference,
           "MAPPING_KEYS_MATCH: the mapping's keys are exactly `keys`, in order (a dict's "
           "insertion order, or the order its keys() gives); keys of different types differ.");
}

}  // namespace framecache
