// Dict tags from a dict watcher (CPython 3.12+): the table and the watcher.
#include "framecache/guards/dict_watch.h"

#if PY_VERSION_HEX >= 0x030C0000

#include <cstdlib>

namespace framecache::guards::dict_watch {

namespace detail {
Slot* g_slots = nullptr;
size_t g_mask = 0;
int g_shift = 64;
}  // namespace detail

namespace {
using detail::g_mask;
using detail::g_shift;
using detail::g_slots;
using detail::home;
using detail::Slot;

constexpr size_t kInitialCapacity = 64;
int g_watcher = -1;       // framecache's watcher id, once registered
bool g_unavailable = false;  // PyDict_AddWatcher failed: every tag is 0
uint64_t g_counter = 0;   // the last tag given out
size_t g_count = 0;       // dicts in the table

Slot* find(PyObject* dict) {
  if (g_slots == nullptr) return nullptr;
  for (size_t i = home(dict);; i = (i + 1) & g_mask) {
    if (g_slots[i].dict == dict) return &g_slots[i];
    if (g_slots[i].dict == nullptr) return nullptr;
  }
}

void place(Slot* slots, size_t mask, int shift, PyObject* dict, uint64_t tag) {
  size_t i = static_cast<size_t>(
      ((reinterpret_cast<uintptr_t>(dict) >> 4) * 0x9E3779B97F4A7C15ull) >> shift);
  while (slots[i].dict != nullptr) i = (i + 1) & mask;
  slots[i] = Slot{dict, tag};
}

// Grows (or makes) the table so that one more dict keeps it at most half full.
bool reserve_one() {
  const size_t capacity = g_slots ? g_mask + 1 : 0;
  if (g_slots != nullptr && (g_count + 1) * 2 <= capacity) return true;
  const size_t new_capacity = capacity ? capacity * 2 : kInitialCapacity;
  auto* slots = static_cast<Slot*>(std::calloc(new_capacity, sizeof(Slot)));
  if (slots == nullptr) return false;
  int bits = 0;
  while ((size_t{1} << bits) < new_capacity) ++bits;
  const int shift = 64 - bits;
  for (size_t i = 0; i < capacity; ++i) {
    if (g_slots[i].dict != nullptr) place(slots, new_capacity - 1, shift, g_slots[i].dict, g_slots[i].tag);
  }
  std::free(g_slots);
  g_slots = slots;
  g_mask = new_capacity - 1;
  g_shift = shift;
  return true;
}

// Linear-probing deletion by backward shift: later entries of the same
// cluster move up so that no probe stops early at the hole.
void erase(Slot* slot) {
  size_t i = static_cast<size_t>(slot - g_slots);
  size_t j = i;
  for (;;) {
    j = (j + 1) & g_mask;
    if (g_slots[j].dict == nullptr) break;
    const size_t k = home(g_slots[j].dict);
    // Slot j may stay if its home lies cyclically in (i, j].
    const bool stays = i <= j ? (i < k && k <= j) : (i < k || k <= j);
    if (stays) continue;
    g_slots[i] = g_slots[j];
    i = j;
  }
  g_slots[i] = Slot{nullptr, 0};
  --g_count;
}

// Runs before each change of a watched dict, and when it is deallocated.
// Touches no Python object and never fails.
int on_dict_event(PyDict_WatchEvent event, PyObject* dict, PyObject*, PyObject*) {
  Slot* slot = find(dict);
  if (slot == nullptr) return 0;
  if (event == PyDict_EVENT_DEALLOCATED) {
    erase(slot);
  } else {
    slot->tag = ++g_counter;
  }
  return 0;
}

bool ensure_watcher() {
  if (g_watcher >= 0) return true;
  if (g_unavailable) return false;
  // Callers may be in the middle of reporting another error: keep it.
  PyObject* pending = PyErr_GetRaisedException();
  g_watcher = PyDict_AddWatcher(on_dict_event);
  if (g_watcher < 0) {
    PyErr_Clear();
    g_unavailable = true;
  }
  PyErr_SetRaisedException(pending);
  return g_watcher >= 0;
}
}  // namespace

namespace detail {
uint64_t tag_slow(PyObject* dict) {
  if (!ensure_watcher() || !reserve_one()) return 0;
  PyObject* pending = PyErr_GetRaisedException();
  const int rc = PyDict_Watch(g_watcher, dict);
  if (rc < 0) PyErr_Clear();
  PyErr_SetRaisedException(pending);
  if (rc < 0) return 0;
  const uint64_t tag = ++g_counter;
  place(g_slots, g_mask, g_shift, dict, tag);
  ++g_count;
  return tag;
}
}  // namespace detail

size_t watched_count() { return g_count; }
bool available() { return ensure_watcher(); }

}  // namespace framecache::guards::dict_watch

#endif
