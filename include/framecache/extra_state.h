// ExtraState: what framecache keeps on a code object, in its co_extra slot.
//
// Lifetime. The slot holds one reference to its ExtraState; the code object's
// death (CPython calls our freefunc) or reset_code() drops it. The hook holds
// another for as long as it works on a frame, and iterates entries through
// Shared<CacheEntry> references, because a guard, the callback or a
// destructor can run Python that resets this very code (or the GIL can pass
// to a thread that does). Any change to the entry list bumps `generation`; a
// lookup that sees the generation change under it starts again, so it never
// walks a list that changed beneath it.
#pragma once

#include <Python.h>

#include <cstdint>
#include <utility>
#include <vector>

#include "framecache/cache_entry.h"
#include "framecache/frame_exec_strategy.h"
#include "framecache/ref.h"

namespace framecache {

class ExtraState : public Counted {
 public:
  explicit ExtraState(PyCodeObject* code);
  ~ExtraState() override;

  // Borrowed; valid while attached() (the code owns this state then).
  PyCodeObject* code() const { return code_; }
  bool attached() const { return attached_; }

  const std::vector<Shared<CacheEntry>>& entries() const { return entries_; }
  void add_front(Shared<CacheEntry> entry);
  void move_to_front(CacheEntry* entry);
  void clear_entries();
  uint64_t generation() const { return generation_; }

  // The frame_state dict (borrowed): automatic-dynamic-shape notes that
  // survive recompiles.
  PyObject* frame_state() const { return frame_state_.get(); }

  // The code's own strategy: set_code_strategy, framecache's skipped
  // prefixes, and callbacks of options tag 0.
  FrameExecStrategy strategy;
  // The strategy in force for frames under options tag `tag`: what a callback
  // of that tag set with apply_to_code (a fallback of one framecache.compile
  // wrapper does not decide for a wrapper with other options), else
  // `strategy`.
  const FrameExecStrategy& strategy_for(uint64_t tag) const {
    if (tag != 0) {
      for (const auto& [t, s] : tagged_strategies_) {
        if (t == tag) return s;
      }
    }
    return strategy;
  }
  // Sets strategy_for(tag).
  void set_strategy(uint64_t tag, const FrameExecStrategy& s);
  // Entries this code compiled since it was last reset (every tag): the
  // accumulated recompile limit caps it.
  int64_t compiles = 0;
  // The recompile-limit warning was given for this code.
  bool limit_warned = false;

 private:
  friend void extra_state_detach(ExtraState* state);
  PyCodeObject* code_;
  bool attached_ = true;
  std::vector<Shared<CacheEntry>> entries_;
  uint64_t generation_ = 0;
  Ref frame_state_;
  std::vector<std::pair<uint64_t, FrameExecStrategy>> tagged_strategies_;
};

// Requests the co_extra index (once per process). 0, or -1 with an error set.
int extra_state_init();
// The code's state (borrowed, owned by the code), or null if it has none.
ExtraState* extra_state_lookup(PyCodeObject* code);
// The co_extra index the states live at (-1 before extra_state_init).
Py_ssize_t extra_state_index() noexcept;
// The code's state, created if missing (borrowed, owned by the code); null
// with an exception set on failure. New states get framecache's default
// strategy for the code (see extra_state_set_skip_prefixes).
ExtraState* extra_state_ensure(PyCodeObject* code);
// Frees the code's state and everything it holds (no-op if none).
void extra_state_reset(PyCodeObject* code);
// reset() for every code object that has a state.
void extra_state_reset_all();
// Number of code objects with a state.
size_t extra_state_count();
// Code whose co_filename starts with one of these paths starts out as
// (SKIP, DEFAULT): framecache's own Python code is never intercepted.
void extra_state_set_skip_prefixes(std::vector<std::string> prefixes);

}  // namespace framecache
