// The guard tree: nodes (GuardManager) own leaf guards and accessors; an
// accessor fetches a child value from its node's value and owns the child node.
//
// Contract shared by every leaf guard and accessor:
//  * values are borrowed and non-null;
//  * check() returns false when the guard fails. An exception raised while
//    checking (a user __eq__, a missing attribute) makes the guard fail: it is
//    cleared, unless it is "fatal" (not an Exception: KeyboardInterrupt,
//    SystemExit), which is left set for the root to propagate;
//  * explain() is the slow path used only by check_verbose(): it says why a
//    value fails, in words such as "expected type int, got str".
//
// Every node knows its source, the expression that reads its value from the
// frame (L['self'].layers[3].weight): an accessor builds its child's source
// from its parent's, so a failure reads "<source>: <reason>".
#pragma once

#include <Python.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "framecache/guards/frame_inputs.h"
#include "framecache/ref.h"

namespace framecache::guards {

class GuardManager;
class RootGuardManager;

// Called right after a check saw an exception. Clears it and returns false if
// it is an ordinary Exception; leaves it set and returns true if it is fatal.
bool consume_check_error() noexcept;

// Short, safe repr of a value for failure messages (never raises).
std::string safe_repr(PyObject* obj, size_t max_len = 80);
// The type's name of a value, e.g. "int".
std::string type_name(PyObject* obj);
// The same with its article, for messages: "an int", "a list".
std::string a_type_name(PyObject* obj);
// "KeyError: 'w'" for an exception instance (borrowed); never raises and
// leaves the error indicator as it found it.
std::string exception_text(PyObject* exc);

struct VerboseState {
  std::vector<std::string> failures;
  int64_t executed = 0;
};

class LeafGuard {
 public:
  virtual ~LeafGuard() = default;
  // value: borrowed (null for guards on the root, which read no value).
  virtual bool check(PyObject* value) = 0;
  virtual std::string explain(PyObject* value) = 0;
  // e.g. "TYPE_MATCH(int)".
  virtual std::string describe() const = 0;
  // e.g. "TYPE_MATCH".
  virtual const char* kind() const = 0;
  // False for guards that read ambient state rather than a value (GLOBAL_STATE):
  // only those may sit on the root, whose "value" is null, and add_leaf()
  // refuses the others there. The default answers from kind(), like
  // depends_only_on_value() below.
  virtual bool reads_value() const;
  // True if check() is a function of its value alone: same object, same answer,
  // as long as the value is immutable. A dict node skips a subtree of such guards
  // on an unchanged immutable item (DICT_VERSION, see dict_version.h). The
  // default answers from kind() for the kinds documented as predicates of their
  // value; unknown kinds answer false, which only costs that optimisation.
  virtual bool depends_only_on_value() const;
};

// A leaf guard that relates values from several sources (OBJECT_ALIASING,
// NO_TENSOR_ALIASING). It is added to each source's node and keeps what it saw
// during one check; the root calls reset_state() after every check, pass or
// fail. When two checks of one tree overlap (a guard released the GIL), such a
// guard must fail rather than mix their values: see RootGuardManager::active_checks.
class RelationalGuard : public LeafGuard {
 public:
  virtual void reset_state() = 0;
  // Its answer depends on the other sources it saw in the same check.
  bool depends_only_on_value() const override { return false; }
};

class GuardAccessor {
 public:
  GuardAccessor(std::string key, std::unique_ptr<GuardManager> child);
  virtual ~GuardAccessor();

  // The child value: new reference, or null when it cannot be fetched (which
  // fails the guard). A null comes with an exception set when Python raised
  // one; when the value is simply not there (wrong type, missing key, index out
  // of range) an accessor may return null without one, because making an
  // exception costs more than the rest of a failing check. `parent` is
  // borrowed (null for accessors on the root); `in` is what the root was given.
  virtual Ref fetch(PyObject* parent, const FrameInputs& in) = 0;
  // Why fetch() failed, for verbose output, e.g. "no attribute 'w' on a Foo".
  // Called with no exception set; must leave none set.
  virtual std::string explain_fetch_failure(PyObject* parent, const FrameInputs& in);
  // e.g. "GetAttr('weight')".
  virtual std::string describe() const = 0;
  // True for an accessor reading a dict's own storage by a key whose hashing
  // and comparison run no Python (DictItemAccessor with a constant key): a dict
  // node with DICT_VERSION may skip it while the dict is unchanged.
  virtual bool is_stable_dict_item() const { return false; }

  bool check(PyObject* parent, const FrameInputs& in);
  bool check_verbose(PyObject* parent, const FrameInputs& in, VerboseState& out);

  const std::string& key() const { return key_; }
  GuardManager& child() { return *child_; }
  const GuardManager& child() const { return *child_; }
  uint64_t fail_count() const { return fail_count_; }

 private:
  friend class GuardManager;
  friend class RootGuardManager;
  std::string key_;
  std::unique_ptr<GuardManager> child_;
  uint64_t fail_count_ = 0;
  // DICT_VERSION memo (see dict_version.h): the parent dict's version tag when
  // this item was last seen immutable with a passing subtree, and the tree's
  // structure version then; 0 when there is nothing to reuse.
  uint64_t memo_dict_tag_ = 0;
  uint64_t memo_structure_ = 0;
  // Checked by the root's tensor pass rather than by the generic walk (see
  // RootGuardManager::plan_tensor_pass).
  bool in_tensor_pass_ = false;
};

class GuardManager {
 public:
  GuardManager(RootGuardManager* root, std::string source);
  virtual ~GuardManager();
  GuardManager(const GuardManager&) = delete;
  GuardManager& operator=(const GuardManager&) = delete;

  // Leaves first, in the order added, then accessors (fail-fast order).
  bool check(PyObject* value, const FrameInputs& in);
  bool check_verbose(PyObject* value, const FrameInputs& in, VerboseState& out);

  // Adds a leaf; returns it (owned by this node).
  LeafGuard& add_leaf(std::unique_ptr<LeafGuard> leaf);
  // The child node reached through the accessor with this key; `make` builds
  // the accessor (given the child's source) the first time the key is seen.
  using AccessorFactory = std::function<std::unique_ptr<GuardAccessor>(std::unique_ptr<GuardManager>)>;
  GuardManager& get_or_add_accessor(const std::string& key, const std::string& child_source,
                                    const AccessorFactory& make);

  const std::string& source() const { return source_; }
  RootGuardManager& root() const { return *root_; }
  bool is_root() const;
  const std::vector<std::unique_ptr<LeafGuard>>& leaves() const { return leaves_; }
  const std::vector<std::unique_ptr<GuardAccessor>>& accessors() const { return accessors_; }
  // Number of leaf guards in this subtree.
  size_t num_guards() const;
  // The subtree as indented text.
  void render(std::string& out, int indent) const;

  // DICT_VERSION (dict_version.h): this node's value is expected to be a dict,
  // and an item that is the same immutable object as when its subtree last
  // passed is not checked again while the dict's version tag is unchanged.
  void enable_dict_version();
  bool dict_versioned() const { return dict_versioned_; }
  // True if every leaf in this subtree depends only on its value (cached per
  // structure version of the tree).
  bool subtree_depends_only_on_value() const;
  // The node-level DICT_VERSION memo, for tests and tools: how many accessors
  // the next check of the same unchanged dict runs (the others are skipped),
  // or -1 when there is no memo (no passing check yet, the dict changed, a
  // guard was added, or the dict has no tag).
  int64_t dict_version_reruns() const;
  // How many of those reruns are answered by a dict item's own tag instead (see
  // dict_version.h, "Dict items"); -1 when there is no memo.
  int64_t dict_version_frozen_items() const;
  // 1 if that memo also skips this node's own leaves, 0 if they run; -1 with no memo.
  int64_t dict_version_skips_leaves() const;
  // True if this node reads nothing but the contents of the dict it is given: no
  // accessors, and only leaves whose answer cannot change while the dict's tag is
  // unchanged (DICT_LENGTH, LENGTH_CHECK, TYPE_MATCH, ID_MATCH, and for an exact dict
  // MAPPING_KEYS_MATCH; an OrderedDict's move_to_end reorders keys under one tag).
  bool reads_only_dict_contents(bool keys_may_reorder) const;
  // The leaves' half of that: every leaf is one of those kinds (accessors allowed).
  bool leaves_read_only_dict_contents(bool keys_may_reorder) const;

  // Exports (root_guard_manager.h): every check that reaches this node hands the
  // value it checks to the root as export `slot`. A node with an export is never
  // skipped by a DICT_VERSION memo, so a passing check has reached it. -1: none.
  void set_export(int32_t slot);
  int32_t export_slot() const { return export_slot_; }

 protected:
  // Called with the index of an accessor whose subtree just failed.
  void note_accessor_failure(size_t index);
  // Throws if the tree is being checked; otherwise records that its structure
  // is about to change (which drops every DICT_VERSION memo).
  void check_mutable() const;

  RootGuardManager* root_;
  std::string source_;
  std::vector<std::unique_ptr<LeafGuard>> leaves_;
  std::vector<std::unique_ptr<GuardAccessor>> accessors_;

 private:
  // True if every leaf passes on `value` (borrowed); stops at the first that fails.
  bool leaves_pass(PyObject* value) {
    for (const auto& leaf : leaves_) {
      if (!leaf->check(value)) return false;
    }
    return true;
  }
  // Runs the leaves for check_verbose(); false if one raised a fatal error.
  bool verbose_leaves(PyObject* value, VerboseState& out, bool& ok);
  // The walks of a DICT_VERSION node (dict_version.cpp).
  bool check_dict_node(PyObject* value, const FrameInputs& in);
  bool check_verbose_dict_node(PyObject* value, const FrameInputs& in, VerboseState& out);
  bool dict_versioned_ = false;
  int32_t export_slot_ = -1;
  mutable uint64_t value_only_structure_ = 0;  // structure version of the cached answer
  mutable bool value_only_ = false;
  // The node-level DICT_VERSION memo (dict_version.h): the dict's tag and the
  // tree's structure version when a whole pass over this node succeeded, and
  // the accessors that pass could not memoise (mutable items such as tensors,
  // unstable accessors), which must run again even while the tag is unchanged.
  uint64_t node_memo_tag_ = 0;
  uint64_t node_memo_structure_ = 0;
  // Whether a check that finds node_memo_tag_ may skip this node's own leaves too:
  // they all read the dict's contents only (leaves_read_only_dict_contents) and its keys
  // are constants, so on the same unchanged dict they answer as that pass did.
  bool node_memo_skips_leaves_ = false;
  // One rerun: the accessor's index; for a stable dict item, the item itself
  // (borrowed: the node's dict holds it for as long as that dict keeps node_memo_tag_),
  // so that the rerun checks it without looking its key up again, null otherwise; and,
  // for an item that is a dict read only for its contents (a module's hook dicts, an
  // empty _buffers), its own tag when its subtree passed (0: none).
  // With an item, its accessor's child node too (borrowed, owned by the accessor), so
  // that the rerun reaches it without loading the accessor first.
  struct Rerun {
    uint32_t accessor = 0;
    PyObject* item = nullptr;
    uint64_t tag = 0;
    GuardManager* child = nullptr;
  };
  std::vector<Rerun> node_memo_rerun_;
};

}  // namespace framecache::guards
