// Frame locals as a dict, and the slot maps that let guards skip the dict.
#include "framecache/frame_locals.h"

#include "framecache/cpython.h"

namespace framecache {

Ref frame_locals_dict(cpy::Frame* frame) {
  PyCodeObject* co = cpy::frame_code(frame);
  PyObject* mapping = cpy::frame_locals_mapping(frame);
  if (!(co->co_flags & CO_OPTIMIZED) && mapping != nullptr) {
    // Module and class bodies: their namespace is the locals.
    if (PyDict_Check(mapping)) return Ref::steal(PyDict_Copy(mapping));
    Ref d = Ref::steal(PyDict_New());
    if (!d || PyDict_Update(d.get(), mapping) < 0) return Ref();
    return d;
  }
  Ref d = Ref::steal(PyDict_New());
  if (!d) return Ref();
  PyObject* names = cpy::code_localsplus_names(co);
  PyObject** fast = cpy::frame_fast_locals(frame);
  PyObject* closure = cpy::frame_closure(frame);
  const int n = cpy::code_nlocalsplus(co);
  const int free_start = n - cpy::code_nfreevars(co);
  const bool started = cpy::frame_started(frame);
  for (int i = 0; i < n; ++i) {
    if (cpy::code_slot_is_hidden(co, i)) continue;  // a comprehension's, 3.12+ (cpython.h)
    PyObject* value = nullptr;  // borrowed
    if (i >= free_start) {
      // Before COPY_FREE_VARS runs, free variables are only in the closure.
      if (closure != nullptr && !started) {
        value = PyCell_GET(PyTuple_GET_ITEM(closure, i - free_start));
      } else if (fast[i] != nullptr) {
        value = PyCell_GET(fast[i]);
      }
    } else {
      value = fast[i];
      // Cells hold their contents only once MAKE_CELL has run.
      if (value != nullptr && started && cpy::code_slot_is_cell(co, i) && PyCell_Check(value)) {
        value = PyCell_GET(value);
      }
    }
    if (value == nullptr) continue;
    if (PyDict_SetItem(d.get(), PyTuple_GET_ITEM(names, i), value) < 0) return Ref();
  }
  return d;
}

std::vector<int32_t> compute_slot_map(PyCodeObject* co, const std::vector<std::string>& names) {
  std::vector<int32_t> slots(names.size(), guards::kAbsent);
  if (!(co->co_flags & CO_OPTIMIZED)) return slots;
  PyObject* localsplus = cpy::code_localsplus_names(co);
  const int n = cpy::code_nlocalsplus(co);
  const int free_start = n - cpy::code_nfreevars(co);
  for (size_t k = 0; k < names.size(); ++k) {
    for (int i = 0; i < n; ++i) {
      const char* s = PyUnicode_AsUTF8(PyTuple_GET_ITEM(localsplus, i));
      if (s == nullptr) {
        PyErr_Clear();
        continue;
      }
      if (names[k] != s) continue;
      slots[k] = i >= free_start ? guards::kClosureBase - (i - free_start) : i;
      break;
    }
  }
  return slots;
}

PyObject* frame_local_value(cpy::Frame* frame, int32_t slot) {
  if (slot == guards::kAbsent) return nullptr;
  PyCodeObject* co = cpy::frame_code(frame);
  if (!(co->co_flags & CO_OPTIMIZED)) return nullptr;
  const bool started = cpy::frame_started(frame);
  if (slot <= guards::kClosureBase) {
    const int index = guards::kClosureBase - slot;
    const int free_start = cpy::code_nlocalsplus(co) - cpy::code_nfreevars(co);
    PyObject* cell = nullptr;  // borrowed
    // Before COPY_FREE_VARS runs, free variables are only in the closure.
    if (!started) {
      PyObject* closure = cpy::frame_closure(frame);
      if (closure != nullptr && index < PyTuple_GET_SIZE(closure)) {
        cell = PyTuple_GET_ITEM(closure, index);
      }
    } else {
      cell = cpy::frame_fast_locals(frame)[free_start + index];
    }
    return cell != nullptr && PyCell_Check(cell) ? PyCell_GET(cell) : nullptr;
  }
  PyObject* value = cpy::frame_fast_locals(frame)[slot];
  // Cells hold their contents only once MAKE_CELL has run.
  if (value != nullptr && started && cpy::code_slot_is_cell(co, slot) && PyCell_Check(value)) {
    value = PyCell_GET(value);
  }
  return value;
}

guards::FrameInputs frame_inputs(cpy::Frame* frame, const std::vector<int32_t>& slots) {
  guards::FrameInputs in;
  in.globals = cpy::frame_globals(frame);
  in.builtins = cpy::frame_builtins(frame);
  PyCodeObject* co = cpy::frame_code(frame);
  if (co->co_flags & CO_OPTIMIZED) {
    in.fast = cpy::frame_fast_locals(frame);
    in.slots = slots.data();
    in.nslots = slots.size();
    in.closure = cpy::frame_closure(frame);
  } else {
    in.locals = cpy::frame_locals_mapping(frame);
  }
  return in;
}

}  // namespace framecache
