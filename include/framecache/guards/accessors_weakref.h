// The accessor that calls a weak reference: weakref_call(), L['w']().
#pragma once

#include <string>

#include "framecache/guards/guard_manager.h"

namespace framecache::guards {

// w(): the referent of a weakref.ref, or None once it has died, as calling
// the reference gives. An exact weakref.ref is read without a call; a subclass
// is called (it may override __call__). Any other value (a proxy included)
// fails the guard.
class WeakrefCallAccessor final : public GuardAccessor {
 public:
  using GuardAccessor::GuardAccessor;
  Ref fetch(PyObject* parent, const FrameInputs& in) override;
  std::string explain_fetch_failure(PyObject* parent, const FrameInputs& in) override;
  std::string describe() const override { return "WeakrefCall()"; }
};

// Adds (or finds) the accessor on a node that is not the root.
GuardManager& add_weakref_call(GuardManager& node);

}  // namespace framecache::guards
