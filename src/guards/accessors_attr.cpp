// Accessors on objects: getattr, generic getattr, type(), __dict__.
#include "framecache/guards/accessors_attr.h"

#include <stdexcept>

#include "framecache/cpython.h"

namespace framecache::guards {

namespace {

// A new str for `name` (UTF-8), or null with an exception set.
Ref to_str(const std::string& name) {
  return Ref::steal(PyUnicode_FromStringAndSize(name.data(), static_cast<Py_ssize_t>(name.size())));
}

Ref make_name(const std::string& name) {
  Ref s = to_str(name);
  if (!s) {
    PyErr_Clear();
    throw std::invalid_argument("attribute name is not valid UTF-8");
  }
  PyObject* raw = s.release();
  PyUnicode_InternInPlace(&raw);
  return Ref::steal(raw);
}

bool is_keyword(const std::string& s) {
  // Python 3.11's keyword.kwlist: names that are identifiers yet cannot follow a dot.
  static const char* const kKeywords[] = {
      "False",  "None",   "True",    "and",      "as",       "assert",   "async",
      "await",  "break",  "class",   "continue", "def",      "del",      "elif",
      "else",   "except", "finally", "for",      "from",     "global",   "if",
      "import", "in",     "is",      "lambda",   "nonlocal", "not",      "or",
      "pass",   "raise",  "return",  "try",      "while",    "with",     "yield",
  };
  for (const char* k : kKeywords) {
    if (s == k) return true;
  }
  return false;
}

}  // namespace

std::string attr_source(const std::string& parent_source, const std::string& name) {
  Ref s = to_str(name);
  const bool identifier = s && PyUnicode_IsIdentifier(s.get()) == 1 && !is_keyword(name);
  if (!s) PyErr_Clear();
  if (identifier) return parent_source + "." + name;
  return "getattr(" + parent_source + ", " + safe_repr(s.get(), 200) + ")";
}

// --- GetAttrAccessor ----------------------------------------------------------

GetAttrAccessor::GetAttrAccessor(std::string key, std::unique_ptr<GuardManager> child,
                                 const std::string& name)
    : GuardAccessor(std::move(key), std::move(child)),
      name_(make_name(name)),
      name_str_(name),
      cache_(InstanceAttrCache::Lookup::kGetAttr, name_.get()) {}

Ref GetAttrAccessor::fetch(PyObject* parent, const FrameInputs&) {
  InstanceAttrCache::Read r = cache_.read(parent);
  if (r.found) return r.owned ? std::move(r.owned) : Ref::borrow(r.value);
  if (r.error) return Ref();
  return Ref::steal(PyObject_GetAttr(parent, name_.get()));
}

std::string GetAttrAccessor::explain_fetch_failure(PyObject* parent, const FrameInputs&) {
  return "could not read attribute '" + name_str_ + "' of " + a_type_name(parent);
}

std::string GetAttrAccessor::describe() const { return "GetAttr('" + name_str_ + "')"; }

// --- GenericGetAttrAccessor ---------------------------------------------------

GenericGetAttrAccessor::GenericGetAttrAccessor(std::string key, std::unique_ptr<GuardManager> child,
                                               const std::string& name)
    : GuardAccessor(std::move(key), std::move(child)),
      name_(make_name(name)),
      name_str_(name),
      cache_(InstanceAttrCache::Lookup::kGeneric, name_.get()) {}

Ref GenericGetAttrAccessor::fetch(PyObject* parent, const FrameInputs&) {
  InstanceAttrCache::Read r = cache_.read(parent);
  if (r.found) return r.owned ? std::move(r.owned) : Ref::borrow(r.value);
  if (r.error) return Ref();
  return Ref::steal(PyObject_GenericGetAttr(parent, name_.get()));
}

std::string GenericGetAttrAccessor::explain_fetch_failure(PyObject* parent, const FrameInputs&) {
  return "object.__getattribute__ found no attribute '" + name_str_ + "' on " +
         a_type_name(parent) + " (a __getattr__ is not consulted)";
}

std::string GenericGetAttrAccessor::describe() const {
  return "GenericGetAttr('" + name_str_ + "')";
}

// --- type(), __dict__ ---------------------------------------------------------

Ref TypeAccessor::fetch(PyObject* parent, const FrameInputs&) {
  return Ref::borrow(reinterpret_cast<PyObject*>(Py_TYPE(parent)));
}

Ref ObjDictAccessor::fetch(PyObject* parent, const FrameInputs&) {
  return Ref::steal(PyObject_GenericGetDict(parent, nullptr));
}

std::string ObjDictAccessor::explain_fetch_failure(PyObject* parent, const FrameInputs&) {
  return a_type_name(parent) + " has no instance __dict__";
}

Ref TypeDictAccessor::fetch(PyObject* parent, const FrameInputs&) {
  if (!PyType_Check(parent)) return Ref();
  // A new reference: on 3.12+ a static builtin type's dict is per interpreter.
  return Ref::steal(cpy::type_dict(reinterpret_cast<PyTypeObject*>(parent)));
}

std::string TypeDictAccessor::explain_fetch_failure(PyObject* parent, const FrameInputs&) {
  if (!PyType_Check(parent)) return "expected a type, got " + a_type_name(parent);
  return std::string("the type ") + reinterpret_cast<PyTypeObject*>(parent)->tp_name +
         " has no __dict__";
}

// --- builders -----------------------------------------------------------------

GuardManager& add_attr(GuardManager& node, const std::string& name) {
  const std::string key = "attr:" + name;
  return node.get_or_add_accessor(key, attr_source(node.source(), name),
                                  [&](std::unique_ptr<GuardManager> child) {
                                    return std::make_unique<GetAttrAccessor>(key, std::move(child),
                                                                             name);
                                  });
}

GuardManager& add_generic_attr(GuardManager& node, const std::string& name) {
  const std::string key = "generic_attr:" + name;
  Ref s = make_name(name);
  const std::string source =
      "object.__getattribute__(" + node.source() + ", " + safe_repr(s.get(), 200) + ")";
  return node.get_or_add_accessor(key, source, [&](std::unique_ptr<GuardManager> child) {
    return std::make_unique<GenericGetAttrAccessor>(key, std::move(child), name);
  });
}

GuardManager& add_type(GuardManager& node) {
  return node.get_or_add_accessor("type", "type(" + node.source() + ")",
                                  [](std::unique_ptr<GuardManager> child) {
                                    return std::make_unique<TypeAccessor>("type", std::move(child));
                                  });
}

GuardManager& add_obj_dict(GuardManager& node) {
  return node.get_or_add_accessor("obj_dict", node.source() + ".__dict__",
                                  [](std::unique_ptr<GuardManager> child) {
                                    return std::make_unique<ObjDictAccessor>("obj_dict",
                                                                             std::move(child));
                                  });
}

GuardManager& add_type_dict(GuardManager& node) {
  return node.get_or_add_accessor("type_dict", node.source() + ".__dict__",
                                  [](std::unique_ptr<GuardManager> child) {
                                    return std::make_unique<TypeDictAccessor>("type_dict",
                                                                              std::move(child));
                                  });
}

}  // namespace framecache::guards
