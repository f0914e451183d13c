// Owned Python references and intrusively counted C++ objects.
//
// Ownership vocabulary used across framecache's headers:
//   borrowed -- the callee neither takes nor gives a reference;
//   new      -- the caller receives a reference it must release;
//   stolen   -- the callee takes over a reference the caller held.
#pragma once

#include <Python.h>

#include <utility>

namespace framecache {

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
  ~Ref() { Py_XDECREF(obj_); }

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
    if (ptr_) ptr_->decref();
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
