// The escape hatch: LAMBDA, a guard written as a Python callable.
#pragma once

#include <Python.h>

#include <string>

#include "framecache/guards/guard_manager.h"
#include "framecache/ref.h"

namespace framecache::guards {

// fn(value) is truthy. An exception from fn, or from the truth test of what
// it returns, fails the guard (a fatal one is left set for the root). fn is
// held strongly: a guard tree keeps it, and what it closes over, alive.
// fn runs arbitrary Python, which may release the GIL: another thread may
// then check the same tree (see RootGuardManager::active_checks).
class LambdaGuard final : public LeafGuard {
 public:
  // fn: borrowed, callable. description: what fn tests, for messages.
  LambdaGuard(PyObject* fn, std::string description);
  bool check(PyObject* value) override;
  std::string explain(PyObject* value) override;
  std::string describe() const override { return "LAMBDA(" + description_ + ")"; }
  const char* kind() const override { return "LAMBDA"; }

 private:
  // 1 truthy, 0 falsy, -1 with an exception set. `result` receives fn's result.
  int call(PyObject* value, Ref& result) const;
  Ref fn_;
  std::string description_;
};

}  // namespace framecache::guards
