// The PEP 523 hook: installing it, chaining to the evaluator it replaced, and
// the per-thread callback that drives it.
#pragma once

#include <Python.h>

#include <cstdint>

#include "framecache/ref.h"

namespace framecache {

// Sets this thread's callback: None (off), False (run-only) or a callable
// (compile mode). `callback` is borrowed. Returns the previous callback (new
// reference), or null with TypeError for anything else. `tag` is the options
// tag entries compiled from now on carry, and the only tag lookup accepts
// (0: untagged; see ThreadState::tag).
Ref set_eval_frame_callback(PyObject* callback, uint64_t tag = 0);
// This thread's callback (new reference; None when never set).
Ref get_eval_frame_callback();
// This thread's options tag (0 when never set).
uint64_t get_eval_frame_tag();
// True while framecache's evaluator is the interpreter's.
bool hook_installed();
// The category of the recompile-limit warning (borrowed; default RuntimeWarning).
void set_recompile_warning_category(PyObject* category);

}  // namespace framecache
