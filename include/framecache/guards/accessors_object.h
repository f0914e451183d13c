// An accessor on the root whose value is a given object rather than something
// read from the frame: guards on a module's namespace, a class, a constant the
// compiled code closed over. The object is held weakly when it can be.
#pragma once

#include <string>

#include "framecache/guards/guard_manager.h"
#include "framecache/guards/object_identity.h"

namespace framecache::guards {

// The object itself, shown as `label`. Fails (ReferenceError) once a weakly
// held object has died.
class ObjectSourceAccessor final : public GuardAccessor {
 public:
  // obj: borrowed.
  ObjectSourceAccessor(std::string key, std::unique_ptr<GuardManager> child, PyObject* obj,
                       std::string label);
  Ref fetch(PyObject* parent, const FrameInputs& in) override;
  std::string explain_fetch_failure(PyObject* parent, const FrameInputs& in) override;
  std::string describe() const override;

 private:
  ObjectIdentity obj_;
  std::string label_;
};

// Adds (or finds) the node for `obj` (borrowed) on a root; its source is `label`.
GuardManager& add_object_source(GuardManager& root, PyObject* obj, const std::string& label);

}  // namespace framecache::guards
