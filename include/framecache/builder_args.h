// Argument checks shared by the builder methods of guard nodes. Each error is
// a TypeError or ValueError that names the method and what it expected.
#pragma once

#include <pybind11/pybind11.h>

#include <string>

#include "framecache/guards/guard_manager.h"

namespace framecache {

namespace py = pybind11;

// Accessors that read a value cannot hang off the root, which has none.
inline void require_value_node(const char* method, const guards::GuardManager& node) {
  if (node.is_root()) {
    throw py::type_error(std::string(method) +
                         " reads from a value, and the root has none: start from "
                         "root.local(name), root.global_(name) or root.builtin(name)");
  }
}

// A non-empty str argument, as UTF-8.
inline std::string builder_name(const char* method, py::handle value) {
  if (!py::isinstance<py::str>(value)) {
    throw py::type_error(std::string(method) + " expects a str name, got " +
                         Py_TYPE(value.ptr())->tp_name);
  }
  std::string s = value.cast<std::string>();
  if (s.empty()) throw py::value_error(std::string(method) + " expects a non-empty name");
  return s;
}

// An integer index (an int or any object with __index__, but not a bool).
// Negative values are accepted only when `allow_negative`.
inline Py_ssize_t builder_index(const char* method, py::handle value, bool allow_negative) {
  if (PyBool_Check(value.ptr()) || !PyIndex_Check(value.ptr())) {
    throw py::type_error(std::string(method) + " expects an int index, got " +
                         Py_TYPE(value.ptr())->tp_name);
  }
  const Py_ssize_t i = PyNumber_AsSsize_t(value.ptr(), PyExc_OverflowError);
  if (i == -1 && PyErr_Occurred()) {
    PyErr_Clear();
    throw py::value_error(std::string(method) + " index " + py::repr(value).cast<std::string>() +
                          " is out of range");
  }
  if (i < 0 && !allow_negative) {
    throw py::value_error(std::string(method) + " expects a non-negative index, got " +
                          std::to_string(i));
  }
  return i;
}

}  // namespace framecache
