// TYPE_MATCH, ID_MATCH and the singleton guards.
#include "framecache/guards/leaf_guards_identity.h"

#include <cstdio>

#include "framecache/guards/torch_access.h"

namespace framecache::guards {

TypeMatch::TypeMatch(PyObject* type)
    : type_(type), name_(reinterpret_cast<PyTypeObject*>(type)->tp_name) {}

std::string TypeMatch::explain(PyObject* value) {
  if (type_.get() == nullptr) return "expected type " + name_ + ", which no longer exists";
  return "expected type " + name_ + ", got " + type_name(value);
}

std::string TypeMatch::describe() const { return "TYPE_MATCH(" + name_ + ")"; }

namespace {
// How ID_MATCH names an object (`obj` borrowed). A tensor's repr() formats its
// values: ~15 ms for a 128x64 parameter, paid for every parameter of every
// compiled module when its guards are built. Identity is what the guard
// checks, so a tensor is named by its type and address.
bool is_tensor(PyObject* obj) {
  if (!torch_access::loaded()) {
    // No tensor exists before torch is imported; once it is, load the reader
    // (an ID_MATCH can be built before any tensor guard has loaded it).
    PyObject* modules = PyImport_GetModuleDict();  // borrowed
    if (PyDict_GetItemString(modules, "torch") == nullptr) return false;
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    const bool ok = torch_access::ensure_loaded();
    if (!ok) PyErr_Clear();
    PyErr_Restore(type, value, tb);
    if (!ok) return false;
  }
  return torch_access::is_tensor(obj);
}

std::string identity_text(PyObject* obj) {
  if (obj != nullptr && is_tensor(obj)) {
    char address[32];
    std::snprintf(address, sizeof(address), "%p", static_cast<void*>(obj));
    return "<" + type_name(obj) + " object at " + address + ">";
  }
  return safe_repr(obj);
}
}  // namespace

IdMatch::IdMatch(PyObject* obj) : obj_(obj), repr_(identity_text(obj)) {}

std::string IdMatch::explain(PyObject* value) {
  if (obj_.get() == nullptr) return "expected the object " + repr_ + ", which no longer exists";
  return "expected the object " + repr_ + ", got a different object " + identity_text(value);
}

std::string IdMatch::describe() const { return "ID_MATCH(" + repr_ + ")"; }

const char* SingletonMatch::kind() const {
  switch (which_) {
    case Which::kNone: return "NONE_MATCH";
    case Which::kTrue: return "TRUE_MATCH";
    case Which::kFalse: return "FALSE_MATCH";
    case Which::kNotNone: return "NOT_NONE";
  }
  return "?";
}

std::string SingletonMatch::explain(PyObject* value) {
  switch (which_) {
    case Which::kNone: return "expected None, got " + safe_repr(value);
    case Which::kTrue: return "expected True, got " + safe_repr(value);
    case Which::kFalse: return "expected False, got " + safe_repr(value);
    case Which::kNotNone: return "expected a value other than None, got None";
  }
  return "?";
}

std::string SingletonMatch::describe() const { return kind(); }

}  // namespace framecache::guards
