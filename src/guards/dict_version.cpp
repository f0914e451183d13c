// DICT_VERSION: the walks of a dict node that skip unchanged immutable items.
#include "framecache/guards/dict_version.h"

#include <string>
#include <vector>

#include "framecache/cpython.h"
#include "framecache/guards/guard_manager.h"
#include "framecache/guards/leaf_guards_value.h"
#include "framecache/guards/root_guard_manager.h"

namespace framecache::guards {

namespace {


// True if an accessor's remembered tag and structure version let it be
// skipped for a dict whose tag is `tag`, in a tree at version `structure`.
inline bool memo_hit(uint64_t memo_tag, uint64_t memo_structure, uint64_t tag, uint64_t structure) {
  return memo_tag != 0 && memo_tag == tag && memo_structure == structure;
}

// True if every key of `dict` (an exact dict, borrowed) is an immutable value: comparing
// such keys runs no Python and always answers the same.
bool immutable_keys(PyObject* dict) {
  Py_ssize_t pos = 0;
  PyObject* key = nullptr;
  PyObject* value = nullptr;
  while (PyDict_Next(dict, &pos, &key, &value)) {
    if (!is_immutable_constant(key)) return false;
  }
  return true;
}

}  // namespace

bool is_immutable_value(PyObject* value) { return is_immutable_constant(value); }

int64_t GuardManager::dict_version_reruns() const {
  if (node_memo_tag_ == 0 || node_memo_structure_ != root_->structure_version()) return -1;
  int64_t n = 0;
  for (const Rerun& r : node_memo_rerun_) n += r.tag == 0 ? 1 : 0;
  return n;
}

int64_t GuardManager::dict_version_frozen_items() const {
  if (node_memo_tag_ == 0 || node_memo_structure_ != root_->structure_version()) return -1;
  return static_cast<int64_t>(node_memo_rerun_.size()) - dict_version_reruns();
}

int64_t GuardManager::dict_version_skips_leaves() const {
  if (node_memo_tag_ == 0 || node_memo_structure_ != root_->structure_version()) return -1;
  return node_memo_skips_leaves_ ? 1 : 0;
}

bool GuardManager::reads_only_dict_contents(bool keys_may_reorder) const {
  return accessors_.empty() && export_slot_ < 0 && leaves_read_only_dict_contents(keys_may_reorder);
}

bool GuardManager::leaves_read_only_dict_contents(bool keys_may_reorder) const {
  static const char* const kContentOnly[] = {
      "DICT_LENGTH", "LENGTH_CHECK", "TYPE_MATCH", "ID_MATCH", "MAPPING_KEYS_MATCH",
  };
  // MAPPING_KEYS_MATCH (last) compares the keys in order.
  const size_t listed_kinds = keys_may_reorder ? 4 : 5;
  for (const auto& leaf : leaves_) {
    const std::string k = leaf->kind();
    bool listed = false;
    for (size_t c = 0; c < listed_kinds; ++c) listed = listed || k == kContentOnly[c];
    if (!listed) return false;
  }
  return true;
}

bool GuardManager::check_dict_node(PyObject* value, const FrameInputs& in) {
  const bool exact = value != nullptr && PyDict_CheckExact(value);
  const uint64_t structure = root_->structure_version();
  // True if this pass may use the node memo with the dict's tag `t` (see below). Whether
  // this is the tree's sole check is read each time: a leaf may have run Python.
  const auto memo_holds = [&](uint64_t t) {
    return root_->active_checks() == 1 && t != 0 && t == node_memo_tag_ &&
           structure == node_memo_structure_;
  };
  uint64_t tag = exact ? cpy::dict_version(value) : 0;
  // The node's own leaves: skipped when the memo says they read only the contents of
  // this very dict, unchanged since they passed (a module's _parameters keys, its
  // __dict__'s length); otherwise run, and the tag is read again after them.
  const bool skip_leaves = node_memo_skips_leaves_ && memo_holds(tag);
  if (!skip_leaves) {
    if (!leaves_pass(value)) return false;
    tag = exact ? cpy::dict_version(value) : 0;
  }
  // The node-level memo: the dict is the one a whole pass succeeded on, with
  // the same contents, so every item that pass memoised is still the same
  // immutable object; only the others run (tensors, whose metadata can change
  // in place without the dict changing). A rerun that changes the dict (it ran
  // Python) voids the shortcut, and the node is walked in full.
  // Only the sole checker of the tree uses or records it: a check that
  // overlaps (a guard ran Python and another thread checked this tree) never
  // replaces node_memo_rerun_ while the first iterates over it.
  const bool sole = root_->active_checks() == 1;
  if (memo_holds(tag)) {
    for (const Rerun& memo : node_memo_rerun_) {
      const uint32_t i = memo.accessor;
      // While this dict keeps its tag it still holds that very item (alive): the rerun
      // needs no lookup, and a dict item read only for its contents whose own tag is
      // unchanged since its subtree passed needs no check either. The tag is reread for
      // each item: an earlier rerun may have run Python that changed this dict (and freed
      // the item). The item is held while its subtree runs, which may run Python too.
      if (memo.item != nullptr && cpy::dict_version(value) == tag) {
        if (memo.tag != 0 && cpy::dict_version(memo.item) == memo.tag) continue;
        const Ref held = Ref::borrow(memo.item);
        if (!memo.child->check(held.get(), in)) {
          node_memo_tag_ = 0;
          note_accessor_failure(i);
          return false;
        }
        continue;
      }
      if (!accessors_[i]->check(value, in)) {
        // Drop the memo rather than reorder under it: the indices would shift.
        node_memo_tag_ = 0;
        note_accessor_failure(i);
        return false;
      }
    }
    if (cpy::dict_version(value) == tag) return true;
  }
  node_memo_tag_ = 0;
  if (skip_leaves) {
    // A rerun changed the dict (it ran Python): the leaves skipped above run now. `tag`
    // stays the one the pass began with, so a pass over a dict that changed under it
    // remembers nothing, as without skipped leaves.
    if (!leaves_pass(value)) return false;
  }
  std::vector<Rerun> rerun;
  const size_t n = accessors_.size();
  for (size_t i = 0; i < n; ++i) {
    GuardAccessor& acc = *accessors_[i];
    if (!exact || !acc.is_stable_dict_item()) {
      if (!acc.check(value, in)) {
        note_accessor_failure(i);
        return false;
      }
      rerun.push_back(Rerun{static_cast<uint32_t>(i)});
      continue;
    }
    const uint64_t now = cpy::dict_version(value);
    if (memo_hit(acc.memo_dict_tag_, acc.memo_structure_, now, structure)) continue;
    // The accessor's own check, inlined to keep the item for what follows.
    Ref item = acc.fetch(value, in);
    if (!item) {
      consume_check_error();
      note_accessor_failure(i);
      return false;
    }
    if (!acc.child().check(item.get(), in)) {
      note_accessor_failure(i);
      return false;
    }
    if (cpy::dict_version(value) == now && is_immutable_value(item.get()) &&
        acc.child().subtree_depends_only_on_value()) {
      acc.memo_dict_tag_ = now;
      acc.memo_structure_ = structure;
    } else {
      PyObject* child = item.get();
      Rerun item_memo{static_cast<uint32_t>(i), child, 0, &acc.child()};
      // An exact dict, or an OrderedDict (a module's hook dicts): every change of its
      // contents goes through the dict's own storage, which changes its tag.
      const bool plain = PyDict_CheckExact(child);
      if ((plain || PyODict_CheckExact(child)) &&
          acc.child().reads_only_dict_contents(/*keys_may_reorder=*/!plain) &&
          immutable_keys(child)) {
        item_memo.tag = cpy::dict_version(child);
      }
      rerun.push_back(item_memo);
    }
  }
  // Every item passed; if the dict kept its tag throughout, the items not in
  // `rerun` are memoised under that tag, and the next pass may skip them all
  // at once. (The order of accessors_ is fixed while no check fails.)
  if (sole && root_->active_checks() == 1 && tag != 0 && cpy::dict_version(value) == tag) {
    node_memo_rerun_ = std::move(rerun);
    node_memo_skips_leaves_ =
        leaves_read_only_dict_contents(/*keys_may_reorder=*/false) && immutable_keys(value);
    node_memo_tag_ = tag;
    node_memo_structure_ = structure;
  }
  return true;
}

bool GuardManager::check_verbose_dict_node(PyObject* value, const FrameInputs& in,
                                           VerboseState& out) {
  bool ok = true;
  if (!verbose_leaves(value, out, ok)) return false;
  const bool exact = value != nullptr && PyDict_CheckExact(value);
  const uint64_t structure = root_->structure_version();
  for (const auto& acc_ptr : accessors_) {
    GuardAccessor& acc = *acc_ptr;
    const bool stable = exact && acc.is_stable_dict_item();
    const uint64_t tag = stable ? cpy::dict_version(value) : 0;
    if (stable && memo_hit(acc.memo_dict_tag_, acc.memo_structure_, tag, structure)) continue;
    if (!acc.check_verbose(value, in, out)) {
      if (PyErr_Occurred()) return false;
      ok = false;
      continue;
    }
    if (!stable || cpy::dict_version(value) != tag) continue;
    // Fetching a stable dict item runs no Python: it is the item just checked.
    Ref item = acc.fetch(value, in);
    if (!item) {
      if (consume_check_error()) return false;
      continue;
    }
    if (is_immutable_value(item.get()) && acc.child().subtree_depends_only_on_value()) {
      acc.memo_dict_tag_ = tag;
      acc.memo_structure_ = structure;
    }
  }
  return ok;
}

}  // namespace framecache::guards
