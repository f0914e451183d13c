// Accessors that read the frame: locals, globals, builtins.
#include "framecache/guards/accessors_frame.h"

#include <stdexcept>

#include "framecache/guards/root_guard_manager.h"

namespace framecache::guards {

namespace {
Ref intern(const std::string& name) {
  Ref s = Ref::steal(PyUnicode_InternFromString(name.c_str()));
  if (!s) throw std::runtime_error("could not create a str for '" + name + "'");
  return s;
}

// Borrowed item of a dict (or new reference through the mapping protocol),
// as a new reference. A key missing from a dict gives null without an
// exception (a failing check does not pay for a KeyError it never shows;
// explain_fetch_failure says it in words); a lookup that raised, or a missing
// key of another mapping, gives null with the exception set.
Ref mapping_item(PyObject* mapping, PyObject* key) {
  if (PyDict_Check(mapping)) return Ref::borrow(PyDict_GetItemWithError(mapping, key));
  return Ref::steal(PyObject_GetItem(mapping, key));
}
}  // namespace

// --- FrameLocalAccessor -------------------------------------------------------

FrameLocalAccessor::FrameLocalAccessor(std::string key, std::unique_ptr<GuardManager> child,
                                       const std::string& name, size_t id)
    : GuardAccessor(std::move(key), std::move(child)), name_(intern(name)), name_str_(name), id_(id) {}

Ref FrameLocalAccessor::fetch(PyObject*, const FrameInputs& in) {
  PyObject* v = RootGuardManager::local_value(in, id_, name_.get());
  if (v != nullptr) return Ref::borrow(v);
  if (PyErr_Occurred()) return Ref();
  if (in.fast == nullptr && in.locals != nullptr && !PyDict_CheckExact(in.locals)) {
    return mapping_item(in.locals, name_.get());
  }
  return Ref();  // unbound: no exception (see GuardAccessor::fetch)
}

std::string FrameLocalAccessor::explain_fetch_failure(PyObject*, const FrameInputs&) {
  return "local '" + name_str_ + "' is not bound";
}

std::string FrameLocalAccessor::describe() const { return "FrameLocal('" + name_str_ + "')"; }

// --- GlobalsItemAccessor ------------------------------------------------------

GlobalsItemAccessor::GlobalsItemAccessor(std::string key, std::unique_ptr<GuardManager> child,
                                         const std::string& name)
    : GuardAccessor(std::move(key), std::move(child)), name_(intern(name)), name_str_(name) {}

Ref GlobalsItemAccessor::fetch(PyObject*, const FrameInputs& in) {
  if (in.globals == nullptr) {
    PyErr_SetString(PyExc_ValueError, "no globals were given to check global guards against");
    return Ref();
  }
  return mapping_item(in.globals, name_.get());
}

std::string GlobalsItemAccessor::explain_fetch_failure(PyObject*, const FrameInputs& in) {
  if (in.globals == nullptr) return "no globals to check against";
  return "global '" + name_str_ + "' is not defined";
}

std::string GlobalsItemAccessor::describe() const { return "GlobalsItem('" + name_str_ + "')"; }

// --- BuiltinsItemAccessor -----------------------------------------------------

BuiltinsItemAccessor::BuiltinsItemAccessor(std::string key, std::unique_ptr<GuardManager> child,
                                           const std::string& name)
    : GuardAccessor(std::move(key), std::move(child)), name_(intern(name)), name_str_(name) {}

Ref BuiltinsItemAccessor::fetch(PyObject*, const FrameInputs& in) {
  PyObject* builtins = in.builtins;
  if (builtins == nullptr) builtins = PyEval_GetBuiltins();  // borrowed
  if (builtins == nullptr) {
    PyErr_SetString(PyExc_ValueError, "no builtins to check builtin guards against");
    return Ref();
  }
  if (PyModule_Check(builtins)) return Ref::steal(PyObject_GetAttr(builtins, name_.get()));
  return mapping_item(builtins, name_.get());
}

std::string BuiltinsItemAccessor::explain_fetch_failure(PyObject*, const FrameInputs&) {
  return "builtin '" + name_str_ + "' is not defined";
}

std::string BuiltinsItemAccessor::describe() const { return "BuiltinsItem('" + name_str_ + "')"; }

GuardManager& add_global(GuardManager& root, const std::string& name) {
  const std::string key = "global:" + name;
  return root.get_or_add_accessor(key, "G['" + name + "']", [&](std::unique_ptr<GuardManager> child) {
    return std::make_unique<GlobalsItemAccessor>(key, std::move(child), name);
  });
}

GuardManager& add_builtin(GuardManager& root, const std::string& name) {
  const std::string key = "builtin:" + name;
  return root.get_or_add_accessor(key, "B['" + name + "']", [&](std::unique_ptr<GuardManager> child) {
    return std::make_unique<BuiltinsItemAccessor>(key, std::move(child), name);
  });
}

}  // namespace framecache::guards
