// Dict tags from a dict watcher: DICT_VERSION's tags on CPython 3.12 and 3.13.
//
// 3.11 gives every dict a version tag (ma_version_tag). 3.12 deprecated it
// (PEP 699; 3.14 removes it) in favour of dict watchers (PyDict_AddWatcher,
// PyDict_Watch). This keeps the same promise with a watcher: tag(d) of an
// exact dict is a number that changes whenever d changes and is never given
// to another dict, so equal tags mean "the same dict, unchanged".
//
// How: the first tag(d) watches d and files it in a table with a fresh
// number from a counter that only grows. framecache's watcher gives d a new
// number on every event (added, modified, deleted, cleared, cloned) before
// the change is made, and drops d from the table when d is deallocated, so a
// new dict at the same address starts over with a number never used before.
// A dict that cannot be watched (no watcher slot left: CPython has 8 per
// interpreter) gets 0, "no tag", which DICT_VERSION never remembers.
//
// The lookup is an open-addressing table of pointers probed inline (a hit is
// a multiply, a load and a compare or two); only the first sight of a dict
// goes out of line. Everything runs with the GIL held (free-threaded builds
// are refused in cpython.h).
//
// On 3.11 this compiles to nothing (cpython.h reads ma_version_tag there).
#pragma once

#include <Python.h>

#include <cstddef>
#include <cstdint>

#if PY_VERSION_HEX >= 0x030C0000

namespace framecache::guards::dict_watch {

namespace detail {
struct Slot {
  PyObject* dict;  // borrowed: watched, removed on its DEALLOCATED event
  uint64_t tag;
};
extern Slot* g_slots;  // null until the first dict is watched
extern size_t g_mask;  // capacity - 1 (a power of two)
extern int g_shift;    // 64 - log2(capacity)
inline size_t home(const PyObject* dict) {
  // Fibonacci hashing of the address (the low 4 bits are alignment).
  return static_cast<size_t>(((reinterpret_cast<uintptr_t>(dict) >> 4) * 0x9E3779B97F4A7C15ull) >>
                             g_shift);
}
// First sight of `dict`: watch it and file it. 0 if it cannot be watched.
uint64_t tag_slow(PyObject* dict);
}  // namespace detail

// The tag of an exact dict (borrowed), 0 if it has none. Never raises.
inline uint64_t tag(PyObject* dict) {
  if (detail::g_slots != nullptr) {
    for (size_t i = detail::home(dict);; i = (i + 1) & detail::g_mask) {
      const detail::Slot& s = detail::g_slots[i];
      if (s.dict == dict) return s.tag;
      if (s.dict == nullptr) break;
    }
  }
  return detail::tag_slow(dict);
}

// For tests: how many dicts are watched now, and whether a watcher slot was had.
size_t watched_count();
bool available();

}  // namespace framecache::guards::dict_watch

#endif
