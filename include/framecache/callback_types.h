// What the cache-miss callback receives and returns, as C++ types bound to
// Python: GuardedCode, CallbackResult, and the views FrameView and
// CacheEntryView.
#pragma once

#include <pybind11/pybind11.h>

#include <optional>
#include <string>
#include <vector>

#include "framecache/cache_entry.h"
#include "framecache/frame_exec_strategy.h"
#include "framecache/ref.h"

struct _PyInterpreterFrame;

namespace framecache {

namespace py = pybind11;

// A compiled code plus the guards under which it may run.
struct GuardedCode {
  py::object code;           // a code object
  py::object guard_manager;  // RootGuardManager or an object with check(f_locals)
  py::object compile_id;     // any object (None by default)
  std::string trace_annotation;
  // Frame locals whose identity guard_manager pins (an ID_MATCH on `self`):
  // the recompile limit counts only the entries made for the same objects.
  std::vector<std::string> identity_locals;
  // Locals of `code` that receive the guard tree's exports on a hit: a flag,
  // then one per export (CacheEntry's constructor says how).
  std::vector<std::string> export_locals;
};

struct CallbackResult {
  py::object guarded_code;  // GuardedCode or None
  std::optional<FrameExecStrategy> strategy;
  bool apply_to_code = false;
};

// A read-only view of the frame being looked up, valid only while the callback
// runs; afterwards every accessor raises RuntimeError.
class FrameView {
 public:
  explicit FrameView(_PyInterpreterFrame* frame) : frame_(frame) {}
  void invalidate() { frame_ = nullptr; }
  bool valid() const { return frame_ != nullptr; }
  py::object f_code() const;
  py::object f_locals();
  py::object f_globals() const;
  py::object f_builtins() const;
  py::object closure() const;
  int f_lasti() const;

 private:
  _PyInterpreterFrame* require() const;
  _PyInterpreterFrame* frame_;
  py::object locals_;
};

// A Python-side view of a cache entry; keeps the entry alive.
struct CacheEntryView {
  Shared<CacheEntry> entry;
};

}  // namespace framecache
