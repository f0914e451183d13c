// One compiled code cached on a code object, with the guards that say when it
// may run in place of the original.
#pragma once

#include <Python.h>

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "framecache/guards/object_identity.h"
#include "framecache/ref.h"

struct _PyInterpreterFrame;

namespace framecache {

namespace guards {
class RootGuardManager;
struct GuardDebugInfo;
}  // namespace guards

class ExtraState;

class CacheEntry : public Counted {
 public:
  // All arguments borrowed. `code` must be a code object whose argument, cell
  // and free-variable layout fits `original` (see check_code_compatible).
  // `guard_manager` is a RootGuardManager or any object with check(f_locals).
  // `tag` is the options tag of the callback that compiled it (see
  // ThreadState::tag): lookup considers the entry only under that tag.
  //
  // `export_locals` (may be empty): locals of `code` that receive the guard tree's
  // exports on a hit (guards/root_guard_manager.h). The first is a flag, set to
  // True when the rest hold export 0, 1, ... in order, or to None when they were
  // not given (the code then reads those values itself); one name per export of
  // the tree follows. Each must be a plain local of `code` that is not an
  // argument. ValueError (a pybind11 exception) when they do not fit.
  CacheEntry(PyCodeObject* original, PyObject* code, PyObject* guard_manager, PyObject* compile_id,
             std::string trace_annotation, uint64_t tag = 0,
             const std::vector<std::string>& export_locals = {});
  ~CacheEntry() override;

  // Runs the guards on an unstarted frame of the original code: 1 pass,
  // 0 fail, -1 error set (only fatal errors: KeyboardInterrupt and the like).
  // On a pass, *export_ticket (when given) is what run() needs to hand the
  // guards' exports to the cached code (0: none to hand).
  int check(_PyInterpreterFrame* frame, uint64_t* export_ticket = nullptr);
  // Why the guards fail on this frame, one line per failure (slow path).
  std::vector<std::string> failure_reasons(_PyInterpreterFrame* frame);

  // Runs the cached code in place of `frame` (borrowed): its arguments, cells
  // and free variables go to the new code, and the exports of the check that
  // `export_ticket` names to its export locals. Returns a new reference or null
  // with an exception set.
  PyObject* run(PyThreadState* ts, _PyInterpreterFrame* frame, uint64_t export_ticket = 0);
  // Called by the hook with the frame of this entry's code that run() is
  // starting (borrowed, not started): fills its export locals.
  void receive_exports(_PyInterpreterFrame* frame, uint64_t export_ticket);
  bool has_export_locals() const { return export_flag_ >= 0; }

  PyCodeObject* code() const { return reinterpret_cast<PyCodeObject*>(code_.get()); }  // borrowed
  PyObject* guard_manager() const { return guard_manager_.get(); }                      // borrowed
  guards::RootGuardManager* root() const { return root_; }
  PyObject* compile_id() const { return compile_id_.get(); }  // borrowed
  const std::string& trace_annotation() const { return trace_annotation_; }
  uint64_t hits() const { return hits_; }
  void record_hit() { ++hits_; }
  uint64_t tag() const { return tag_; }

  // Identity-guarded locals: the frame locals whose identity this entry's
  // guards pin (GuardedCode.identity_locals), remembered as the objects
  // `frame` (borrowed, a frame of the original code) holds now, weakly where
  // possible. The recompile limit counts only the entries whose remembered
  // objects are the ones a new frame holds (same_identity), so that one
  // compile per instance of a class is not a recompile. Names the code does
  // not have, or that are unbound in `frame`, are ignored.
  void record_identity(_PyInterpreterFrame* frame, const std::vector<std::string>& names);
  // True if every remembered object is alive and is what `frame` (borrowed)
  // holds in its place; true for an entry that remembers none.
  bool same_identity(_PyInterpreterFrame* frame) const;
  bool has_identity() const { return !identity_.empty(); }
  // True when an object this entry remembers has died: its identity guard can never pass
  // again.
  bool identity_lost() const;

 private:
  // The function object to call: reuses one per entry when the original has
  // no closure and the globals match. New reference, or null + error.
  PyObject* function_for(_PyInterpreterFrame* frame);
  void refresh_slots(PyCodeObject* original);
  friend void cache_entry_drop_cached_functions();

  Ref code_;
  Ref guard_manager_;
  guards::RootGuardManager* root_ = nullptr;  // borrowed through guard_manager_
  Ref check_method_;                          // bound check() of a Python guard object
  Ref compile_id_;
  std::string trace_annotation_;
  uint64_t hits_ = 0;
  uint64_t tag_ = 0;
  std::vector<std::pair<int32_t, guards::ObjectIdentity>> identity_;  // slot, object
  std::vector<int32_t> slots_;
  uint64_t slots_version_ = 0;
  Ref cached_function_;
  // Fast-local indices in code_ of the export flag (-1: no export locals) and of
  // each export, in slot order.
  int32_t export_flag_ = -1;
  std::vector<int32_t> export_index_;
};

// Drops the function object every entry keeps for its hits, so that the
// garbage collector can free the globals it held (see cache_entry.cpp). Called
// before each full collection; the next hit makes a new one.
void cache_entry_drop_cached_functions();

// Raises TypeError/ValueError (returns false) unless `code` can run in place
// of a frame of `original`: same argument counts and kinds, keyword-only
// names, and free variables. Both borrowed.
bool check_code_compatible(PyCodeObject* original, PyObject* code);

}  // namespace framecache
