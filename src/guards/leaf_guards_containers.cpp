// LENGTH_CHECK, DICT_LENGTH, DICT_CONTAINS, MAPPING_KEYS_MATCH.
#include "framecache/guards/leaf_guards_containers.h"

#include "framecache/cpython.h"
#include "framecache/guards/check_error_text.h"

namespace framecache::guards {

namespace {

// The length of an exact builtin container without calling Python, or -1.
Py_ssize_t builtin_length(PyObject* value) {
  if (PyList_CheckExact(value)) return PyList_GET_SIZE(value);
  if (PyTuple_CheckExact(value)) return PyTuple_GET_SIZE(value);
  if (PyDict_CheckExact(value)) return PyDict_GET_SIZE(value);
  if (PySet_CheckExact(value) || PyFrozenSet_CheckExact(value)) return PySet_GET_SIZE(value);
  return -1;
}

// A tag that changes on every mutation of an exact dict (cpython.h: 3.11's
// ma_version_tag, a dict watcher's tag on 3.12+).
uint64_t dict_version(PyObject* dict) { return cpy::dict_version(dict); }

// Same key for MAPPING_KEYS_MATCH: identical, or the same type and equal.
// 1 / 0 / -1 with an exception set. Both borrowed; the caller keeps them alive.
int same_key(PyObject* a, PyObject* b) {
  if (a == b) return 1;
  if (Py_TYPE(a) != Py_TYPE(b)) return 0;
  return PyObject_RichCompareBool(a, b, Py_EQ);
}

std::string repr_keys(const std::vector<Ref>& keys) {
  std::string out = "[";
  for (size_t i = 0; i < keys.size(); ++i) {
    if (i) out += ", ";
    out += safe_repr(keys[i].get(), 40);
    if (out.size() > 200) {
      out += ", ...";
      break;
    }
  }
  return out + "]";
}

}  // namespace

// --- LENGTH_CHECK --------------------------------------------------------------

bool LengthCheck::check(PyObject* value) {
  Py_ssize_t n = builtin_length(value);
  if (n < 0) {
    n = PyObject_Size(value);
    if (n < 0) {
      consume_check_error();
      return false;
    }
  }
  return n == length_;
}

std::string LengthCheck::explain(PyObject* value) {
  Py_ssize_t n = builtin_length(value);
  if (n < 0) n = PyObject_Size(value);
  if (n < 0) {
    return "expected length " + std::to_string(length_) + ", but len() of " + a_type_name(value) +
           " raised " + take_check_error_text();
  }
  return "expected length " + std::to_string(length_) + ", got " + std::to_string(n);
}

std::string LengthCheck::describe() const { return "LENGTH_CHECK(" + std::to_string(length_) + ")"; }

// --- DICT_LENGTH ---------------------------------------------------------------

std::string DictLength::explain(PyObject* value) {
  if (!PyDict_Check(value)) {
    return "expected a dict of length " + std::to_string(length_) + ", got " + a_type_name(value);
  }
  return "expected a dict of length " + std::to_string(length_) + ", got length " +
         std::to_string(PyDict_GET_SIZE(value));
}

std::string DictLength::describe() const { return "DICT_LENGTH(" + std::to_string(length_) + ")"; }

// --- DICT_CONTAINS -------------------------------------------------------------

DictContains::DictContains(PyObject* key, bool contains)
    : key_(Ref::borrow(key)), contains_(contains), key_repr_(safe_repr(key)) {}

int DictContains::lookup(PyObject* value) const {
  if (PyDict_CheckExact(value)) {
    // A stored key's __eq__ may run Python and mutate the dict; CPython's
    // lookup survives that, but the answer would describe a dict that no
    // longer exists, so a mutation during the lookup fails the guard.
    const uint64_t before = dict_version(value);
    const int found = PyDict_Contains(value, key_.get());
    if (found >= 0 && dict_version(value) != before) {
      PyErr_SetString(PyExc_RuntimeError, "the dict changed while it was being searched");
      return -1;
    }
    return found;
  }
  return PySequence_Contains(value, key_.get());
}

bool DictContains::check(PyObject* value) {
  const int found = lookup(value);
  if (found < 0) {
    consume_check_error();
    return false;
  }
  return (found == 1) == contains_;
}

std::string DictContains::explain(PyObject* value) {
  const int found = lookup(value);
  if (found < 0) {
    return std::string("expected key ") + key_repr_ + (contains_ ? " to be present" : " to be absent") +
           ", but the lookup in " + a_type_name(value) + " raised " + take_check_error_text();
  }
  if ((found == 1) == contains_) {
    return "expected key " + key_repr_ + (contains_ ? " to be present" : " to be absent") +
           ", which it was not when checked but is when looked up again";
  }
  if (contains_) return "expected key " + key_repr_ + " to be present, but it is missing";
  return "expected key " + key_repr_ + " to be absent, but it is present";
}

std::string DictContains::describe() const {
  return std::string("DICT_CONTAINS(") + key_repr_ + (contains_ ? "" : ", contains=False") + ")";
}

// --- MAPPING_KEYS_MATCH --------------------------------------------------------

MappingKeysMatch::MappingKeysMatch(std::vector<Ref> keys)
    : keys_(std::move(keys)), keys_repr_(repr_keys(keys_)) {}

int MappingKeysMatch::match_dict(PyObject* dict) const {
  if (static_cast<size_t>(PyDict_GET_SIZE(dict)) != keys_.size()) return 0;
  Py_ssize_t pos = 0;
  PyObject *key, *item;
  size_t i = 0;
  // Identity and exact-str comparisons run no Python, so the dict cannot
  // change under this loop; any other key type takes the snapshot path.
  while (PyDict_Next(dict, &pos, &key, &item)) {
    PyObject* expected = keys_[i++].get();
    if (key == expected) continue;
    if (Py_TYPE(key) != Py_TYPE(expected)) return 0;
    if (!PyUnicode_CheckExact(key)) return match_keys_list(dict);
    if (PyUnicode_Compare(key, expected) != 0) return 0;
  }
  return 1;
}

int MappingKeysMatch::match_keys_list(PyObject* value) const {
  const bool exact_dict = PyDict_CheckExact(value);
  const uint64_t before = exact_dict ? dict_version(value) : 0;
  // A new list holding its own references: a key's __eq__ that mutates the
  // mapping cannot free what is being compared.
  Ref list = Ref::steal(exact_dict ? PyDict_Keys(value) : PyMapping_Keys(value));
  if (!list) return -1;
  if (!PyList_Check(list.get())) {
    PyErr_SetString(PyExc_TypeError, "keys() did not give a list");
    return -1;
  }
  if (static_cast<size_t>(PyList_GET_SIZE(list.get())) != keys_.size()) return 0;
  for (size_t i = 0; i < keys_.size(); ++i) {
    Ref key = Ref::borrow(PyList_GET_ITEM(list.get(), static_cast<Py_ssize_t>(i)));
    const int same = same_key(key.get(), keys_[i].get());
    if (same != 1) return same;
  }
  if (exact_dict && dict_version(value) != before) {
    PyErr_SetString(PyExc_RuntimeError, "the dict changed while its keys were being compared");
    return -1;
  }
  return 1;
}

bool MappingKeysMatch::check(PyObject* value) {
  const int ok = PyDict_CheckExact(value) ? match_dict(value) : match_keys_list(value);
  if (ok < 0) {
    consume_check_error();
    return false;
  }
  return ok == 1;
}

std::string MappingKeysMatch::explain(PyObject* value) {
  const std::string want = "expected keys " + keys_repr_;
  Ref list = Ref::steal(PyDict_CheckExact(value) ? PyDict_Keys(value) : PyMapping_Keys(value));
  if (!list) {
    return want + ", but reading the keys of " + a_type_name(value) + " raised " +
           take_check_error_text();
  }
  const int ok = match_keys_list(value);
  if (ok < 0) return want + ", but comparing them raised " + take_check_error_text();
  if (ok == 1) return want + ", which did not match when checked but did when read again";
  std::vector<Ref> got;
  if (PyList_Check(list.get())) {
    for (Py_ssize_t i = 0; i < PyList_GET_SIZE(list.get()); ++i) {
      got.push_back(Ref::borrow(PyList_GET_ITEM(list.get(), i)));
    }
  }
  return want + ", got " + repr_keys(got);
}

std::string MappingKeysMatch::describe() const { return "MAPPING_KEYS_MATCH(" + keys_repr_ + ")"; }

}  // namespace framecache::guards
