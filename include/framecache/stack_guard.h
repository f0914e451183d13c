// Guarding the C stack of Python calls that go through the hook.
//
// CPython 3.11+ runs a Python-to-Python call inside the same C call of the
// evaluator, so plain Python recursion uses no C stack and is bounded only by
// sys.setrecursionlimit. With a PEP 523 evaluator installed every call leaves
// the evaluator and comes back through the hook: each Python frame then costs
// a few hundred bytes of C stack, and `rec(20000)` under a raised recursion
// limit overflows an 8 MiB stack (SIGSEGV) where plain Python does not. The
// hook checks, before it handles any frame, that the thread's C stack still
// has a safety margin left, and raises RecursionError otherwise: a deep
// recursion through the hook fails as too deep a recursion, never as a crash.
// (3.12+ count C recursion themselves, but Py_C_RECURSION_LIMIT is a count of
// calls, not of bytes, and does not see the hook's own frames.)
#pragma once

#include <cstdint>

namespace framecache::stack {

// The lowest address the calling thread's stack may reach before the hook
// refuses another frame, computed once per thread (0: not computed yet, 1:
// unknown, never refuse). Stacks grow down on every platform framecache
// builds for. Initial-exec TLS: read without a __tls_get_addr call or a TLS
// wrapper (the hook reads it for every Python call); a plain word needs no
// dynamic initialisation.
extern __thread uintptr_t t_limit __attribute__((tls_model("initial-exec")));
uintptr_t compute_limit() noexcept;

// The current stack pointer. Read with one instruction where the platform
// allows: __builtin_frame_address(0) would make the calling function set up
// a frame pointer, which the hook's lean entry otherwise does without.
inline uintptr_t stack_address() noexcept {
#if defined(__x86_64__)
  uintptr_t sp;
  asm volatile("mov %%rsp, %0" : "=r"(sp));
  return sp;
#elif defined(__aarch64__)
  uintptr_t sp;
  asm volatile("mov %0, sp" : "=r"(sp));
  return sp;
#else
  return reinterpret_cast<uintptr_t>(__builtin_frame_address(0));
#endif
}

// True when the calling thread has used its C stack down to the margin.
inline bool low() noexcept {
  uintptr_t limit = t_limit;
  if (limit == 0) limit = compute_limit();
  return stack_address() < limit;
}

// low() without computing the limit: also true while it is not computed yet
// (then the caller's slower path calls low()). For the hook's lean entry,
// which must make no call that returns to it.
inline bool low_or_unknown() noexcept {
  const uintptr_t limit = t_limit;
  return limit == 0 || stack_address() < limit;
}

// Sets RecursionError saying the C stack is nearly exhausted.
void raise_exhausted() noexcept;

}  // namespace framecache::stack
