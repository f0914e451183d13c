// The pass-through evaluator: installed only over CPython's own, runs frames as
// CPython does, removed only while it is the interpreter's evaluator.
#include <gtest/gtest.h>

#include "framecache/cpython.h"
#include "framecache/passthrough_evaluator.h"
#include "support.h"

namespace framecache {
namespace {

namespace py = pybind11;
using fctest::code_of;
using fctest::define;
using fctest::ProbeEvaluator;
using fctest::take_error;

class PassthroughEvaluatorTest : public ::testing::Test {
 protected:
  void TearDown() override {
    if (passthrough_installed()) {
      EXPECT_TRUE(passthrough_uninstall());
    }
    EXPECT_TRUE(cpy::is_default_eval_frame(cpy::get_eval_frame(PyInterpreterState_Get())));
  }
};

TEST_F(PassthroughEvaluatorTest, RunsFramesAsCPythonDoes) {
  py::object fib = define(
      "def fib(n):\n"
      "    return n if n < 2 else fib(n - 1) + fib(n - 2)\n",
      "fib");
  ASSERT_TRUE(passthrough_install());
  EXPECT_TRUE(passthrough_installed());
  EXPECT_EQ(fib(20).cast<int>(), 6765);
  ASSERT_TRUE(passthrough_uninstall());
  EXPECT_FALSE(passthrough_installed());
  EXPECT_EQ(fib(10).cast<int>(), 55);
}

TEST_F(PassthroughEvaluatorTest, ErrorsPassThrough) {
  py::object fails = define(
      "def fails(depth):\n"
      "    if depth == 0:\n"
      "        raise KeyError('bottom')\n"
      "    return fails(depth - 1)\n",
      "fails");
  ASSERT_TRUE(passthrough_install());
  EXPECT_THROW(fails(5), py::error_already_set);
}

TEST_F(PassthroughEvaluatorTest, NeverReplacesAnotherEvaluatorNorLeavesFromUnderOne) {
  py::object probe_target = define("def target():\n    return 1\n", "target");
  {
    ProbeEvaluator probe(code_of(probe_target), &ProbeEvaluator::run_normally);
    EXPECT_FALSE(passthrough_install());
    EXPECT_NE(take_error().find("another frame evaluator"), std::string::npos);
    EXPECT_FALSE(passthrough_installed());
  }
  ASSERT_TRUE(passthrough_install());
  {
    // The probe chains to the evaluator installed before it: this one.
    ProbeEvaluator probe(code_of(probe_target), &ProbeEvaluator::run_normally);
    EXPECT_EQ(probe_target().cast<int>(), 1);
    EXPECT_EQ(probe.frames_seen(), 1);
    EXPECT_FALSE(passthrough_uninstall());
    EXPECT_NE(take_error().find("installed over the pass-through"), std::string::npos);
  }
  EXPECT_TRUE(passthrough_installed());
}

}  // namespace
}  // namespace framecache
