// EQUALS_MATCH.
#include "framecache/guards/leaf_guards_value.h"

#include <stdexcept>

namespace framecache::guards {

EqualsMatch::EqualsMatch(PyObject* expected)
    : expected_(Ref::borrow(expected)), type_(Py_TYPE(expected)), repr_(safe_repr(expected)) {}

bool EqualsMatch::check(PyObject* value) {
  PyObject* expected = expected_.get();
  if (value == expected) return true;
  if (Py_TYPE(value) != type_) return false;
  const int eq = PyObject_RichCompareBool(value, expected, Py_EQ);
  if (eq < 0) {
    consume_check_error();
    return false;
  }
  return eq == 1;
}

std::string EqualsMatch::explain(PyObject* value) {
  if (Py_TYPE(value) != type_) {
    return "expected a " + std::string(type_->tp_name) + " equal to " + repr_ + ", got " +
           type_name(value) + " " + safe_repr(value);
  }
  return "expected " + repr_ + ", got " + safe_repr(value);
}

std::string EqualsMatch::describe() const { return "EQUALS_MATCH(" + repr_ + ")"; }

}  // namespace framecache::guards
