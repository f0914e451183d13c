// The root of a guard tree: its accessors read a frame's locals, globals and
// builtins (FrameInputs) rather than a value.
#pragma once

#include <Python.h>

#include <cstdint>
#include <string>
#include <vector>

#include "framecache/guards/guard_manager.h"
#include "framecache/guards/torch_api.h"
#include "framecache/ref.h"

namespace framecache::guards {

class TensorMatch;
class Relation;
class NoTensorAliasing;

struct GuardDebugInfo {
  bool result = true;
  std::vector<std::string> failures;
  int64_t num_guards_executed = 0;
};

class RootGuardManager : public GuardManager {
 public:
  RootGuardManager();
  ~RootGuardManager() override;

  // Checks a frame (or dict) view. Returns 1 pass, 0 fail, -1 fatal error set.
  int check_root(const FrameInputs& in);
  GuardDebugInfo check_root_verbose(const FrameInputs& in);

  // The node for the frame local `name` (L['name']).
  GuardManager& local(const std::string& name);
  // Local names in the order their accessors were created; a local accessor
  // refers to its name by index. The version changes whenever a name is added.
  const std::vector<std::string>& local_names() const { return local_names_; }
  uint64_t local_names_version() const { return local_names_version_; }
  // Borrowed value of local `id` in `in` (null if unbound or absent).
  static PyObject* local_value(const FrameInputs& in, size_t id, PyObject* name);

  // Registers a relational guard owned by one of this tree's nodes (borrowed;
  // it lives as long as the tree). Its state is reset after every check.
  void register_relational(RelationalGuard* guard);

  // Checks in progress on this tree (several threads may check one root when
  // a guard calls Python and the GIL changes hands).
  int active_checks() const { return active_checks_; }
  // Changes whenever a guard or accessor is added anywhere in the tree; starts
  // at 1 so that 0 can mean "never".
  uint64_t structure_version() const { return structure_version_; }
  std::string render_tree() const;
  // How many frame locals the tensor pass checks (for tests and tools).
  size_t tensor_pass_size();

  // --- exports ---------------------------------------------------------------
  // The values a passing check hands on: each node marked with set_export(slot)
  // gives the root a strong reference to the value it checked. A hit then moves
  // them into the cached code's locals (CacheEntry), which thereby runs on the
  // very objects its guards checked instead of reading the same paths again in
  // Python (a module tree's parameters: ~25 ns each). Slots are 0..num_exports()-1,
  // each set on exactly one node.
  size_t num_exports() const { return exports_.size(); }
  // Nonzero after a passing check_root() that stored every export with no other
  // check of this tree overlapping it (a guard that ran Python can let another
  // thread, or a finaliser, check the same tree meanwhile); 0 otherwise, when the
  // values are not to be used.
  uint64_t export_ticket() const { return ticket_; }
  // Moves the exports of the check `ticket` names into dest[index[k]] for every
  // slot k (new references; each of those dest entries must be null). False,
  // moving nothing, when the ticket is 0 or no longer current (another check of
  // this tree started since and may have replaced the values) or a dest entry is
  // taken. `index` has num_exports() entries.
  bool move_exports(uint64_t ticket, PyObject** dest, const int32_t* index);
  // The exports as a tuple, moved out as move_exports() does; None when the last
  // check gave no ticket. For tests and tools (new reference, null + error).
  PyObject* take_exports();
  // Drops whatever the slots hold (a check that failed, a hit that did not use them).
  void release_exports() noexcept;

 private:
  friend class GuardManager;
  friend class CheckScope;
  void reset_relational();
  // The tensor pass: frame locals whose node holds only TENSOR_MATCH (and
  // optionally one relational member such as NO_TENSOR_ALIASING) are checked
  // in one flat loop, before the other accessors, with no per-node walk.
  // Planned lazily for each structure version.
  struct TensorPassItem {
    GuardAccessor* accessor;  // the FrameLocalAccessor (owned by accessors_)
    size_t local_id;
    PyObject* name;          // borrowed from the accessor
    TensorMatch* match;      // owned by the child node
    Relation* relation;      // null, or the relation of the node's second leaf
    size_t member;
    // The relation when the batch decides it in bulk (a NO_TENSOR_ALIASING
    // whose members are all in the pass), else null.
    NoTensorAliasing* bulk;
  };
  void plan_tensor_pass();
  void plan_tensor_batch();
  bool check_with_tensor_pass(const FrameInputs& in);
  // The batched form of the pass (fast part loaded): every local read into
  // one array, one call into _torch_C for all TENSOR_MATCHes, the covered
  // NO_TENSOR_ALIASING relations decided in bulk with no references held.
  enum class BatchResult { kPassed, kFailed, kUndecided };
  BatchResult check_tensor_batch(const FrameInputs& in,
                                 size_t (*accept)(PyObject* const*, const FcTensorExpect*, size_t));
  std::vector<TensorPassItem> tensor_pass_;
  // Parallel to tensor_pass_ when every item's TENSOR_MATCH can be batched
  // (batch_ok_), with the scratch array of values it reads.
  std::vector<FcTensorExpect> batch_expect_;
  std::vector<PyObject*> batch_values_;
  // Per relation decided in bulk, the pass items of its members.
  std::vector<std::pair<NoTensorAliasing*, std::vector<size_t>>> bulk_relations_;
  // The expected sizes then strides of every item, contiguous (what
  // batch_expect_ points into): one stream of memory for the batch to read.
  std::vector<int64_t> batch_dims_;
  bool batch_sees_members_ = false;  // some item's relation is not decided in bulk
  bool batch_ok_ = false;
  bool batch_busy_ = false;  // check_tensor_batch is using batch_values_
  uint64_t tensor_pass_version_ = 0;
  // Called by GuardManager::set_export (which has checked the tree is mutable).
  void register_export(int32_t slot, const GuardManager& node);
  // Called by GuardManager::check on a node with an export (value borrowed).
  void store_export(int32_t slot, PyObject* value) {
    // A check that overlaps another stores nothing: neither gets a ticket.
    if (active_checks_ != 1) return;
    if (export_stamp_[static_cast<size_t>(slot)] != check_number_) {
      export_stamp_[static_cast<size_t>(slot)] = check_number_;
      ++exports_stored_;
    }
    exports_[static_cast<size_t>(slot)] = Ref::borrow(value);
  }
  std::vector<Ref> exports_;
  // Per slot, the check_number_ of the check that last stored it.
  std::vector<uint64_t> export_stamp_;
  std::vector<const GuardManager*> export_nodes_;  // per slot, for messages (borrowed)
  size_t exports_stored_ = 0;  // distinct slots the current check stored
  uint64_t check_number_ = 0;  // counts every check_root(): a check's identity
  uint64_t ticket_ = 0;
  std::vector<RelationalGuard*> relational_;
  std::vector<std::string> local_names_;
  uint64_t local_names_version_ = 0;
  uint64_t structure_version_ = 1;
  int active_checks_ = 0;
};

}  // namespace framecache::guards
