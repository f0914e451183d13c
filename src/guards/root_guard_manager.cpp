// RootGuardManager: the entry point of a guard tree and its frame-local table.
#include "framecache/guards/root_guard_manager.h"

#include "framecache/guards/accessors_frame.h"

namespace framecache::guards {

namespace {
// Counts a check in progress for the duration of a scope.
class ActiveCheck {
 public:
  explicit ActiveCheck(int& counter) : counter_(counter) { ++counter_; }
  ~ActiveCheck() { --counter_; }
  ActiveCheck(const ActiveCheck&) = delete;
  ActiveCheck& operator=(const ActiveCheck&) = delete;

 private:
  int& counter_;
};
}  // namespace

RootGuardManager::RootGuardManager() : GuardManager(this, "") {}
RootGuardManager::~RootGuardManager() = default;

int RootGuardManager::check_root(const FrameInputs& in) {
  ActiveCheck scope(active_checks_);
  const bool passed = check(nullptr, in);
  if (!relational_.empty()) reset_relational();
  if (passed) return 1;
  return PyErr_Occurred() ? -1 : 0;
}

void RootGuardManager::register_relational(RelationalGuard* guard) {
  check_mutable();
  relational_.push_back(guard);
}

void RootGuardManager::reset_relational() {
  for (RelationalGuard* g : relational_) g->reset_state();
}

GuardDebugInfo RootGuardManager::check_root_verbose(const FrameInputs& in) {
  ActiveCheck scope(active_checks_);
  VerboseState state;
  GuardDebugInfo info;
  info.result = check_verbose(nullptr, in, state);
  if (!relational_.empty()) reset_relational();
  info.failures = std::move(state.failures);
  info.num_guards_executed = state.executed;
  return info;
}

GuardManager& RootGuardManager::local(const std::string& name) {
  const std::string key = "local:" + name;
  for (auto& acc : accessors_) {
    if (acc->key() == key) return acc->child();
  }
  check_mutable();
  size_t id = local_names_.size();
  for (size_t i = 0; i < local_names_.size(); ++i) {
    if (local_names_[i] == name) id = i;
  }
  if (id == local_names_.size()) {
    local_names_.push_back(name);
    ++local_names_version_;
  }
  return get_or_add_accessor(key, "L['" + name + "']", [&](std::unique_ptr<GuardManager> child) {
    return std::make_unique<FrameLocalAccessor>(key, std::move(child), name, id);
  });
}

PyObject* RootGuardManager::local_value(const FrameInputs& in, size_t id, PyObject* name) {
  if (in.fast != nullptr) {
    if (id >= in.nslots) return nullptr;
    const int32_t slot = in.slots[id];
    if (slot >= 0) return in.fast[slot];
    if (slot <= kClosureBase && in.closure != nullptr) {
      const Py_ssize_t k = kClosureBase - slot;
      if (k >= PyTuple_GET_SIZE(in.closure)) return nullptr;
      return PyCell_GET(PyTuple_GET_ITEM(in.closure, k));
    }
    return nullptr;
  }
  if (in.locals != nullptr) {
    if (PyDict_CheckExact(in.locals)) return PyDict_GetItemWithError(in.locals, name);
    // A non-dict mapping (class bodies may use one): a new reference would be
    // needed, so such frames go through FrameLocalAccessor::fetch's slow path.
  }
  return nullptr;
}

std::string RootGuardManager::render_tree() const {
  std::string out = "RootGuardManager\n";
  for (const auto& leaf : leaves_) out += "  | " + leaf->describe() + "\n";
  for (const auto& acc : accessors_) {
    out += "  +- " + acc->describe() + "\n";
    acc->child().render(out, 2);
  }
  return out;
}

}  // namespace framecache::guards
