// Owned Python references and intrusively counted C++ objects.
//
// Ownership vocabulary used across framecache's headers:
//   borrowed -- the callee neither takes nor gives a reference;
//   new      -- the caller receives a reference it must release;
//   stolen   -- the callee takes over a reference the caller held.
#pragma once

#include <Python.h>

#include <atomic>
#include <utility>

namespace framecache {

// Threads ended by interpreter exit (CPython gh-87135, 3.11).
//
// During Py_Finalize a daemon thread that waits for the GIL is ended with
// pthread_exit, and glibc ends a thread by unwinding its stack: every C++
// destructor between the point where it waited and the thread's start runs,
// on a thread that does not hold the GIL, while the finalizing thread runs
// Python. Destructors of Ref and Shared are the ones that touch Python there
// (a decref can free an object and run its __del__). framecache's atexit
// handler (python/framecache/_runtime.py) records the finalizing thread; from
// then on, owners on any other thread let go of their references without
// releasing them. That leaks what a daemon thread held at exit, which is
// all one can do: its state dies with the process. (3.14 hangs such threads
// instead of unwinding them; on 3.14+ this can go.)
namespace exit_state {
// PyThread_get_thread_ident() of the thread finalizing the interpreter, or 0.
extern std::atomic<unsigned long> finalizing_thread;
// True on a thread other than the finalizing one (out of line: slow path).
bool other_thread() noexcept;
}  // namespace exit_state

// False when this thread must not release Python references (see above).
inline bool may_release_references() noexcept {
  return exit_state::finalizing_thread.load(std::memory_order_relaxed) == 0 ||
         !exit_state::other_thread();
}

// A strong reference to a Python object (or null). Logic code holds PyObject*
// through this type so that every early return releases what it owns.
class Ref {
 public:
  Ref() noexcept = default;
  // Takes over `obj` (stolen; may be null).
  static Ref steal(PyObject* obj) noexcept { return Ref(obj); }
  // Adds a reference to `obj` (borrowed; may be null).
  static Ref borrow(PyObject* obj) noexcept {
    Py_XINCREF(obj);
    return Ref(obj);
  }

  Ref(const Ref& other) noexcept : obj_(other.obj_) { Py_XINCREF(obj_); }
  Ref(Ref&& other) noexcept : obj_(std::exchange(other.obj_, nullptr)) {}
  Ref& operator=(Ref other) noexcept {
    std::swap(obj_, other.obj_);
    return *this;
  }
  ~Ref() {
    if (obj_ != nullptr && may_release_references()) Py_DECREF(obj_);
  }

  // Borrowed: valid while this Ref holds it.
  PyObject* get() const noexcept { return obj_; }
  // New: the caller now owns the reference this Ref held.
  PyObject* release() noexcept { return std::exchange(obj_, nullptr); }
  explicit operator bool() const noexcept { return obj_ != nullptr; }
  void reset() noexcept { Py_CLEAR(obj_); }

 private:
  explicit Ref(PyObject* obj) noexcept : obj_(obj) {}
  PyObject* obj_ = nullptr;
};

// Base for C++ objects shared between a code object's co_extra slot, the hook
// and Python-side views. The count is only touched with the GIL held, which is
// what makes a plain integer enough.
class Counted {
 public:
  Counted() = default;
  Counted(const Counted&) = delete;
  Counted& operator=(const Counted&) = delete;
  void incref() const noexcept { ++refs_; }
  void decref() const noexcept {
    if (--refs_ == 0) {
      delete this;
    }
  }
  long refcount() const noexcept { return refs_; }

 protected:
  virtual ~Counted() = default;

 private:
  mutable long refs_ = 0;
};

// A strong pointer to a Counted object.
template <class T>
class Shared {
 public:
  Shared() noexcept = default;
  explicit Shared(T* ptr) noexcept : ptr_(ptr) {
    if (ptr_) ptr_->incref();
  }
  Shared(const Shared& other) noexcept : Shared(other.ptr_) {}
  Shared(Shared&& other) noexcept : ptr_(std::exchange(other.ptr_, nullptr)) {}
  Shared& operator=(Shared other) noexcept {
    std::swap(ptr_, other.ptr_);
    return *this;
  }
  ~Shared() {
    if (ptr_ && may_release_references()) ptr_->decref();
  }
  T* get() const noexcept { return ptr_; }
  T* operator->() const noexcept { return ptr_; }
  T& operator*() const noexcept { return *ptr_; }
  explicit operator bool() const noexcept { return ptr_ != nullptr; }
  void reset() noexcept { *this = Shared(); }

 private:
  T* ptr_ = nullptr;
};

}  // namespace framecache
