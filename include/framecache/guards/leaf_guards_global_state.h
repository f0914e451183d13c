// GLOBAL_STATE: torch's ambient state that changes what a graph computes is
// the same as when the guard was built. A guard on the root (it reads no
// value).
//
// Captured: grad mode; autocast for cpu and cuda (enabled and dtype) and its
// cache flag; the default dtype; the deterministic-algorithms flags (and
// warn_only); whether __torch_function__ is enabled; the torch-function mode
// stack and the dispatch mode stack, compared by length and by the type of
// each mode, bottom first (a fresh `with MyMode():` on each call passes, as
// in torch, since its instance is new each time); and the default device,
// which torch keeps as the `device` of a DeviceContext mode on the function
// mode stack (torch.set_default_device, `with torch.device(...)`), compared
// by value for such entries.
#pragma once

#include <Python.h>

#include <memory>
#include <string>
#include <vector>

#include "framecache/guards/guard_manager.h"
#include "framecache/guards/object_identity.h"
#include "framecache/guards/torch_api.h"
#include "framecache/ref.h"

namespace framecache::guards {

class GlobalStateMatch final : public LeafGuard {
 public:
  // Captures the calling thread's current state (torch_access::ensure_loaded()
  // must have succeeded). Returns null with a Python exception set if it
  // cannot be read.
  static std::unique_ptr<GlobalStateMatch> create();

  bool check(PyObject* value) override;  // value: ignored (null on the root)
  std::string explain(PyObject* value) override;
  std::string describe() const override;
  const char* kind() const override { return "GLOBAL_STATE"; }
  bool reads_value() const override { return false; }
  bool depends_only_on_value() const override { return false; }

 private:
  struct ModeEntry {
    explicit ModeEntry(PyObject* type) : type(type) {}
    ObjectIdentity type;
    std::string type_name;
    Ref device;  // a DeviceContext's torch.device, else null
  };
  // One reading of the whole state, for messages.
  struct Snapshot;

  GlobalStateMatch() = default;
  // Compares the mode stacks; false on a difference or an error (left set).
  bool modes_match();
  bool stack_matches(const std::vector<ModeEntry>& expected, bool function_modes);
  static bool read_snapshot(Snapshot& out);
  static bool read_modes(std::vector<ModeEntry>& out, int64_t count, bool function_modes);

  FcGlobalState expected_{};
  Ref dtypes_[3];  // keeps expected_'s dtype objects
  std::vector<ModeEntry> function_modes_;
  std::vector<ModeEntry> dispatch_modes_;
  Ref device_context_type_;
  Ref device_attr_;  // "device"
};

}  // namespace framecache::guards
