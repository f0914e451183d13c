// Reading an interpreter frame's locals: as a dict (slow path: the callback,
// Python guard objects) or as FrameInputs for C++ guard trees (no dict).
#pragma once

#include <Python.h>

#include <string>
#include <vector>

#include "framecache/guards/frame_inputs.h"
#include "framecache/ref.h"

struct _PyInterpreterFrame;

namespace framecache {

// New dict of the frame's bound locals, cell contents and free-variable
// contents by name (module and class frames: a copy of their locals mapping).
// Null with an exception set on failure. `frame` is borrowed.
Ref frame_locals_dict(_PyInterpreterFrame* frame);

// For each name, where it lives in a frame of `code` (borrowed); see the slot
// encoding in guards/frame_inputs.h.
std::vector<int32_t> compute_slot_map(PyCodeObject* code, const std::vector<std::string>& names);

// The value of one local of `frame` (borrowed) by its encoded slot from
// compute_slot_map: a cell's or free variable's contents, whether or not the
// frame has started. Borrowed; null if unbound or kAbsent. Sets no error.
PyObject* frame_local_value(_PyInterpreterFrame* frame, int32_t slot);

// A FrameInputs view of `frame` (borrowed) using a slot map from
// compute_slot_map for the frame's code. Module and class frames use the
// dict path with their locals mapping.
guards::FrameInputs frame_inputs(_PyInterpreterFrame* frame, const std::vector<int32_t>& slots);

}  // namespace framecache
