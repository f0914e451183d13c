// WeakrefCallAccessor: the referent of a weak reference.
#include "framecache/guards/accessors_weakref.h"

namespace framecache::guards {

Ref WeakrefCallAccessor::fetch(PyObject* parent, const FrameInputs&) {
  if (PyWeakref_CheckRefExact(parent)) {
    return Ref::borrow(PyWeakref_GET_OBJECT(parent));  // borrowed; None once dead
  }
  if (PyWeakref_CheckRef(parent)) return Ref::steal(PyObject_CallNoArgs(parent));
  return Ref();
}

std::string WeakrefCallAccessor::explain_fetch_failure(PyObject* parent, const FrameInputs&) {
  if (PyWeakref_CheckRef(parent)) return "calling the weak reference failed";
  return "expected a weakref.ref, got " + a_type_name(parent);
}

GuardManager& add_weakref_call(GuardManager& node) {
  return node.get_or_add_accessor("weakref_call", node.source() + "()",
                                  [](std::unique_ptr<GuardManager> child) {
                                    return std::make_unique<WeakrefCallAccessor>(
                                        "weakref_call", std::move(child));
                                  });
}

}  // namespace framecache::guards
