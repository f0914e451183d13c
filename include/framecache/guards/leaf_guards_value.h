// Leaf guards about a value: EQUALS_MATCH, FLOAT_IS_NAN.
#pragma once

#include <string>

#include "framecache/guards/guard_manager.h"
#include "framecache/ref.h"

namespace framecache::guards {

// True if `value` (borrowed) is None, Ellipsis, NotImplemented, an exact int,
// bool, float, complex, str, bytes or range, or a tuple/frozenset of those:
// its equality cannot change and comparing it runs no Python. EQUALS_MATCH
// accepts only such constants; DICT_VERSION skips only such items.
bool is_immutable_constant(PyObject* value);

// type(value) is type(expected) and value equals expected so closely that no
// code can tell them apart: == alone is not enough, since 0.0 == -0.0,
// (1,) == (True,) == (1.0,) and range(0, 3, 2) == range(0, 4, 2). Identity
// short-circuits; floats compare bit for bit; tuples, frozensets, complex and
// ranges compare element by element with the same rule. `expected` must be an
// immutable constant without NaN (see bind_leaf_guards_value.cpp).
class EqualsMatch final : public LeafGuard {
 public:
  explicit EqualsMatch(PyObject* expected);  // borrowed; a copy is not made
  bool check(PyObject* value) override;
  std::string explain(PyObject* value) override;
  std::string describe() const override;
  const char* kind() const override { return "EQUALS_MATCH"; }

 private:
  // How check() compares once the types agree: exact int that fits a C long,
  // str, bytes (their data), singletons (identity), other plain types (==),
  // float (bits), containers and the rest (strict_equal).
  enum class Mode { kSmallInt, kStr, kBytes, kIdentity, kEquals, kFloat, kStrict };
  Ref expected_;
  PyTypeObject* type_;  // borrowed through expected_
  Mode mode_;
  long expected_long_ = 0;  // kSmallInt
  std::string repr_;
};

// value is a float (or float subclass) holding NaN.
class FloatIsNan final : public LeafGuard {
 public:
  bool check(PyObject* value) override;
  std::string explain(PyObject* value) override;
  std::string describe() const override { return "FLOAT_IS_NAN"; }
  const char* kind() const override { return "FLOAT_IS_NAN"; }
};

}  // namespace framecache::guards
