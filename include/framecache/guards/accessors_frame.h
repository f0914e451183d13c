// Accessors on the root that read the frame: a local (by fast-locals index,
// no dict), a global, a builtin.
#pragma once

#include <string>

#include "framecache/guards/guard_manager.h"

namespace framecache::guards {

// L['name']: the frame's fast local, cell content or free-variable content.
class FrameLocalAccessor final : public GuardAccessor {
 public:
  FrameLocalAccessor(std::string key, std::unique_ptr<GuardManager> child, const std::string& name,
                     size_t id);
  Ref fetch(PyObject* parent, const FrameInputs& in) override;
  std::string explain_fetch_failure(PyObject* parent, const FrameInputs& in) override;
  std::string describe() const override;
  size_t id() const { return id_; }
  PyObject* name() const { return name_.get(); }  // borrowed interned str

 private:
  Ref name_;  // str
  std::string name_str_;
  size_t id_;
};

// G['name']: an item of the frame's globals dict.
class GlobalsItemAccessor final : public GuardAccessor {
 public:
  GlobalsItemAccessor(std::string key, std::unique_ptr<GuardManager> child, const std::string& name);
  Ref fetch(PyObject* parent, const FrameInputs& in) override;
  std::string explain_fetch_failure(PyObject* parent, const FrameInputs& in) override;
  std::string describe() const override;

 private:
  Ref name_;
  std::string name_str_;
};

// B['name']: an item of the frame's builtins (a dict, or the builtins module).
class BuiltinsItemAccessor final : public GuardAccessor {
 public:
  BuiltinsItemAccessor(std::string key, std::unique_ptr<GuardManager> child, const std::string& name);
  Ref fetch(PyObject* parent, const FrameInputs& in) override;
  std::string explain_fetch_failure(PyObject* parent, const FrameInputs& in) override;
  std::string describe() const override;

 private:
  Ref name_;
  std::string name_str_;
};

// Adds G['name'] / B['name'] to a root.
GuardManager& add_global(GuardManager& root, const std::string& name);
GuardManager& add_builtin(GuardManager& root, const std::string& name);

}  // namespace framecache::guards
