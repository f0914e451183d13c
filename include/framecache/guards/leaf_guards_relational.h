// Relational guards, which relate the values of several sources:
// OBJECT_ALIASING (two sources are the same object) and NO_TENSOR_ALIASING
// (the sources hold pairwise distinct objects).
//
// One Relation holds the state of such a guard; each source's node gets a
// RelationMember leaf that reports the value it sees to the relation. The
// relation decides as the values arrive, in whatever order the (fail-fast
// reordered) walk visits the nodes: OBJECT_ALIASING compares when its second
// value arrives, NO_TENSOR_ALIASING rejects a value already seen. Strong
// references to the values are held until the root resets the relation after
// the check, so an address cannot be reused by another object meanwhile.
//
// Overlapping checks of one tree (a guard that runs Python let the GIL go,
// and another thread, or a nested call, checked the same tree) would mix
// their values, so a relation refuses them:
//  * a member seeing a value while RootGuardManager::active_checks() != 1
//    fails, and poisons the relation;
//  * reset_state() called while another check is still in progress (the
//    root calls it before leaving its own count) leaves the relation
//    poisoned, so that the check still in progress fails when it next
//    reaches the relation; a reset by the last check in progress clears it.
// This relies on the root calling reset_state() after every check, inside
// the span that active_checks() counts.
//
// Caveat for node kinds that skip a subtree (e.g. a DICT_VERSION-guarded
// subtree of immutable values): a member that is never visited never reports
// its value, and OBJECT_ALIASING then passes without comparing. Such skipping
// must not apply to subtrees holding relation members.
#pragma once

#include <Python.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "framecache/guards/guard_manager.h"
#include "framecache/ref.h"

namespace framecache::guards {

class Relation {
 public:
  // root: the tree that checks the members (borrowed, outlives this).
  // sources: each member's source, in member order.
  Relation(const RootGuardManager& root, std::vector<std::string> sources);
  virtual ~Relation();
  Relation(const Relation&) = delete;
  Relation& operator=(const Relation&) = delete;

  // Member `member` sees `value` (borrowed). False if the relation fails.
  bool see(size_t member, PyObject* value);
  // Why see(member, value) failed (right after it did, same check).
  std::string explain(size_t member, PyObject* value);
  // Forgets the values seen (see the header comment for the poisoned state).
  void reset();

  virtual const char* kind() const = 0;
  std::string describe() const;
  size_t size() const { return sources_.size(); }

 protected:
  // Called once `value` is recorded for `member`; `count_` counts it.
  virtual bool relate(size_t member, PyObject* value) = 0;
  // The message for a failure of relate(); `value` is the member's.
  virtual std::string explain_relate(size_t member, PyObject* value) = 0;
  // Forgets any index built by relate(); runs no Python.
  virtual void clear_index() {}
  // No check overlaps this one and the relation is not poisoned.
  bool can_decide_alone() const;

  const RootGuardManager& root_;
  std::vector<std::string> sources_;
  std::vector<Ref> seen_;  // per member, during one check
  size_t count_ = 0;       // members seen during this check

 private:
  bool poisoned_ = false;
};

// The two members are the same object.
class ObjectAliasing final : public Relation {
 public:
  using Relation::Relation;
  const char* kind() const override { return "OBJECT_ALIASING"; }

 protected:
  bool relate(size_t member, PyObject* value) override;
  std::string explain_relate(size_t member, PyObject* value) override;
};

// No two members are the same object.
class NoTensorAliasing final : public Relation {
 public:
  NoTensorAliasing(const RootGuardManager& root, std::vector<std::string> sources);
  const char* kind() const override { return "NO_TENSOR_ALIASING"; }

  // The whole relation decided at once, for a caller that holds every
  // member's value (borrowed) and runs no Python between reading them and
  // the last add_bulk(): the values need no references then. begin_bulk()
  // returns false, and the caller must fall back to see() per member, when
  // the relation is poisoned or another check of the tree is in progress
  // (see() would fail and poison it). add_bulk() returns false on a value
  // already added; at most size() values per begin_bulk() (the table is sized
  // for them). The next begin_bulk() forgets them; nothing is recorded
  // for reset().
  bool begin_bulk();
  bool add_bulk(PyObject* value) {
    const uint64_t h = (reinterpret_cast<uintptr_t>(value) >> 4) * 0x9E3779B97F4A7C15ull;
    const size_t mask = bulk_table_.size() - 1;
    Stamped* table = bulk_table_.data();
    for (size_t slot = static_cast<size_t>(h >> bulk_shift_);; slot = (slot + 1) & mask) {
      Stamped& s = table[slot];
      if (s.stamp != bulk_stamp_) {
        s = Stamped{value, bulk_stamp_};
        return true;
      }
      if (s.value == value) return false;
    }
  }

 protected:
  bool relate(size_t member, PyObject* value) override;
  std::string explain_relate(size_t member, PyObject* value) override;
  void clear_index() override;

 private:
  // Open-addressing set of the addresses seen (borrowed through seen_).
  size_t slot_of(PyObject* value) const;
  std::vector<PyObject*> table_;
  std::vector<size_t> used_;  // slots filled during this check
  unsigned shift_;
  // The bulk decision's own table, twice the size: a slot is filled when
  // its stamp is the current one, so starting over is one increment.
  struct Stamped {
    PyObject* value;
    uint64_t stamp;
  };
  std::vector<Stamped> bulk_table_;
  uint64_t bulk_stamp_ = 0;
  unsigned bulk_shift_;
};

// The leaf on one member's node. Every member shares the relation; the root
// resets it through the member registered with it (any one of them).
class RelationMember final : public RelationalGuard {
 public:
  RelationMember(std::shared_ptr<Relation> relation, size_t member)
      : relation_(std::move(relation)), member_(member) {}
  bool check(PyObject* value) override { return relation_->see(member_, value); }
  std::string explain(PyObject* value) override { return relation_->explain(member_, value); }
  std::string describe() const override { return relation_->describe(); }
  const char* kind() const override { return relation_->kind(); }
  void reset_state() override { relation_->reset(); }
  Relation& relation() const { return *relation_; }
  size_t member() const { return member_; }

 private:
  std::shared_ptr<Relation> relation_;
  size_t member_;
};

}  // namespace framecache::guards
