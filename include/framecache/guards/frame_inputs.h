// What a root guard manager reads from: a frame's fast locals, or a dict.
#pragma once

#include <Python.h>

#include <cstddef>
#include <cstdint>

namespace framecache::guards {

// Encoding of where a root's local name lives in a given code object's frame,
// computed once per cache entry (see CacheEntry::slot_map):
//   >= 0   index into the frame's fast locals;
//   kAbsent  the code has no such local;
//   <= kClosureBase  free variable number (kClosureBase - slot) in the closure tuple.
inline constexpr int32_t kAbsent = -1;
inline constexpr int32_t kClosureBase = -2;

// All pointers are borrowed for the duration of one check.
struct FrameInputs {
  // The frame path: no dict is built.
  PyObject* const* fast = nullptr;  // the frame's fast locals (entries may be null)
  const int32_t* slots = nullptr;   // local id -> encoded slot, see above
  size_t nslots = 0;
  PyObject* closure = nullptr;  // tuple of cells, or null
  // The dict path (check(f_locals) from Python, or module/class frames).
  PyObject* locals = nullptr;
  // Both paths.
  PyObject* globals = nullptr;
  PyObject* builtins = nullptr;
};

}  // namespace framecache::guards
