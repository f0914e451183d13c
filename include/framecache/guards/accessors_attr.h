// Accessors that read an object's attributes and type: getattr, the generic
// getattr (object.__getattribute__), type(), an object's __dict__ and a
// type's __dict__.
//
// attr(name) vs generic_attr(name). `x.name` runs type(x).__getattribute__
// and, when that raises AttributeError, type(x).__getattr__: for a class that
// overrides either, reading an attribute runs the class's Python code. torch's
// dynamo traces such a class's own lookups (a user __getattr__ that calls
// object.__getattribute__(self, "_inner"), super().__getattribute__(...)),
// and what the traced code read is then object.__getattribute__(x, name):
// the instance __dict__ and the descriptors on the type's MRO, with neither
// override. Its guards must read the same thing (torch's
// GenericGetAttrGuardAccessor, source object.__getattribute__(L['x'], 'name')):
// going through the overrides would run user code on every check, could
// recurse into the very hook being traced, and could hand the guards a value
// the compiled code never sees. So generic_attr(name) is exactly
// PyObject_GenericGetAttr and never falls back to __getattr__: an attribute
// only __getattr__ provides fails the guard, as it would make
// object.__getattribute__ raise in the compiled code. attr(name) is plain
// getattr(x, name), overrides included.
#pragma once

#include <string>

#include "framecache/guards/guard_manager.h"
#include "framecache/guards/instance_attr.h"

namespace framecache::guards {

// The source of `parent_source.name`: "L['x'].name", or
// "getattr(L['x'], 'not an identifier')".
std::string attr_source(const std::string& parent_source, const std::string& name);

// value.name (PyObject_GetAttr: __getattribute__, then __getattr__). A value
// found in a plain instance's own storage is read directly (instance_attr.h).
class GetAttrAccessor final : public GuardAccessor {
 public:
  GetAttrAccessor(std::string key, std::unique_ptr<GuardManager> child, const std::string& name);
  Ref fetch(PyObject* parent, const FrameInputs& in) override;
  std::string explain_fetch_failure(PyObject* parent, const FrameInputs& in) override;
  std::string describe() const override;
  const InstanceAttrCache& cache() const { return cache_; }

 private:
  Ref name_;  // interned str
  std::string name_str_;
  InstanceAttrCache cache_;  // after name_, which it reads
};

// object.__getattribute__(value, name) (PyObject_GenericGetAttr; see above).
class GenericGetAttrAccessor final : public GuardAccessor {
 public:
  GenericGetAttrAccessor(std::string key, std::unique_ptr<GuardManager> child,
                         const std::string& name);
  Ref fetch(PyObject* parent, const FrameInputs& in) override;
  std::string explain_fetch_failure(PyObject* parent, const FrameInputs& in) override;
  std::string describe() const override;
  const InstanceAttrCache& cache() const { return cache_; }

 private:
  Ref name_;
  std::string name_str_;
  InstanceAttrCache cache_;  // after name_, which it reads
};

// type(value). Never fails.
class TypeAccessor final : public GuardAccessor {
 public:
  using GuardAccessor::GuardAccessor;
  Ref fetch(PyObject* parent, const FrameInputs& in) override;
  std::string describe() const override { return "Type()"; }
};

// value.__dict__ as object.__getattribute__ finds it (PyObject_GenericGetDict):
// the instance dict itself, not a class's overriding __dict__ property. For a
// module, its namespace; for a type, the type's own dict.
class ObjDictAccessor final : public GuardAccessor {
 public:
  using GuardAccessor::GuardAccessor;
  Ref fetch(PyObject* parent, const FrameInputs& in) override;
  std::string explain_fetch_failure(PyObject* parent, const FrameInputs& in) override;
  std::string describe() const override { return "ObjDict()"; }
};

// A type's __dict__. Python shows it as a read-only mappingproxy; the child
// gets the dict behind the proxy (tp_dict), so that dict_item() and
// dict_version() work on it. Guards only read it. Fails for non-types.
class TypeDictAccessor final : public GuardAccessor {
 public:
  using GuardAccessor::GuardAccessor;
  Ref fetch(PyObject* parent, const FrameInputs& in) override;
  std::string explain_fetch_failure(PyObject* parent, const FrameInputs& in) override;
  std::string describe() const override { return "TypeDict()"; }
};

// Add (or find) these accessors on a node that is not the root; each returns
// the child node. `name` is any str.
GuardManager& add_attr(GuardManager& node, const std::string& name);
GuardManager& add_generic_attr(GuardManager& node, const std::string& name);
GuardManager& add_type(GuardManager& node);
GuardManager& add_obj_dict(GuardManager& node);
GuardManager& add_type_dict(GuardManager& node);

}  // namespace framecache::guards
