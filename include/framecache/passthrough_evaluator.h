// A PEP 523 evaluator that does nothing but hand each frame to CPython's own.
//
// Installing any frame evaluator costs Python code something framecache cannot
// avoid: CPython then stops inlining Python-to-Python calls (each call goes
// through the C stack and a fresh evaluation loop) and its specialised call
// instructions deoptimise. This evaluator is that cost and nothing more, so
// benchmarks/python_overhead.py times it in the same process as framecache's
// hook: the floor under the hook's own work. It is a measuring instrument,
// not part of the runtime; framecache's hook chains to it like to any other
// evaluator installed before it.
#pragma once

namespace framecache {

// Makes it the interpreter's evaluator. Returns false with RuntimeError set
// when another one is installed (framecache's hook included): it never
// replaces an evaluator someone else relies on.
bool passthrough_install();
// Puts CPython's own evaluator back. Returns false with RuntimeError set when
// it is not the interpreter's evaluator (another was installed over it).
bool passthrough_uninstall();
// Whether it is the interpreter's evaluator now.
bool passthrough_installed();

}  // namespace framecache
