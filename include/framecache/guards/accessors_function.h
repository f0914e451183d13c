// Accessors that read a function's parts: a closure cell's contents,
// __defaults__, __kwdefaults__, __code__ and __globals__.
//
// Each reads the function object's fields directly, as Python's attributes
// of the same names do. A bound method (or a C-level instancemethod) is
// looked through to its function, as attribute access on a method forwards
// to __func__. Any other value fails the guard.
#pragma once

#include <string>

#include "framecache/guards/guard_manager.h"

namespace framecache::guards {

// f.__closure__[index].cell_contents. Fails when f has no such cell or the
// cell is empty.
class ClosureCellAccessor final : public GuardAccessor {
 public:
  ClosureCellAccessor(std::string key, std::unique_ptr<GuardManager> child, Py_ssize_t index);
  Ref fetch(PyObject* parent, const FrameInputs& in) override;
  std::string explain_fetch_failure(PyObject* parent, const FrameInputs& in) override;
  std::string describe() const override;

 private:
  Py_ssize_t index_;
};

// f.__defaults__, f.__kwdefaults__, f.__code__ or f.__globals__. The first two
// are None when the function has none, as in Python.
class FunctionPartAccessor final : public GuardAccessor {
 public:
  enum class Part { kDefaults, kKwDefaults, kCode, kGlobals };
  FunctionPartAccessor(std::string key, std::unique_ptr<GuardManager> child, Part part);
  Ref fetch(PyObject* parent, const FrameInputs& in) override;
  std::string explain_fetch_failure(PyObject* parent, const FrameInputs& in) override;
  std::string describe() const override;

 private:
  Part part_;
};

// Add (or find) these accessors on a node that is not the root; each returns
// the child node. `index` is >= 0.
GuardManager& add_closure_cell(GuardManager& node, Py_ssize_t index);
GuardManager& add_func_defaults(GuardManager& node);
GuardManager& add_func_kwdefaults(GuardManager& node);
GuardManager& add_func_code(GuardManager& node);
GuardManager& add_func_globals(GuardManager& node);

}  // namespace framecache::guards
