// Leaf guards about an object's identity or type: TYPE_MATCH, ID_MATCH,
// NONE_MATCH, TRUE_MATCH, FALSE_MATCH, NOT_NONE.
#pragma once

#include <string>

#include "framecache/guards/guard_manager.h"
#include "framecache/guards/object_identity.h"

namespace framecache::guards {

// type(value) is T (exactly; subclasses fail).
class TypeMatch final : public LeafGuard {
 public:
  explicit TypeMatch(PyObject* type);  // borrowed; must be a type
  bool check(PyObject* value) override { return type_.is(reinterpret_cast<PyObject*>(Py_TYPE(value))); }
  std::string explain(PyObject* value) override;
  std::string describe() const override;
  const char* kind() const override { return "TYPE_MATCH"; }

 private:
  ObjectIdentity type_;
  std::string name_;
};

// value is obj.
class IdMatch final : public LeafGuard {
 public:
  explicit IdMatch(PyObject* obj);  // borrowed
  bool check(PyObject* value) override { return obj_.is(value); }
  std::string explain(PyObject* value) override;
  std::string describe() const override;
  const char* kind() const override { return "ID_MATCH"; }

 private:
  ObjectIdentity obj_;
  std::string repr_;
};

// value is a given singleton (None, True, False), or (NOT_NONE) is not None.
class SingletonMatch final : public LeafGuard {
 public:
  enum class Which { kNone, kTrue, kFalse, kNotNone };
  explicit SingletonMatch(Which which) : which_(which) {}
  bool check(PyObject* value) override {
    switch (which_) {
      case Which::kNone: return value == Py_None;
      case Which::kTrue: return value == Py_True;
      case Which::kFalse: return value == Py_False;
      case Which::kNotNone: return value != Py_None;
    }
    return false;
  }
  std::string explain(PyObject* value) override;
  std::string describe() const override;
  const char* kind() const override;

 private:
  Which which_;
};

}  // namespace framecache::guards
