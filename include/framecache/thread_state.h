// Per-thread hook state: the callback and what is in force for this thread.
//
// Each Python thread that ever set a callback has one ThreadState, reached
// through a C++ thread_local pointer (one load on the hook's fast path) and
// owned by a capsule in the thread's PyThreadState dict, so that it is freed,
// with the GIL held, when the thread's state is cleared. Nothing here is
// shared between threads: one thread's mode never leaks into another.
#pragma once

#include <Python.h>

#include <cstdint>

#include "framecache/frame_exec_strategy.h"
#include "framecache/ref.h"

namespace framecache {

class CacheEntry;

enum class EvalMode : int {
  kOff = 0,      // callback None: frames run normally
  kRunOnly = 1,  // callback False: cached entries are used, nothing compiles
  kCompile = 2,  // callback is a callable: misses call it
};

struct ThreadState {
  ThreadState() = default;
  ~ThreadState();
  ThreadState(const ThreadState&) = delete;
  ThreadState& operator=(const ThreadState&) = delete;

  Ref callback = Ref::borrow(Py_None);  // None, False or a callable
  EvalMode mode = EvalMode::kOff;
  // The options tag of the callback in force (0: untagged). Entries compiled
  // under one tag are looked up only under the same tag, so two
  // framecache.compile wrappers of one function with different options
  // (backend, dynamic, fullgraph) never run each other's code.
  uint64_t tag = 0;
  // The strongest recursive_action of the frames being evaluated on this
  // thread: callees do at most this much.
  FrameAction cap = FrameAction::DEFAULT;
  // >0 while guards or the callback run: frames run normally meanwhile.
  int suspended = 0;
  // The code object of the frame the hook is about to evaluate in place of
  // another; its frame runs normally (it is the cached code itself).
  PyCodeObject* bypass = nullptr;
  // With `bypass`: the entry whose code it is, when that frame is to receive the
  // entry's guard exports (CacheEntry::receive_exports), and the ticket of the
  // check whose exports they are. Borrowed: the entry is running it.
  CacheEntry* bypass_entry = nullptr;
  uint64_t bypass_ticket = 0;
  // The PyThreadState this belongs to (for sanity checks).
  PyThreadState* owner = nullptr;
};

namespace detail {
// The hook reads this on every frame. __thread with the initial-exec model is
// one %fs-relative load; a C++ thread_local in a shared library is a
// __tls_get_addr call (general-dynamic model) behind a wrapper. It takes 8
// bytes of the static TLS surplus that glibc keeps for dlopen'ed libraries.
extern __thread ThreadState* t_state __attribute__((tls_model("initial-exec")));
}  // namespace detail

// This thread's state, or null if it never set a callback. Borrowed.
inline ThreadState* thread_state_peek() noexcept { return detail::t_state; }
// This thread's state, created if missing. Borrowed; null with an error set on
// failure.
ThreadState* thread_state_get();
// Number of threads whose mode is not kOff.
int active_thread_count() noexcept;
// Called (from an atexit handler) on the thread finalizing the interpreter:
// from then on other threads never release Python references (see ref.h).
void note_interpreter_exit() noexcept;
// Called whenever a thread's mode changes between off and not off.
void note_mode_change(EvalMode before, EvalMode after) noexcept;

// Marks `code` as the thread's bypass (with the entry and ticket that go with it)
// for its scope, restoring the previous ones after (RAII). The hook clears them
// when the frame of `code` comes.
class BypassScope {
 public:
  BypassScope(ThreadState* st, PyCodeObject* code, CacheEntry* entry, uint64_t ticket)
      : st_(st), code_(st->bypass), entry_(st->bypass_entry), ticket_(st->bypass_ticket) {
    st->bypass = code;
    st->bypass_entry = entry;
    st->bypass_ticket = ticket;
  }
  ~BypassScope() {
    st_->bypass = code_;
    st_->bypass_entry = entry_;
    st_->bypass_ticket = ticket_;
  }
  BypassScope(const BypassScope&) = delete;
  BypassScope& operator=(const BypassScope&) = delete;

 private:
  ThreadState* st_;
  PyCodeObject* code_;
  CacheEntry* entry_;
  uint64_t ticket_;
};

// Raises `cap` to at least `action` for its scope (RAII).
class CapScope {
 public:
  CapScope(ThreadState* st, FrameAction action) : st_(st), saved_(st->cap) {
    st->cap = strongest(saved_, action);
  }
  ~CapScope() { st_->cap = saved_; }
  CapScope(const CapScope&) = delete;
  CapScope& operator=(const CapScope&) = delete;

 private:
  ThreadState* st_;
  FrameAction saved_;
};

// Frames run normally for its scope (RAII): used around guards and callbacks.
class SuspendScope {
 public:
  explicit SuspendScope(ThreadState* st) : st_(st) { ++st->suspended; }
  ~SuspendScope() { --st_->suspended; }
  SuspendScope(const SuspendScope&) = delete;
  SuspendScope& operator=(const SuspendScope&) = delete;

 private:
  ThreadState* st_;
};

}  // namespace framecache
