// EQUALS_MATCH and FLOAT_IS_NAN.
#include "framecache/guards/leaf_guards_value.h"

#include <cmath>
#include <cstring>

#include "framecache/cpython.h"

namespace framecache::guards {

namespace {

// Bit-for-bit equality of two doubles: keeps 0.0 and -0.0 apart.
bool same_double(double a, double b) { return std::memcmp(&a, &b, sizeof(double)) == 0; }

// 1 if range `a` and range `b` have the same start, stop and step (both exact
// ranges; reading their attributes runs no Python), 0 if not, -1 on error.
int same_range(PyObject* a, PyObject* b) {
  static const char* const kFields[] = {"start", "stop", "step"};
  for (const char* field : kFields) {
    Ref x = Ref::steal(PyObject_GetAttrString(a, field));
    Ref y = Ref::steal(PyObject_GetAttrString(b, field));
    if (!x || !y) return -1;
    const int eq = PyObject_RichCompareBool(x.get(), y.get(), Py_EQ);
    if (eq != 1) return eq;
  }
  return 1;
}

// Types whose == runs no Python and already tells values apart exactly.
bool plain_equality_type(PyTypeObject* t) {
  return t == &PyLong_Type || t == &PyUnicode_Type || t == &PyBytes_Type || t == &PyBool_Type ||
         t == Py_TYPE(Py_None) || t == Py_TYPE(Py_Ellipsis) || t == Py_TYPE(Py_NotImplemented);
}

// True if `v` is built only from the types an EQUALS_MATCH constant may hold,
// so that hashing or comparing it runs no Python.
bool builtin_constant(PyObject* v, int depth) {
  if (depth > 32) return false;
  PyTypeObject* t = Py_TYPE(v);
  if (plain_equality_type(t) || t == &PyFloat_Type || t == &PyComplex_Type || t == &PyRange_Type) {
    return true;
  }
  if (t == &PyTuple_Type) {
    for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(v); ++i) {
      if (!builtin_constant(PyTuple_GET_ITEM(v, i), depth + 1)) return false;
    }
    return true;
  }
  if (t == &PyFrozenSet_Type) {
    Py_ssize_t pos = 0;
    PyObject* item;
    Py_hash_t hash;
    while (cpy::set_next_entry(v, &pos, &item, &hash)) {
      if (!builtin_constant(item, depth + 1)) return false;
    }
    return true;
  }
  return false;
}

// 1 if `value` is indistinguishable from `expected` (an immutable constant,
// see EqualsMatch), 0 if not, -1 with an exception set. Recursion is bounded
// by the depth of `expected`, which the builder limits. Both borrowed.
int strict_equal(PyObject* value, PyObject* expected) {
  if (value == expected) return 1;
  PyTypeObject* t = Py_TYPE(expected);
  if (Py_TYPE(value) != t) return 0;
  if (plain_equality_type(t)) return PyObject_RichCompareBool(value, expected, Py_EQ);
  if (t == &PyFloat_Type) return same_double(PyFloat_AS_DOUBLE(value), PyFloat_AS_DOUBLE(expected));
  if (t == &PyComplex_Type) {
    const Py_complex a = PyComplex_AsCComplex(value), b = PyComplex_AsCComplex(expected);
    return same_double(a.real, b.real) && same_double(a.imag, b.imag);
  }
  if (t == &PyRange_Type) return same_range(value, expected);
  if (t == &PyTuple_Type) {
    const Py_ssize_t n = PyTuple_GET_SIZE(expected);
    if (PyTuple_GET_SIZE(value) != n) return 0;
    for (Py_ssize_t i = 0; i < n; ++i) {
      const int eq = strict_equal(PyTuple_GET_ITEM(value, i), PyTuple_GET_ITEM(expected, i));
      if (eq != 1) return eq;
    }
    return 1;
  }
  if (t == &PyFrozenSet_Type) {
    if (PySet_GET_SIZE(value) != PySet_GET_SIZE(expected)) return 0;
    // Only builtin constants may be hashed and compared (no Python runs, the
    // frozensets cannot change); then set equality, then a partner of the
    // same type and bits for each element whose == is looser than identity of
    // value (numbers, nested containers). str/bytes/None equal only
    // themselves, so set equality settles them.
    if (!builtin_constant(value, 0)) return 0;
    const int eq = PyObject_RichCompareBool(value, expected, Py_EQ);
    if (eq != 1) return eq;
    Py_ssize_t pos = 0;
    PyObject* item;
    Py_hash_t hash;
    while (cpy::set_next_entry(value, &pos, &item, &hash)) {
      PyTypeObject* it = Py_TYPE(item);
      if (it == &PyUnicode_Type || it == &PyBytes_Type || it == Py_TYPE(Py_None)) continue;
      bool partner = false;
      Py_ssize_t pos2 = 0;
      PyObject* other;
      Py_hash_t hash2;
      while (!partner && cpy::set_next_entry(expected, &pos2, &other, &hash2)) {
        if (hash2 != hash) continue;
        const int same = strict_equal(item, other);
        if (same < 0) return -1;
        partner = same == 1;
      }
      if (!partner) return 0;
    }
    return 1;
  }
  return 0;  // not a constant type the builder accepts
}

}  // namespace

bool is_immutable_constant(PyObject* value) { return builtin_constant(value, 0); }

// --- EQUALS_MATCH --------------------------------------------------------------

EqualsMatch::EqualsMatch(PyObject* expected)
    : expected_(Ref::borrow(expected)), type_(Py_TYPE(expected)), repr_(safe_repr(expected)) {
  if (type_ == &PyLong_Type) {
    int overflow = 0;
    expected_long_ = PyLong_AsLongAndOverflow(expected, &overflow);
    mode_ = overflow == 0 ? Mode::kSmallInt : Mode::kEquals;
  } else if (type_ == &PyUnicode_Type && PyUnicode_READY(expected) == 0) {
    mode_ = Mode::kStr;
  } else if (type_ == &PyBytes_Type) {
    mode_ = Mode::kBytes;
  } else if (type_ == &PyBool_Type || type_ == Py_TYPE(Py_None) || type_ == Py_TYPE(Py_Ellipsis) ||
             type_ == Py_TYPE(Py_NotImplemented)) {
    // Singletons: two objects of these exact types are equal only if identical.
    mode_ = Mode::kIdentity;
  } else if (plain_equality_type(type_)) {
    mode_ = Mode::kEquals;
  } else if (type_ == &PyFloat_Type) {
    mode_ = Mode::kFloat;
  } else {
    mode_ = Mode::kStrict;
  }
}

bool EqualsMatch::check(PyObject* value) {
  PyObject* expected = expected_.get();
  if (value == expected) return true;
  if (Py_TYPE(value) != type_) return false;
  int eq;
  // The exact types are known equal here, so each case compares the values the
  // way the type's own == does, without the generic comparison's dispatch.
  switch (mode_) {
    case Mode::kSmallInt: {
      int overflow = 0;
      const long v = PyLong_AsLongAndOverflow(value, &overflow);  // exact int: cannot raise
      return overflow == 0 && v == expected_long_;
    }
    case Mode::kStr: {
      // A legacy (not yet canonical) str is made ready first; 3.12 has no
      // legacy strings and deprecates PyUnicode_READY, which can go then.
      if (PyUnicode_READY(value) != 0) {
        consume_check_error();
        return false;
      }
      const Py_ssize_t n = PyUnicode_GET_LENGTH(value);
      return n == PyUnicode_GET_LENGTH(expected) && PyUnicode_KIND(value) == PyUnicode_KIND(expected) &&
             std::memcmp(PyUnicode_DATA(value), PyUnicode_DATA(expected),
                         static_cast<size_t>(n) * PyUnicode_KIND(value)) == 0;
    }
    case Mode::kBytes: {
      const Py_ssize_t n = PyBytes_GET_SIZE(value);
      return n == PyBytes_GET_SIZE(expected) &&
             std::memcmp(PyBytes_AS_STRING(value), PyBytes_AS_STRING(expected),
                         static_cast<size_t>(n)) == 0;
    }
    case Mode::kIdentity:
      return false;  // value is not expected (tested above)
    case Mode::kFloat:
      return same_double(PyFloat_AS_DOUBLE(value), PyFloat_AS_DOUBLE(expected));
    case Mode::kEquals:
      eq = PyObject_RichCompareBool(value, expected, Py_EQ);
      break;
    default:
      eq = strict_equal(value, expected);
      break;
  }
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

// --- FLOAT_IS_NAN --------------------------------------------------------------

bool FloatIsNan::check(PyObject* value) {
  return PyFloat_Check(value) && std::isnan(PyFloat_AS_DOUBLE(value));
}

std::string FloatIsNan::explain(PyObject* value) {
  if (!PyFloat_Check(value)) return "expected a float NaN, got " + a_type_name(value);
  return "expected a float NaN, got " + safe_repr(value);
}

}  // namespace framecache::guards
