// ExtraState and its co_extra slot: creation, lookup, reset, the registry.
#include "framecache/extra_state.h"

#include <algorithm>
#include <string>
#include <unordered_set>

#include "framecache/cpython.h"
#include "framecache/runtime_config.h"

namespace framecache {

namespace {
Py_ssize_t g_extra_index = -1;

// Every ExtraState that is attached to a code object. Heap-allocated and never
// freed: code objects can die during interpreter finalization, after static
// destructors would have run in an embedding application.
std::unordered_set<ExtraState*>& registry() {
  static auto* set = new std::unordered_set<ExtraState*>();
  return *set;
}

std::vector<std::string>& skip_prefixes() {
  static auto* prefixes = new std::vector<std::string>();
  return *prefixes;
}

// The co_extra freefunc: the code object died or its slot was overwritten.
void free_extra_state(void* ptr) {
  if (ptr != nullptr) extra_state_detach(static_cast<ExtraState*>(ptr));
}

bool should_skip(PyCodeObject* code) {
  if (skip_prefixes().empty()) return false;
  const char* file = PyUnicode_AsUTF8(code->co_filename);
  if (file == nullptr) {
    PyErr_Clear();
    return false;
  }
  for (const auto& prefix : skip_prefixes()) {
    if (std::string_view(file).substr(0, prefix.size()) == prefix) return true;
  }
  return false;
}
}  // namespace

// Drops the slot's reference, once, whoever gets here first: the freefunc
// or extra_state_reset. (Whether CPython calls the freefunc when a slot is
// overwritten has varied across versions; this keeps both cases right.)
void extra_state_detach(ExtraState* state) {
  if (!state->attached_) return;
  state->attached_ = false;
  registry().erase(state);
  state->decref();
}

ExtraState::ExtraState(PyCodeObject* code) : code_(code), frame_state_(Ref::steal(PyDict_New())) {
  if (!frame_state_) throw std::bad_alloc();
}

ExtraState::~ExtraState() = default;

void ExtraState::add_front(Shared<CacheEntry> entry) {
  entries_.insert(entries_.begin(), std::move(entry));
  ++generation_;
}

void ExtraState::move_to_front(CacheEntry* entry) {
  auto it = std::find_if(entries_.begin(), entries_.end(),
                         [&](const Shared<CacheEntry>& e) { return e.get() == entry; });
  if (it == entries_.end() || it == entries_.begin()) return;
  std::rotate(entries_.begin(), it, it + 1);
  ++generation_;
}

void ExtraState::set_strategy(uint64_t tag, const FrameExecStrategy& s) {
  if (tag == 0) {
    strategy = s;
    return;
  }
  for (auto& [t, existing] : tagged_strategies_) {
    if (t == tag) {
      existing = s;
      return;
    }
  }
  tagged_strategies_.emplace_back(tag, s);
}

void ExtraState::clear_entries() {
  // Move the list out first: destroying entries can run Python (a guard
  // manager's __del__) that looks at this state again.
  std::vector<Shared<CacheEntry>> doomed;
  doomed.swap(entries_);
  ++generation_;
}

int extra_state_init() {
  if (g_extra_index >= 0) return 0;
  g_extra_index = cpy::request_code_extra_index(free_extra_state);
  if (g_extra_index < 0) {
    if (!PyErr_Occurred()) PyErr_SetString(PyExc_RuntimeError, "no co_extra index available");
    return -1;
  }
  return 0;
}

Py_ssize_t extra_state_index() noexcept { return g_extra_index; }

ExtraState* extra_state_lookup(PyCodeObject* code) {
  if (g_extra_index < 0) return nullptr;
  return static_cast<ExtraState*>(cpy::code_get_extra(code, g_extra_index));
}

ExtraState* extra_state_ensure(PyCodeObject* code) {
  if (ExtraState* existing = extra_state_lookup(code)) return existing;
  if (g_extra_index < 0 && extra_state_init() < 0) return nullptr;
  ExtraState* state;
  try {
    state = new ExtraState(code);
  } catch (const std::bad_alloc&) {
    PyErr_NoMemory();
    return nullptr;
  }
  state->incref();  // the slot's reference
  if (should_skip(code)) state->strategy = {FrameAction::SKIP, FrameAction::DEFAULT};
  if (cpy::code_set_extra(code, g_extra_index, state) < 0) {
    state->decref();
    return nullptr;
  }
  registry().insert(state);
  return state;
}

void extra_state_reset(PyCodeObject* code) {
  ExtraState* state = extra_state_lookup(code);
  if (state == nullptr) return;
  Shared<ExtraState> hold(state);
  if (cpy::code_set_extra(code, g_extra_index, nullptr) < 0) PyErr_Clear();
  extra_state_detach(state);
  state->clear_entries();
}

void extra_state_reset_all() {
  std::vector<Shared<ExtraState>> states;
  for (ExtraState* s : registry()) states.emplace_back(s);
  for (auto& s : states) {
    if (s->attached()) extra_state_reset(s->code());
  }
  runtime_config().accumulated_compiles = 0;
}

size_t extra_state_count() { return registry().size(); }

void extra_state_set_skip_prefixes(std::vector<std::string> prefixes) {
  skip_prefixes() = std::move(prefixes);
}

}  // namespace framecache
