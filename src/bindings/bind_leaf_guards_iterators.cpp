// Builder methods for RANGE_ITERATOR_MATCH and TUPLE_ITERATOR_LEN.
#include "framecache/bindings.h"
#include "framecache/guards/leaf_guards_iterators.h"

namespace framecache {

using guards::GuardManager;

namespace {

// An int argument (or __index__ object, not a bool) as a Python int.
py::int_ checked_int(const std::string& method, const char* what, const py::handle& v) {
  if (PyBool_Check(v.ptr()) || !PyIndex_Check(v.ptr())) {
    throw py::type_error(method + " expects an int " + what + ", got " + type_name(v));
  }
  auto as_int = py::reinterpret_steal<py::int_>(PyNumber_Index(v.ptr()));
  if (!as_int) throw py::error_already_set();
  return as_int;
}

// An int argument that fits a C long.
long checked_long(const std::string& method, const char* what, const py::handle& v) {
  py::int_ as_int = checked_int(method, what, v);
  const long out = PyLong_AsLong(as_int.ptr());
  if (out == -1 && PyErr_Occurred()) {
    PyErr_Clear();
    throw py::value_error(method + " expects a " + what + " that fits a C long, got " +
                          py::repr(as_int).cast<std::string>());
  }
  return out;
}

}  // namespace

void bind_leaf_guards_iterators(GuardManagerClass& cls) {
  cls.def("range_iterator_match",
          [](GuardManager& g, py::handle start, py::handle stop, py::handle step) -> GuardManager& {
            const std::string method = "range_iterator_match()";
            const long a = checked_long(method, "start", start);
            const long b = checked_long(method, "stop", stop);
            const long s = checked_long(method, "step", step);
            if (s == 0) throw py::value_error(method + " expects a non-zero step");
            py::object r = py::reinterpret_borrow<py::object>(
                reinterpret_cast<PyObject*>(&PyRange_Type))(py::int_(a), py::int_(b), py::int_(s));
            // CPython decides which iterator a range gets: a range_iterator
            // only when every value fits a C long. Ask it rather than guess.
            py::object it = py::iter(r);
            if (Py_TYPE(it.ptr()) != &PyRangeIter_Type) {
              throw py::value_error(method + " expects a range whose values fit a C long (a " +
                                    py::repr(r).cast<std::string>() + " iterator is a " +
                                    type_name(it) + ", which this guard does not read)");
            }
            const long length = static_cast<long>(py::len(r));
            g.add_leaf(std::make_unique<guards::RangeIteratorMatch>(
                a, length, s, py::repr(r).cast<std::string>()));
            return g;
          },
          py::arg("start"), py::arg("stop"), py::arg("step") = 1,
          py::return_value_policy::reference,
          "RANGE_ITERATOR_MATCH: value is a range_iterator that will yield exactly the values "
          "of range(start, stop, step). Reads its state without advancing it.")
      .def("tuple_iterator_len",
           [](GuardManager& g, py::handle n) -> GuardManager& {
             const std::string method = "tuple_iterator_len()";
             py::int_ v = checked_int(method, "length", n);
             const Py_ssize_t len = PyLong_AsSsize_t(v.ptr());
             if (len == -1 && PyErr_Occurred()) {
               PyErr_Clear();
               throw py::value_error(method + " expects a length that fits in Py_ssize_t, got " +
                                     py::repr(v).cast<std::string>());
             }
             if (len < 0) {
               throw py::value_error(method + " expects a length >= 0, got " + std::to_string(len));
             }
             g.add_leaf(std::make_unique<guards::TupleIteratorLen>(len));
             return g;
           },
           py::arg("n"), py::return_value_policy::reference,
           "TUPLE_ITERATOR_LEN: value is a tuple_iterator with n items left.")
      .def_static("_iterator_struct_reads", &guards::iterator_struct_reads,
                  "True when the iterator guards read CPython's iterator structs directly "
                  "(their layout was verified at startup).")
      .def_static("_set_iterator_struct_reads", &guards::set_iterator_struct_reads,
                  py::arg("enabled"),
                  "Turn the iterator guards' struct reads off (portable path) or back on; "
                  "returns the previous setting. For tests.");
}

}  // namespace framecache
