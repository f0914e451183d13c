// Leaf guards about an object's attributes: NO_HASATTR.
#pragma once

#include <Python.h>

#include <string>

#include "framecache/guards/guard_manager.h"
#include "framecache/ref.h"

namespace framecache::guards {

// value has no attribute `name`: getattr(value, name) raises AttributeError.
// Finding the attribute fails the guard, and so does any other exception from
// the lookup (a __getattr__ raising RuntimeError says nothing about absence);
// a fatal one is left set.
class NoHasattr final : public LeafGuard {
 public:
  // name: borrowed str; an interned copy is kept.
  explicit NoHasattr(PyObject* name);
  bool check(PyObject* value) override;
  std::string explain(PyObject* value) override;
  std::string describe() const override;
  const char* kind() const override { return "NO_HASATTR"; }

 private:
  Ref name_;
  std::string name_str_;
};

}  // namespace framecache::guards
