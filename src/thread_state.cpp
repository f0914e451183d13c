// ThreadState: per-thread storage and its cleanup with the thread.
#include "framecache/thread_state.h"

namespace framecache {

namespace exit_state {
std::atomic<unsigned long> finalizing_thread{0};
bool other_thread() noexcept { return PyThread_get_thread_ident() != finalizing_thread.load(); }
}  // namespace exit_state

void note_interpreter_exit() noexcept {
  exit_state::finalizing_thread.store(PyThread_get_thread_ident());
}

namespace detail {
__thread ThreadState* t_state __attribute__((tls_model("initial-exec"))) = nullptr;
}  // namespace detail

namespace {
using detail::t_state;
constexpr const char* kCapsuleName = "framecache.ThreadState";
constexpr const char* kDictKey = "__framecache_thread_state__";

void destroy_capsule(PyObject* capsule) {
  auto* st = static_cast<ThreadState*>(PyCapsule_GetPointer(capsule, kCapsuleName));
  if (st == nullptr) {
    PyErr_Clear();
    return;
  }
  if (st->owner != PyThreadState_GET()) {
    // Another thread clears this state: finalization (or a fork child) clearing
    // a thread that may still be running. On 3.11 a daemon thread that waits for
    // the GIL during finalization is ended with pthread_exit, which unwinds its
    // stack through CapScope/SuspendScope destructors that write into this
    // state. Turn it off and leave the few bytes allocated rather than free
    // memory that thread may still touch.
    if (st->mode != EvalMode::kOff) note_mode_change(st->mode, EvalMode::kOff);
    st->mode = EvalMode::kOff;
    st->callback = Ref::borrow(Py_None);
    return;
  }
  delete st;
}
}  // namespace

ThreadState::~ThreadState() {
  if (mode != EvalMode::kOff) note_mode_change(mode, EvalMode::kOff);
  // Runs on the owning thread when it exits, or on the finalizing thread for
  // others; only the owner's pointer can point here.
  if (t_state == this) t_state = nullptr;
}

ThreadState* thread_state_get() {
  PyThreadState* ts = PyThreadState_Get();
  if (t_state != nullptr && t_state->owner == ts) return t_state;
  PyObject* dict = PyThreadState_GetDict();  // borrowed
  if (dict == nullptr) {
    PyErr_SetString(PyExc_RuntimeError, "framecache: this thread has no thread-state dict");
    return nullptr;
  }
  PyObject* existing = PyDict_GetItemString(dict, kDictKey);  // borrowed
  if (existing != nullptr && PyCapsule_IsValid(existing, kCapsuleName)) {
    t_state = static_cast<ThreadState*>(PyCapsule_GetPointer(existing, kCapsuleName));
    return t_state;
  }
  auto* st = new ThreadState();
  st->owner = ts;
  Ref capsule = Ref::steal(PyCapsule_New(st, kCapsuleName, destroy_capsule));
  if (!capsule) {
    delete st;
    return nullptr;
  }
  if (PyDict_SetItemString(dict, kDictKey, capsule.get()) < 0) return nullptr;
  t_state = st;
  return st;
}

}  // namespace framecache
