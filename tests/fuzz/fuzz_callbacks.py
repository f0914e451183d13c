"""Coverage-guided fuzzing of the callback protocol (atheris).

Each input is a callback program (tests/python/fuzz_programs.py). Coverage comes from the
Python side the C++ reaches: the program interpreter and the hostile objects' special
methods that the guards call (the extension is built with GCC, which cannot give
libFuzzer its edge counters). Run by ``make fuzz``:

    python tests/fuzz/fuzz_callbacks.py -atheris_runs=20000 -max_total_time=60

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


def one_input(data: bytes) -> None:
    choices = fuzz_programs.BytesChoices(atheris.FuzzedDataProvider(data))
    try:
        fuzz_programs.run_callback_program(choices)
    finally:
        framecache.reset()


if __name__ == "__main__":
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()
