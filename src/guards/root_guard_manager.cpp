// RootGuardManager: the entry point of a guard tree and its frame-local table.
#include "framecache/guards/root_guard_manager.h"

#include "framecache/guards/accessors_frame.h"
#include "framecache/guards/leaf_guards_relational.h"
#include "framecache/guards/leaf_guards_tensor.h"
#include "framecache/guards/torch_access.h"

#include <stdexcept>
#include <string>
#include <unordered_map>

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
  const uint64_t number = ++check_number_;
  ticket_ = 0;
  exports_stored_ = 0;
  // The structure cannot change while any check is in progress (check_mutable),
  // so a stale plan is only ever replaced when nobody is iterating over it.
  if (tensor_pass_version_ != structure_version_) plan_tensor_pass();
  const bool passed = tensor_pass_.empty() ? check(nullptr, in) : check_with_tensor_pass(in);
  if (!relational_.empty()) reset_relational();
  if (!exports_.empty()) {
    // Sole means: it began alone (else it stored nothing), no check began after it
    // (else that one reset the count and may own the slots), and it ends alone.
    if (passed && check_number_ == number && active_checks_ == 1 &&
        exports_stored_ == exports_.size()) {
      ticket_ = number;
    } else if (active_checks_ == 1) {
      release_exports();
    }
  }
  if (passed) return 1;
  return PyErr_Occurred() ? -1 : 0;
}

// --- exports -----------------------------------------------------------------------

void RootGuardManager::register_export(int32_t slot, const GuardManager& node) {
  const auto k = static_cast<size_t>(slot);
  if (k < export_nodes_.size() && export_nodes_[k] != nullptr) {
    throw std::invalid_argument("export " + std::to_string(slot) + " is already " +
                                export_nodes_[k]->source());
  }
  if (k >= exports_.size()) {
    exports_.resize(k + 1);
    export_stamp_.resize(k + 1, 0);
    export_nodes_.resize(k + 1, nullptr);
  }
  export_nodes_[k] = &node;
}

bool RootGuardManager::move_exports(uint64_t ticket, PyObject** dest, const int32_t* index) {
  if (ticket == 0 || ticket != ticket_ || ticket != check_number_) return false;
  const size_t n = exports_.size();
  for (size_t k = 0; k < n; ++k) {
    if (dest[index[k]] != nullptr || !exports_[k]) return false;
  }
  for (size_t k = 0; k < n; ++k) dest[index[k]] = exports_[k].release();
  ticket_ = 0;
  return true;
}

PyObject* RootGuardManager::take_exports() {
  const size_t n = exports_.size();
  Ref out = Ref::steal(PyTuple_New(static_cast<Py_ssize_t>(n)));
  if (!out) return nullptr;
  // Making the tuple may have run a collection, and a finaliser a check.
  if (ticket_ == 0 || ticket_ != check_number_) return Py_NewRef(Py_None);
  std::vector<int32_t> index(n);
  for (size_t k = 0; k < n; ++k) index[k] = static_cast<int32_t>(k);
  auto** items = &PyTuple_GET_ITEM(out.get(), 0);
  if (!move_exports(ticket_, items, index.data())) return Py_NewRef(Py_None);
  return out.release();
}

void RootGuardManager::release_exports() noexcept {
  ticket_ = 0;
  // Each reference leaves its slot before it is dropped: a decref may run Python
  // that checks this tree again (its stores land in emptied slots, and its ticket,
  // if any, finds some of them emptied again: move_exports then refuses).
  for (Ref& r : exports_) {
    if (r) Ref doomed = std::move(r);
  }
}

// --- the tensor pass -------------------------------------------------------------
//
// A tree for a function of many tensors is a root with one FrameLocalAccessor
// per tensor, each leading to a node with TENSOR_MATCH and one member of a
// NO_TENSOR_ALIASING relation. The generic walk pays, per tensor, a virtual
// fetch, a node walk with its loops and a virtual call per leaf; the pass
// below reads each local and calls the two guards directly (TensorMatch is
// final, so its check is not dispatched). It gives the same answer as the
// walk: the same guards, on the same values, in the same leaf order; only
// the order among accessors differs (tensors first), which the walk itself
// changes at will (fail-fast reordering). Verbose checks keep the walk.

void RootGuardManager::plan_tensor_pass() {
  tensor_pass_.clear();
  for (auto& acc_ptr : accessors_) {
    GuardAccessor& acc = *acc_ptr;
    acc.in_tensor_pass_ = false;
    auto* local = dynamic_cast<FrameLocalAccessor*>(&acc);
    const GuardManager& child = acc.child();
    if (local == nullptr || !child.accessors().empty() || child.dict_versioned() ||
        child.export_slot() >= 0) {
      continue;
    }
    const auto& leaves = child.leaves();
    if (leaves.empty() || leaves.size() > 2) continue;
    auto* match = dynamic_cast<TensorMatch*>(leaves[0].get());
    if (match == nullptr) continue;
    RelationMember* member = nullptr;
    if (leaves.size() == 2) {
      member = dynamic_cast<RelationMember*>(leaves[1].get());
      if (member == nullptr) continue;
    }
    acc.in_tensor_pass_ = true;
    tensor_pass_.push_back({&acc, local->id(), local->name(), match,
                            member ? &member->relation() : nullptr, member ? member->member() : 0,
                            nullptr});
  }
  plan_tensor_batch();
  tensor_pass_version_ = structure_version_;
}

void RootGuardManager::plan_tensor_batch() {
  const size_t n = tensor_pass_.size();
  batch_expect_.assign(n, FcTensorExpect{});
  batch_values_.assign(n, nullptr);
  bulk_relations_.clear();
  batch_ok_ = n != 0;
  size_t dims = 0;
  for (size_t i = 0; batch_ok_ && i < n; ++i) {
    batch_ok_ = tensor_pass_[i].match->fill_expect(batch_expect_[i]);
    dims += 2 * static_cast<size_t>(batch_expect_[i].ndim);
  }
  if (!batch_ok_) return;
  batch_dims_.clear();
  batch_dims_.reserve(dims);  // no reallocation below: the pointers stay valid
  for (FcTensorExpect& e : batch_expect_) {
    const int64_t* sizes = e.sizes;
    const int64_t* strides = e.strides;
    e.sizes = batch_dims_.data() + batch_dims_.size();
    batch_dims_.insert(batch_dims_.end(), sizes, sizes + e.ndim);
    e.strides = batch_dims_.data() + batch_dims_.size();
    batch_dims_.insert(batch_dims_.end(), strides, strides + e.ndim);
  }
  // A NO_TENSOR_ALIASING relation is decided in bulk when each of its
  // members is exactly one item of the pass: then the pass sees every value
  // it relates, with no Python running in between.
  std::unordered_map<Relation*, std::vector<size_t>> members;  // member -> item, or npos
  constexpr size_t npos = static_cast<size_t>(-1);
  for (size_t i = 0; i < n; ++i) {
    const TensorPassItem& t = tensor_pass_[i];
    if (t.relation == nullptr || dynamic_cast<NoTensorAliasing*>(t.relation) == nullptr) continue;
    std::vector<size_t>& items = members[t.relation];
    items.resize(t.relation->size(), npos);
    // A member met twice cannot be decided in bulk: mark it so.
    if (t.member < items.size()) items[t.member] = items[t.member] == npos ? i : npos - 1;
  }
  for (auto& [relation, items] : members) {
    bool covered = true;
    for (size_t item : items) covered = covered && item < n;
    if (!covered) continue;
    auto* r = static_cast<NoTensorAliasing*>(relation);
    for (size_t item : items) tensor_pass_[item].bulk = r;
    bulk_relations_.emplace_back(r, std::move(items));
  }
  batch_sees_members_ = false;
  for (const TensorPassItem& t : tensor_pass_) {
    batch_sees_members_ = batch_sees_members_ || (t.relation != nullptr && t.bulk == nullptr);
  }
}

RootGuardManager::BatchResult RootGuardManager::check_tensor_batch(
    const FrameInputs& in, size_t (*accept)(PyObject* const*, const FcTensorExpect*, size_t)) {
  // A __del__ run by release() below may check this tree again: the nested
  // check must not reuse the scratch array the outer one is releasing.
  if (batch_busy_) return BatchResult::kUndecided;
  struct Busy {
    bool& flag;
    explicit Busy(bool& f) : flag(f) { flag = true; }
    ~Busy() { flag = false; }
  } busy(batch_busy_);
  const size_t n = tensor_pass_.size();
  PyObject** values = batch_values_.data();
  // Fast locals cannot change while no Python runs, so borrowed values stay
  // valid until the relations are decided. A dict lookup may run a key's
  // __eq__, which may drop a value read earlier: those are held.
  const bool hold = in.fast == nullptr;
  size_t held = 0;
  auto release = [&] {
    for (size_t k = 0; k < held; ++k) Py_DECREF(values[k]);
    held = 0;
  };
  for (size_t i = 0; i < n; ++i) {
    const TensorPassItem& t = tensor_pass_[i];
    // A plain fast local is read here; cells and dicts through local_value.
    const int32_t slot =
        in.fast != nullptr && t.local_id < in.nslots ? in.slots[t.local_id] : int32_t{-1};
    PyObject* v = slot >= 0 ? in.fast[slot] : local_value(in, t.local_id, t.name);
    if (v == nullptr) {
      release();
      // Unbound, an error, or a non-dict mapping: the per-item pass decides,
      // as the walk would; a fatal error stays set and fails the check.
      if (PyErr_Occurred() && consume_check_error()) return BatchResult::kFailed;
      return BatchResult::kUndecided;
    }
    values[i] = v;
    if (hold) {
      Py_INCREF(v);
      held = i + 1;
    }
  }
  const size_t accepted = accept(values, batch_expect_.data(), n);
  if (accepted != n) {
    // Usually a mismatch: TENSOR_MATCH on that value decides (the check
    // fails whichever guard fails first). The value is held: the reader may
    // run Python.
    const TensorPassItem& t = tensor_pass_[accepted];
    Ref value = Ref::borrow(values[accepted]);
    const bool matched = t.match->check(value.get());
    release();
    if (matched) return BatchResult::kUndecided;
    ++t.accessor->fail_count_;
    return BatchResult::kFailed;
  }
  for (const auto& [r, items] : bulk_relations_) {
    if (!r->begin_bulk()) {
      release();
      return BatchResult::kUndecided;
    }
    bool distinct = true;
    for (size_t k = 0; distinct && k < items.size(); ++k) distinct = r->add_bulk(values[items[k]]);
    if (!distinct) {
      // The per-item pass finds the pair again, and counts the failure.
      release();
      return BatchResult::kUndecided;
    }
  }
  // Relations not decided in bulk see their members as in the walk (each
  // keeps its own reference).
  for (size_t i = 0; batch_sees_members_ && i < n; ++i) {
    const TensorPassItem& t = tensor_pass_[i];
    if (t.relation == nullptr || t.bulk != nullptr) continue;
    if (!t.relation->see(t.member, values[i])) {
      ++t.accessor->fail_count_;
      release();
      return BatchResult::kFailed;
    }
  }
  release();
  return BatchResult::kPassed;
}

size_t RootGuardManager::tensor_pass_size() {
  if (tensor_pass_version_ != structure_version_ && active_checks_ == 0) plan_tensor_pass();
  return tensor_pass_.size();
}

bool RootGuardManager::check_with_tensor_pass(const FrameInputs& in) {
  for (const auto& leaf : leaves_) {
    if (!leaf->check(nullptr)) return false;
  }
  auto accept = batch_ok_ ? torch_access::batch_reader() : nullptr;
  const BatchResult batch =
      accept != nullptr ? check_tensor_batch(in, accept) : BatchResult::kUndecided;
  if (batch == BatchResult::kFailed) return false;
  for (size_t k = 0; batch == BatchResult::kUndecided && k < tensor_pass_.size(); ++k) {
    const TensorPassItem& t = tensor_pass_[k];
    PyObject* raw = local_value(in, t.local_id, t.name);
    if (raw == nullptr) {
      // Unbound, an error, or a non-dict mapping of locals: the accessor's own
      // check says which, exactly as the walk would.
      if (PyErr_Occurred() && consume_check_error()) return false;
      if (!t.accessor->check(nullptr, in)) {
        ++t.accessor->fail_count_;
        return false;
      }
      continue;
    }
    // Held for the two guards: the Python reader of tensors runs Python.
    Ref value = Ref::borrow(raw);
    if (!t.match->check(value.get()) ||
        (t.relation != nullptr && !t.relation->see(t.member, value.get()))) {
      ++t.accessor->fail_count_;
      return false;
    }
  }
  const size_t n = accessors_.size();
  for (size_t i = 0; i < n; ++i) {
    GuardAccessor& acc = *accessors_[i];
    if (acc.in_tensor_pass_) continue;
    if (!acc.check(nullptr, in)) {
      note_accessor_failure(i);
      return false;
    }
  }
  return true;
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
