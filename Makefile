# framecache's developer commands. `make help` lists them.
PYTHON ?= python3
PIP := $(PYTHON) -m pip
# pip's advice is not this project's output: no "new release of pip" notice, no warning
# about running as root (CI and containers do).
export PIP_DISABLE_PIP_VERSION_CHECK := 1
export PIP_ROOT_USER_ACTION := ignore
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# pybind11's CMake directory, asked by the shell when a recipe runs, not by make when it reads
# this file: on a fresh machine pybind11 is not installed yet then (`install` and `deps` do it).
PYBIND11_DIR = $$($(PYTHON) -m pybind11 --cmakedir)
JOBS ?= 2
# Strict flags for every build the tests use (CI's flags).
STRICT := -DFRAMECACHE_WERROR=ON -DFRAMECACHE_ASSERTIONS=ON
PIP_STRICT := -Ccmake.define.FRAMECACHE_WERROR=ON -Ccmake.define.FRAMECACHE_ASSERTIONS=ON
# Every build the tests use is a unity build with one translation unit per target (batch
# size 0), as pip installs are (pyproject.toml): each source parses pybind11 (the tests,
# gtest too) and instantiates the same templates, which was most of a per-source build. On
# 2 cores: RelWithDebInfo with the torch part 384 -> 121 CPU s, ASan 352 -> 67, Debug -O0
# 266 (with the PCH) -> 33. `make dev` stays per-source, for incremental rebuilds.
UNITY := -DCMAKE_UNITY_BUILD=ON -DCMAKE_UNITY_BUILD_BATCH_SIZE=0
# The torch CI tests against (test-py checks that it is the one imported); the supported
# range is declared in pyproject.toml.
TORCH_VERSION := 2.13.0
TORCH := torch==$(TORCH_VERSION)
# The model zoo's libraries, pinned: torchvision's release for this torch (it requires
# torch==$(TORCH_VERSION), which the CPU build satisfies, so nothing pulls another torch).
ZOO := "torchvision==0.28.0" "timm==1.0.31" "transformers==5.24.0"

.PHONY: help install demo deps test test-cpp test-py test-pythons dev bench bench-cpp bench-guards lint format sanitize clean
.PHONY: sanitize-ci lsan-cpp fuzz soak stress

help:  ## List the targets
	@grep -E '^[a-z%.-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-18s %s\n", $$1, $$2}'

# No build isolation: when torch is installed, the optional framecache._torch_C fast path is
# built against it (an isolated build cannot import torch).
install:  ## pip install the package (with its compiled core)
	$(PIP) install -q "scikit-build-core>=0.10" "pybind11>=2.13" cmake ninja
	$(PIP) install --no-build-isolation .

demo: install  ## Install, then run the demo: the hook compiling and caching a function
	$(PYTHON) -m framecache

deps:  ## Install what the tests need: GoogleTest, redis-server (apt) and Python test packages (pip)
	@if [ ! -f /usr/include/gtest/gtest.h ] || [ ! -f /usr/include/benchmark/benchmark.h ] || ! command -v redis-server >/dev/null; then \
	  $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq libgtest-dev libbenchmark-dev redis-server; fi
	$(PIP) install -q "pybind11>=2.13" "scikit-build-core>=0.10" cmake ninja "pytest>=8" "hypothesis>=6" \
	  "ruff>=0.6" "pytest-benchmark>=4" "pytest-xdist>=3" "redis>=5" $(TORCH)
	$(PIP) install -q --only-binary=atheris "atheris==3.0.0"  # the last release with a cp311 wheel
	$(PIP) install -q $(ZOO)  # the model zoo's libraries (test_model_zoo, test_attr_hooks)

# One line per suite (other suites add their own line). Each stage runs under .ci/stage,
# which logs its wall and CPU time to build/stage-times.tsv; .ci/run prints the table.
# One C++ build per Python and kind: test-py installs from test-cpp's build, and every
# pytest run spreads over PYTEST_JOBS workers (see .ci/pytest-passes).
STAGE := .ci/stage
test:  ## Install what tests need, then run every test (ctest, pytest on 3.11-3.13, sanitizers, fuzzing)
	@mkdir -p build && rm -f $${FRAMECACHE_STAGE_LOG:-build/stage-times.tsv}
	$(STAGE) deps $(MAKE) --no-print-directory deps
	$(STAGE) test-cpp $(MAKE) --no-print-directory test-cpp
	$(STAGE) test-py $(MAKE) --no-print-directory test-py
	$(STAGE) test-pythons $(MAKE) --no-print-directory test-pythons
	$(STAGE) sanitize-ci $(MAKE) --no-print-directory sanitize-ci
	$(STAGE) sanitize-pythons $(MAKE) --no-print-directory sanitize-pythons
	$(STAGE) fuzz $(MAKE) --no-print-directory fuzz

# pytest's workers (pytest-xdist) in every pytest run of the test targets; 1 runs serially.
PYTEST_JOBS ?= 2

# build/test serves both test-cpp and test-py: RelWithDebInfo, strict, with the C++ tests.
# Its debug information is line tables (-g1, as in the sanitizer builds): enough for
# symbolized backtraces, and the build takes 81 CPU s instead of 109 with -g.
TEST_RELWITHDEBINFO := -O2 -g1 -DNDEBUG
test-cpp:  ## Build with -Werror and assertions, run the GoogleTest suite via ctest
	cmake -S . -B build/test -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo $(STRICT) $(UNITY) \
	  -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="$(TEST_RELWITHDEBINFO)" \
	  -DFRAMECACHE_BUILD_TESTS=ON -Dpybind11_DIR="$(PYBIND11_DIR)" \
	  -DPython_EXECUTABLE="$$($(PYTHON) -c 'import sys; print(sys.executable)')"
	$(STAGE) test-cpp:build cmake --build build/test -j $(JOBS)
	$(STAGE) test-cpp:ctest ctest --test-dir build/test --output-on-failure -j $(JOBS)

# The install users run (pip, scikit-build-core, the wheel's files, the pytest11 entry
# point), from test-cpp's build directory: scikit-build-core configures build/test with the
# same flags, so after test-cpp it compiles nothing (alone, it builds everything there).
# No build isolation: torch (installed by `deps`) must be importable at build time for the
# optional framecache._torch_C fast path to be built and tested. `make install` is the
# plain Release install.
PIP_TEST := --no-build-isolation $(PIP_STRICT) -Cbuild-dir=build/test -Ccmake.build-type=RelWithDebInfo \
  "-Ccmake.define.CMAKE_CXX_FLAGS_RELWITHDEBINFO=$(TEST_RELWITHDEBINFO)" -Ccmake.define.FRAMECACHE_BUILD_TESTS=ON
test-py:  ## pip install (test-cpp's build) with -Werror and assertions, run pytest
	$(STAGE) test-py:pip-install $(PIP) install -q $(PIP_TEST) .
	$(PYTHON) -c "import torch, framecache; v = torch.__version__.split('+')[0]; \
	  assert v == '$(TORCH_VERSION)', f'CI tests torch $(TORCH_VERSION), found {v}'; print('torch', torch.__version__)"
	$(STAGE) test-py:pytest .ci/pytest-passes "" $(PYTHON) tests/python

# The other supported Pythons (3.12, 3.13). torch==2.13.0 ships a CPU wheel for 3.11
# only here; for these an install would pull a multi-GB CUDA build, so they run the
# torch-free suite: one strict build per version (module + GoogleTest) in
# build/py<V>, staged in build/py<V>/pkg, its tools in a venv build/venv-<V>.
# .ci/find-python locates each interpreter (pyenv) and fails if one is missing.
# These builds check correctness, not speed: -O0 with assertions, a unity build (no
# precompiled header: with one translation unit per target it only adds its own compile,
# 33 -> 41 CPU s).
EXTRA_PYTHONS ?= 3.12 3.13
PY_TEST_DEPS := "pybind11>=2.13" "pytest>=8" "hypothesis>=6" "pytest-xdist>=3"

test-pythons: $(addprefix test-python-,$(EXTRA_PYTHONS))  ## ctest + torch-free pytest on each of EXTRA_PYTHONS

# Precious: make would otherwise delete this pattern-rule stamp as an intermediate file,
# and every later run would remake the venv and rebuild from scratch.
.PRECIOUS: build/venv-%/ready
build/venv-%/ready:
	@py=$$(.ci/find-python $*) && echo "venv for $$py" && $$py -m venv --clear build/venv-$*
	build/venv-$*/bin/python -m pip install -q $(PY_TEST_DEPS)
	touch $@

test-python-%: build/venv-%/ready  ## e.g. test-python-3.12: strict build, ctest, pytest -m "not torch"
	cmake -S . -B build/py$* -G Ninja -DCMAKE_BUILD_TYPE=Debug -DCMAKE_CXX_FLAGS_DEBUG=-O0 $(STRICT) \
	  $(UNITY) -DFRAMECACHE_BUILD_TESTS=ON -DFRAMECACHE_STAGE_DIR=$(CURDIR)/build/py$*/pkg \
	  -DPython_EXECUTABLE=$(CURDIR)/build/venv-$*/bin/python \
	  -Dpybind11_DIR="$$(build/venv-$*/bin/python -m pybind11 --cmakedir)"
	$(STAGE) test-python-$*:build cmake --build build/py$* -j $(JOBS)
	$(STAGE) test-python-$*:ctest ctest --test-dir build/py$* --output-on-failure -j $(JOBS)
	PYTHONPATH=$(CURDIR)/build/py$*/pkg $(STAGE) test-python-$*:pytest \
	  .ci/pytest-passes "not torch" build/venv-$*/bin/python tests/python -p no:cacheprovider

dev:  ## Incremental build staged in build/dev/pkg (use PYTHONPATH=build/dev/pkg)
	cmake -S . -B build/dev -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo $(STRICT) \
	  -DFRAMECACHE_STAGE_DIR=$(CURDIR)/build/dev/pkg -Dpybind11_DIR="$(PYBIND11_DIR)"
	cmake --build build/dev -j $(JOBS)

bench: install  ## Run the Python benchmarks (runtime overhead, guard lookup vs torch)
	$(PYTHON) benchmarks/run_all.py

# The guard benchmarks need a Release build with the torch part; it is staged in
# build/rel/pkg (nothing is installed), then guard_lookup.py (framecache vs torch, both
# views) and the Google Benchmark of single leaves and accessors run on it.
REL = -G Ninja -DCMAKE_BUILD_TYPE=Release -DFRAMECACHE_BUILD_BENCHMARKS=ON \
  -DFRAMECACHE_STAGE_DIR=$(CURDIR)/build/rel/pkg -Dpybind11_DIR="$(PYBIND11_DIR)"
bench-guards:  ## Release build, then guard_lookup.py vs torch and the C++ guard microbenchmarks
	cmake -S . -B build/rel $(REL)
	cmake --build build/rel -j $(JOBS)
	PYTHONPATH=$(CURDIR)/build/rel/pkg $(PYTHON) benchmarks/guard_lookup.py --json build/rel/guard_lookup.json
	build/rel/benchmarks/cpp/framecache_bench_guards --benchmark_repetitions=7 \
	  --benchmark_report_aggregates_only=true

lint:  ## ruff check + format check
	$(PYTHON) -m ruff check python tests/python tests/stress tests/fuzz benchmarks
	$(PYTHON) -m ruff format --check python tests/python tests/stress tests/fuzz benchmarks

format:  ## Apply ruff formatting
	$(PYTHON) -m ruff format python tests/python tests/stress tests/fuzz benchmarks

# The sanitizer build runs the C++ tests and the torch-free Python tests with
# ASan + UBSan (Debug, -fsanitize=address,undefined, UB fatal). CPython itself
# is not instrumented, so python gets the runtimes preloaded (ASan must come
# first in the process). PYTHONMALLOC=malloc routes Python objects through
# ASan's malloc, so a reference-count bug in framecache shows up as a
# use-after-free rather than as silent pymalloc reuse. Leak detection is off:
# CPython and pybind11 keep allocations until exit on purpose (the test binary
# sets the same defaults itself, see tests/cpp/main.cpp).
# detect_stack_use_after_return=1 keeps instrumented frames' locals on ASan's fake stack:
# on 3.12+ a daemon thread that wakes during finalization is ended by pthread_exit, whose
# forced unwind leaves the abandoned frames' redzones poisoned on the real stack, and
# ASan's own __asan_handle_no_return then tripped over them ("CHECK failed ...
# kCurrentStackFrameMagic", 4 of 15 runs of test_shutdown's daemon tests; 0 of 15 with
# it). It also finds uses of a returned frame's locals.
ASAN_LIB = $(shell $(CXX) -print-file-name=libasan.so)
UBSAN_LIB = $(shell $(CXX) -print-file-name=libubsan.so)
SAN_ENV := ASAN_OPTIONS=detect_leaks=0:abort_on_error=1:detect_stack_use_after_return=1 \
  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 PYTHONMALLOC=malloc
# Another Python: make sanitize PYTHON=build/venv-3.12/bin/python SAN_DIR=build/asan-3.12
# -g1 (line tables) is enough for the sanitizers' symbolized stacks and builds a little
# faster than -g. No precompiled header here: under ASan code generation dominates, and the
# 126 MB header made a source without pybind11 (guard_manager.cpp) 5x slower to compile
# (1.5 -> 8.6 CPU s) while saving 5% on a binding source.
SAN_DIR ?= build/asan
SAN_STEP = $(STAGE) $(notdir $(SAN_DIR))
sanitize:  ## Build with ASan+UBSan, run ctest and pytest under them
	cmake -S . -B $(SAN_DIR) -G Ninja -DCMAKE_BUILD_TYPE=Debug -DCMAKE_CXX_FLAGS_DEBUG="-O0 -g1" $(STRICT) $(UNITY) \
	  -DFRAMECACHE_SANITIZE=ON -DFRAMECACHE_BUILD_TESTS=ON \
	  -DFRAMECACHE_STAGE_DIR=$(CURDIR)/$(SAN_DIR)/pkg -Dpybind11_DIR="$(PYBIND11_DIR)" \
	  -DPython_EXECUTABLE="$$($(PYTHON) -c 'import sys; print(sys.executable)')"
	$(SAN_STEP):build cmake --build $(SAN_DIR) -j $(JOBS)
	$(SAN_ENV) $(SAN_STEP):ctest ctest --test-dir $(SAN_DIR) --output-on-failure -j $(JOBS)
	PYTEST_LD_PRELOAD="$(ASAN_LIB) $(UBSAN_LIB)" $(SAN_ENV) FRAMECACHE_SANITIZER_BUILD=1 \
	  PYTHONPATH=$(CURDIR)/$(SAN_DIR)/pkg $(SAN_STEP):pytest \
	  .ci/pytest-passes "not torch" $(PYTHON) tests/python -p no:cacheprovider

# CI's sanitizer pass: `sanitize` (ctest + torch-free pytest under ASan + UBSan), then
# LeakSanitizer over the C++ test binary, timed. LSan runs with a short allocation stack
# (malloc_context_size): a block whose allocating frames are all inside libpython is
# CPython's (interned strings, type caches, what Py_Finalize keeps on purpose) and is
# suppressed by module name; a block that framecache's own code allocated (an entry, a
# guard node, an ExtraState, a ThreadState) has framecache frames on top and is reported.
# LSan is not run over pytest: python itself is not built with ASan and leaks by design
# at exit; framecache's Python-object leaks are checked by refcounts and weakrefs instead
# (tests/python/test_lifetime.py, test_soak.py).
LSAN_ENV := ASAN_OPTIONS=detect_leaks=1:malloc_context_size=6:abort_on_error=0 \
  LSAN_OPTIONS=suppressions=$(CURDIR)/tests/sanitizers/lsan.supp:print_suppressions=0 \
  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 PYTHONMALLOC=malloc
sanitize-ci:  ## CI: the sanitizer suite, then LeakSanitizer over the C++ tests; prints its time
	@start=$$(date +%s); \
	$(MAKE) --no-print-directory sanitize && $(MAKE) --no-print-directory lsan-cpp; rc=$$?; \
	echo "sanitize-ci: $$(( $$(date +%s) - start )) s (build + ctest + pytest + LSan)"; exit $$rc

# The sanitizer suite on the other supported Pythons, each against its venv (see
# test-pythons): their internals differ (each version's _PyInterpreterFrame layout; dict
# watchers instead of dict versions from 3.12), so 3.11's clean run does not vouch for them.
sanitize-pythons: $(addprefix sanitize-python-,$(EXTRA_PYTHONS))  ## ASan+UBSan ctest + torch-free pytest on each of EXTRA_PYTHONS

sanitize-python-%: build/venv-%/ready  ## e.g. sanitize-python-3.13
	$(MAKE) --no-print-directory sanitize PYTHON=$(CURDIR)/build/venv-$*/bin/python SAN_DIR=build/asan-$*

lsan-cpp:  ## LeakSanitizer over the C++ test binary of the sanitizer build (after `sanitize`)
	$(LSAN_ENV) $(SAN_STEP):lsan $(SAN_DIR)/tests/cpp/framecache_cpp_tests --gtest_brief=1

# A bounded coverage-guided pass (atheris) over the guard builder and the callback
# protocol, against the framecache Python imports (the installed one in CI; locally
# PYTHONPATH=build/dev/pkg). Each harness prints how many inputs it tried (libFuzzer's
# "Done N runs"); a crash or a wrong result stops it, the input saved as build/fuzz/crash-*.
# The two harnesses run side by side, one core each.
FUZZ_SECONDS ?= 60
fuzz:  ## Bounded fuzzing pass: FUZZ_SECONDS per harness (guards, callbacks, side by side); prints input counts
	@mkdir -p build/fuzz
	@pids=""; for h in guards callbacks; do \
	  echo "fuzz_$$h: $(FUZZ_SECONDS) s, log build/fuzz/fuzz_$$h.log"; \
	  $(PYTHON) tests/fuzz/fuzz.py $$h -max_total_time=$(FUZZ_SECONDS) -print_final_stats=0 \
	    -artifact_prefix=build/fuzz/ -rss_limit_mb=4096 >build/fuzz/fuzz_$$h.log 2>&1 & pids="$$pids $$!"; \
	done; \
	rc=0; set -- $$pids; for h in guards callbacks; do \
	  log=build/fuzz/fuzz_$$h.log; \
	  if ! wait $$1; then echo "fuzz_$$h failed:"; tail -n 60 $$log; rc=1; \
	  elif ! grep -E "^Done [0-9]+ runs" $$log | sed "s/^/fuzz_$$h: /" | grep .; then tail -n 20 $$log; rc=1; fi; \
	  shift; \
	done; exit $$rc

soak:  ## Leak soak: 1,000,000 calls each with a plain callback and with framecache.compile (eager)
	$(PYTHON) tests/stress/soak.py --backend callback --calls 1000000
	$(PYTHON) tests/stress/soak.py --backend eager --calls 1000000

stress:  ## Thread stress: 8 threads, callback and framecache.compile (eager)
	$(PYTHON) tests/stress/thread_stress.py --backend callback --threads 8 --iterations 20000
	$(PYTHON) tests/stress/thread_stress.py --backend eager --threads 8 --iterations 1000

clean:  ## Remove build directories
	rm -rf build
