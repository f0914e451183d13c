// ObjectSourceAccessor: a root accessor whose value is a given object.
#include "framecache/guards/accessors_object.h"

#include <cstdio>

namespace framecache::guards {

ObjectSourceAccessor::ObjectSourceAccessor(std::string key, std::unique_ptr<GuardManager> child,
                                           PyObject* obj, std::string label)
    : GuardAccessor(std::move(key), std::move(child)), obj_(obj), label_(std::move(label)) {}

Ref ObjectSourceAccessor::fetch(PyObject*, const FrameInputs&) {
  PyObject* obj = obj_.get();  // borrowed
  if (obj == nullptr) {
    PyErr_Format(PyExc_ReferenceError, "%s no longer exists", label_.c_str());
    return Ref();
  }
  return Ref::borrow(obj);
}

std::string ObjectSourceAccessor::explain_fetch_failure(PyObject*, const FrameInputs&) {
  return label_ + " no longer exists";
}

std::string ObjectSourceAccessor::describe() const { return "ObjectSource(" + label_ + ")"; }

GuardManager& add_object_source(GuardManager& root, PyObject* obj, const std::string& label) {
  char id[32];
  std::snprintf(id, sizeof(id), "%p", static_cast<void*>(obj));
  const std::string key = std::string("object:") + id;
  return root.get_or_add_accessor(key, label, [&](std::unique_ptr<GuardManager> child) {
    return std::make_unique<ObjectSourceAccessor>(key, std::move(child), obj, label);
  });
}

}  // namespace framecache::guards
