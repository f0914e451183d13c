"""Coverage-guided fuzzing (atheris) of the guard builder and of the callback protocol.

``TARGET`` picks the programs (tests/python/fuzz_programs.py) each input is decoded into:
``guards`` (builder methods, then check/check_verbose on hostile values) or ``callbacks``
(callback results of every kind and layout). Coverage comes from the Python side the C++
reaches: the program interpreter and the hostile objects' special methods that the guards
call (the extension is built with GCC, which cannot give libFuzzer its edge counters).
Run by ``make fuzz``:

    python tests/fuzz/fuzz.py guards -atheris_runs=20000 -max_total_time=60

ends with libFuzzer's ``Done N runs in S second(s)``: N inputs tried (a crash or a
wrong result stops it and saves the input).
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))

import atheris

with atheris.instrument_imports():
    import fuzz_programs

import framecache

_PROGRAMS = {
    "guards": fuzz_programs.run_guard_program,
    "callbacks": fuzz_programs.run_callback_program,
}


def main(argv: list[str]) -> None:
    if len(argv) < 2 or argv[1] not in _PROGRAMS:
        sys.exit(f"usage: {argv[0]} {{{','.join(_PROGRAMS)}}} [libFuzzer options]")
    run_program = _PROGRAMS[argv[1]]

    def one_input(data: bytes) -> None:
        choices = fuzz_programs.BytesChoices(atheris.FuzzedDataProvider(data))
        try:
            run_program(choices)
        finally:
            framecache.reset()

    # libFuzzer reads its options from argv; the target is ours.
    atheris.Setup([argv[0], *argv[2:]], one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main(sys.argv)
