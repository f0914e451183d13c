// Builder methods for EQUALS_MATCH and FLOAT_IS_NAN.
#include <cmath>

#include "framecache/bindings.h"
#include "framecache/cpython.h"
#include "framecache/guards/leaf_guards_value.h"

namespace framecache {

using guards::GuardManager;

namespace {

// True if an immutable constant holds a NaN anywhere (NaN != NaN, so an
// EQUALS_MATCH on it could never pass).
bool contains_nan(PyObject* v) {
  if (PyFloat_CheckExact(v)) return std::isnan(PyFloat_AS_DOUBLE(v));
  if (PyComplex_CheckExact(v)) {
    const Py_complex c = PyComplex_AsCComplex(v);
    return std::isnan(c.real) || std::isnan(c.imag);
  }
  if (PyTuple_CheckExact(v)) {
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(v); ++i) {
      if (contains_nan(PyTuple_GET_ITEM(v, i))) return true;
    }
  }
  if (PyFrozenSet_CheckExact(v)) {
    Py_ssize_t pos = 0;
    PyObject* item;
    Py_hash_t hash;
    while (cpy::set_next_entry(v, &pos, &item, &hash)) {
      if (contains_nan(item)) return true;
    }
  }
  return false;
}
}  // namespace

void bind_leaf_guards_value(GuardManagerClass& cls) {
  cls.def("equals_match",
          [](GuardManager& g, py::handle value) -> GuardManager& {
            if (!guards::is_immutable_constant(value.ptr())) {
              throw py::type_error(
                  std::string("equals_match() expects an immutable constant (int, float, complex, "
                              "bool, str, bytes, None, range, or a tuple/frozenset of those), got ") +
                  Py_TYPE(value.ptr())->tp_name +
                  "; guard mutable objects with id_match() and guards on their contents");
            }
            if (contains_nan(value.ptr())) {
              throw py::value_error(
                  "equals_match() cannot match NaN (NaN != NaN), got " +
                  py::repr(value).cast<std::string>() + "; use float_is_nan() for a float NaN");
            }
            g.add_leaf(std::make_unique<guards::EqualsMatch>(value.ptr()));
            return g;
          },
          py::arg("value"), py::return_value_policy::reference,
          "EQUALS_MATCH: type(value) is type(expected) and value equals expected exactly: "
          "floats bit for bit (0.0 is not -0.0), and tuple/frozenset elements of the same "
          "types (1, 1.0 and True differ).")
      .def("float_is_nan",
           [](GuardManager& g) -> GuardManager& {
             g.add_leaf(std::make_unique<guards::FloatIsNan>());
             return g;
           },
           py::return_value_policy::reference, "FLOAT_IS_NAN: value is a float holding NaN.");
}

}  // namespace framecache
