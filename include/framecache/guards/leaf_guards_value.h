// Leaf guards about a value: EQUALS_MATCH.
#pragma once

#include <string>

#include "framecache/guards/guard_manager.h"
#include "framecache/ref.h"

namespace framecache::guards {

// type(value) is type(expected) and value == expected. The type check first
// keeps 1, 1.0 and True apart; identity short-circuits the comparison.
class EqualsMatch final : public LeafGuard {
 public:
  explicit EqualsMatch(PyObject* expected);  // borrowed; a copy is not made
  bool check(PyObject* value) override;
  std::string explain(PyObject* value) override;
  std::string describe() const override;
  const char* kind() const override { return "EQUALS_MATCH"; }

 private:
  Ref expected_;
  PyTypeObject* type_;  // borrowed through expected_
  std::string repr_;
};

}  // namespace framecache::guards
