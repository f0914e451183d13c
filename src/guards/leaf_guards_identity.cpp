// TYPE_MATCH, ID_MATCH and the singleton guards.
#include "framecache/guards/leaf_guards_identity.h"

namespace framecache::guards {

TypeMatch::TypeMatch(PyObject* type)
    : type_(type), name_(reinterpret_cast<PyTypeObject*>(type)->tp_name) {}

std::string TypeMatch::explain(PyObject* value) {
  if (type_.get() == nullptr) return "expected type " + name_ + ", which no longer exists";
  return "expected type " + name_ + ", got " + type_name(value);
}

std::string TypeMatch::describe() const { return "TYPE_MATCH(" + name_ + ")"; }

IdMatch::IdMatch(PyObject* obj) : obj_(obj), repr_(safe_repr(obj)) {}

std::string IdMatch::explain(PyObject* value) {
  if (obj_.get() == nullptr) return "expected the object " + repr_ + ", which no longer exists";
  return "expected the object " + repr_ + ", got a different object " + safe_repr(value);
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
