// RANGE_ITERATOR_MATCH and TUPLE_ITERATOR_LEN.
#include "framecache/guards/leaf_guards_iterators.h"

#include "framecache/cpython.h"
#include "framecache/guards/check_error_text.h"
#include "framecache/ref.h"

namespace framecache::guards {

namespace {

// The iterator structs are CPython-private (cpython.h mirrors or includes them
// per version); the probe below checks the layout by behaviour before any read
// and falls back to the portable path instead of misreading memory.
using cpy::RangeRest;

enum class Layout { kUnprobed, kVerified, kMismatch };
Layout g_layout = Layout::kUnprobed;
bool g_enabled = true;
bool g_struct_reads = false;  // g_layout == kVerified && g_enabled

// Builds range(start, stop, step), advances its iterator `advance` times, and
// compares the struct's fields with what they must hold.
bool range_layout_matches(long start, long stop, long step, long advance) {
  if (PyRangeIter_Type.tp_basicsize != cpy::kRangeIterSize) return false;
  Ref r = Ref::steal(
      PyObject_CallFunction(reinterpret_cast<PyObject*>(&PyRange_Type), "lll", start, stop, step));
  if (!r) return false;
  const Py_ssize_t len = PyObject_Size(r.get());
  Ref it = Ref::steal(PyObject_GetIter(r.get()));
  if (len < 0 || !it || Py_TYPE(it.get()) != &PyRangeIter_Type) return false;
  for (long i = 0; i < advance; ++i) {
    if (!Ref::steal(PyIter_Next(it.get()))) return false;
  }
  const RangeRest rest = cpy::range_iter_rest(it.get());
  return rest.length == len - advance && rest.first == start + advance * step && rest.step == step;
}

// Same for a tuple iterator, before and after exhaustion. Pointers are only
// compared, never followed, so a wrong layout cannot crash the probe.
bool tuple_layout_matches() {
  if (PyTupleIter_Type.tp_basicsize != cpy::kTupleIterSize) return false;
  Ref t = Ref::steal(Py_BuildValue("(iii)", 1, 2, 3));
  Ref it = t ? Ref::steal(PyObject_GetIter(t.get())) : Ref();
  if (!it || Py_TYPE(it.get()) != &PyTupleIter_Type) return false;
  if (!Ref::steal(PyIter_Next(it.get()))) return false;
  if (cpy::tuple_iter_index(it.get()) != 1 || cpy::tuple_iter_seq(it.get()) != t.get()) return false;
  for (int i = 0; i < 2; ++i) {
    if (!Ref::steal(PyIter_Next(it.get()))) return false;
  }
  if (Ref::steal(PyIter_Next(it.get())) || PyErr_Occurred()) return false;
  return cpy::tuple_iter_seq(it.get()) == nullptr;
}

void ensure_probed() {
  if (g_layout != Layout::kUnprobed) return;
  PyObject *type, *value, *tb;
  PyErr_Fetch(&type, &value, &tb);
  const bool ok = range_layout_matches(5, 1000, 7, 2) && range_layout_matches(-3, -50, -4, 1) &&
                  range_layout_matches(0, 0, 1, 0) && tuple_layout_matches();
  PyErr_Clear();
  PyErr_Restore(type, value, tb);
  g_layout = ok ? Layout::kVerified : Layout::kMismatch;
  g_struct_reads = ok && g_enabled;
}

// Reads a range iterator's remaining values without advancing it. Returns
// false with an exception set on failure. `it` is borrowed, an exact
// range_iterator.
bool read_range_rest(PyObject* it, RangeRest& out) {
  if (g_struct_reads) {
    out = cpy::range_iter_rest(it);
    return true;
  }
  // Portable path: __reduce__ gives (iter, (range,), index) (3.12+: the range
  // already advanced and None for the index); the rest is range[index:].
  Ref red = Ref::steal(PyObject_CallMethod(it, "__reduce__", nullptr));
  if (!red) return false;
  PyObject* args = PyTuple_Check(red.get()) && PyTuple_GET_SIZE(red.get()) >= 2
                       ? PyTuple_GET_ITEM(red.get(), 1)
                       : nullptr;
  if (args == nullptr || !PyTuple_Check(args) || PyTuple_GET_SIZE(args) < 1 ||
      !PyRange_Check(PyTuple_GET_ITEM(args, 0))) {
    PyErr_SetString(PyExc_TypeError, "unexpected range_iterator.__reduce__() result");
    return false;
  }
  Py_ssize_t index = 0;
  if (PyTuple_GET_SIZE(red.get()) >= 3 && PyTuple_GET_ITEM(red.get(), 2) != Py_None) {
    index = PyLong_AsSsize_t(PyTuple_GET_ITEM(red.get(), 2));
    if (index == -1 && PyErr_Occurred()) return false;
  }
  Ref rest = Ref::steal(PySequence_GetSlice(PyTuple_GET_ITEM(args, 0), index, PY_SSIZE_T_MAX));
  if (!rest) return false;
  const Py_ssize_t length = PyObject_Size(rest.get());
  Ref first = Ref::steal(PyObject_GetAttrString(rest.get(), "start"));
  Ref step = Ref::steal(PyObject_GetAttrString(rest.get(), "step"));
  if (length < 0 || !first || !step) return false;
  out.length = static_cast<long>(length);
  out.first = PyLong_AsLong(first.get());
  out.step = PyLong_AsLong(step.get());
  return !PyErr_Occurred();
}

// A tuple iterator's items left, or -1 with an exception set. `it` is
// borrowed, an exact tuple_iterator.
Py_ssize_t tuple_iter_left(PyObject* it) {
  if (g_struct_reads) {
    PyObject* seq = cpy::tuple_iter_seq(it);
    if (seq == nullptr) return 0;
    const Py_ssize_t n = PyTuple_GET_SIZE(seq) - cpy::tuple_iter_index(it);
    return n > 0 ? n : 0;
  }
  return PyObject_LengthHint(it, -1);  // tuple_iterator.__length_hint__, in C
}

// The values `rest` stands for, e.g. "range(4, 10, 2)".
std::string rest_text(const RangeRest& rest) {
  if (rest.length == 0) return "nothing";
  if (rest.length == 1) return "only " + std::to_string(rest.first);
  // The stop may not fit a long (the last value does): compute it in Python ints.
  Ref first = Ref::steal(PyLong_FromLong(rest.first));
  Ref length = Ref::steal(PyLong_FromLong(rest.length));
  Ref step = Ref::steal(PyLong_FromLong(rest.step));
  Ref span = length && step ? Ref::steal(PyNumber_Multiply(length.get(), step.get())) : Ref();
  Ref stop = first && span ? Ref::steal(PyNumber_Add(first.get(), span.get())) : Ref();
  if (!stop) {
    PyErr_Clear();
    return std::to_string(rest.length) + " values from " + std::to_string(rest.first) + " by " +
           std::to_string(rest.step);
  }
  return "range(" + std::to_string(rest.first) + ", " + safe_repr(stop.get()) + ", " +
         std::to_string(rest.step) + ")";
}

}  // namespace

bool iterator_struct_reads() {
  ensure_probed();
  return g_struct_reads;
}

bool set_iterator_struct_reads(bool enabled) {
  ensure_probed();
  const bool previous = g_struct_reads;
  g_enabled = enabled;
  g_struct_reads = g_layout == Layout::kVerified && g_enabled;
  return previous;
}

// --- RANGE_ITERATOR_MATCH ------------------------------------------------------

RangeIteratorMatch::RangeIteratorMatch(long first, long length, long step, std::string text)
    : first_(first), length_(length), step_(step), text_(std::move(text)) {
  ensure_probed();
}

bool RangeIteratorMatch::check(PyObject* value) {
  if (Py_TYPE(value) != &PyRangeIter_Type) return false;
  RangeRest rest;
  if (!read_range_rest(value, rest)) {
    consume_check_error();
    return false;
  }
  if (rest.length != length_) return false;
  if (length_ == 0) return true;
  return rest.first == first_ && (length_ == 1 || rest.step == step_);
}

std::string RangeIteratorMatch::explain(PyObject* value) {
  const std::string want = "expected a range_iterator yielding " + text_;
  if (Py_TYPE(value) != &PyRangeIter_Type) return want + ", got " + a_type_name(value);
  RangeRest rest;
  if (!read_range_rest(value, rest)) {
    return want + ", but reading its state raised " + take_check_error_text();
  }
  return want + ", got one yielding " + rest_text(rest);
}

std::string RangeIteratorMatch::describe() const { return "RANGE_ITERATOR_MATCH(" + text_ + ")"; }

// --- TUPLE_ITERATOR_LEN --------------------------------------------------------

TupleIteratorLen::TupleIteratorLen(Py_ssize_t length) : length_(length) { ensure_probed(); }

bool TupleIteratorLen::check(PyObject* value) {
  if (Py_TYPE(value) != &PyTupleIter_Type) return false;
  const Py_ssize_t left = tuple_iter_left(value);
  if (left < 0) {
    consume_check_error();
    return false;
  }
  return left == length_;
}

std::string TupleIteratorLen::explain(PyObject* value) {
  const std::string want =
      "expected a tuple_iterator with " + std::to_string(length_) + " items left";
  if (Py_TYPE(value) != &PyTupleIter_Type) return want + ", got " + a_type_name(value);
  const Py_ssize_t left = tuple_iter_left(value);
  if (left < 0) return want + ", but reading its state raised " + take_check_error_text();
  return want + ", got one with " + std::to_string(left) + " left";
}

std::string TupleIteratorLen::describe() const {
  return "TUPLE_ITERATOR_LEN(" + std::to_string(length_) + ")";
}

}  // namespace framecache::guards
