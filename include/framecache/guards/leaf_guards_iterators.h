// Leaf guards about the state of a builtin iterator, read without advancing
// it: RANGE_ITERATOR_MATCH, TUPLE_ITERATOR_LEN.
//
// Both read the iterator's C struct directly when its layout was verified at
// startup against what the iterator reports through __reduce__ and
// __length_hint__ (see iterator_struct_reads()); otherwise they call those
// methods (slower, same answers).
#pragma once

#include <Python.h>

#include <string>

#include "framecache/guards/guard_manager.h"

namespace framecache::guards {

// True when the iterator guards read CPython's iterator structs directly.
bool iterator_struct_reads();
// Turns the struct reads off (false) or back on (true; effective only if the
// layout was verified). Returns the previous setting. For tests of the
// portable path.
bool set_iterator_struct_reads(bool enabled);

// type(value) is range_iterator and what it has left to yield is exactly the
// values of range(start, stop, step) (compared as sequences: an empty or
// one-value remainder matches whatever the step).
class RangeIteratorMatch final : public LeafGuard {
 public:
  // The expected values are `length` values from `first` by `step`; the
  // caller checked that they fit a C long. `text` is e.g. "range(0, 10, 2)".
  RangeIteratorMatch(long first, long length, long step, std::string text);
  bool check(PyObject* value) override;
  std::string explain(PyObject* value) override;
  std::string describe() const override;
  const char* kind() const override { return "RANGE_ITERATOR_MATCH"; }

 private:
  long first_, length_, step_;
  std::string text_;
};

// type(value) is tuple_iterator and it has `length` items left.
class TupleIteratorLen final : public LeafGuard {
 public:
  explicit TupleIteratorLen(Py_ssize_t length);
  bool check(PyObject* value) override;
  std::string explain(PyObject* value) override;
  std::string describe() const override;
  const char* kind() const override { return "TUPLE_ITERATOR_LEN"; }

 private:
  Py_ssize_t length_;
};

}  // namespace framecache::guards
