// FrameAction ordering (strongest), names, FrameExecStrategy defaults and
// equality, and the Python-facing FrameExecStrategy binding.
#include <gtest/gtest.h>

#include "framecache/frame_exec_strategy.h"
#include "support.h"

namespace framecache {
namespace {

using fctest::fc;
namespace py = pybind11;

constexpr FrameAction kAll[] = {FrameAction::DEFAULT, FrameAction::RUN_ONLY, FrameAction::SKIP};

TEST(FrameAction, OrderedFromLeastToMostRestrictive) {
  EXPECT_LT(static_cast<int>(FrameAction::DEFAULT), static_cast<int>(FrameAction::RUN_ONLY));
  EXPECT_LT(static_cast<int>(FrameAction::RUN_ONLY), static_cast<int>(FrameAction::SKIP));
}

TEST(FrameAction, StrongestTable) {
  using A = FrameAction;
  EXPECT_EQ(strongest(A::DEFAULT, A::DEFAULT), A::DEFAULT);
  EXPECT_EQ(strongest(A::DEFAULT, A::RUN_ONLY), A::RUN_ONLY);
  EXPECT_EQ(strongest(A::DEFAULT, A::SKIP), A::SKIP);
  EXPECT_EQ(strongest(A::RUN_ONLY, A::RUN_ONLY), A::RUN_ONLY);
  EXPECT_EQ(strongest(A::RUN_ONLY, A::SKIP), A::SKIP);
  EXPECT_EQ(strongest(A::SKIP, A::SKIP), A::SKIP);
}

TEST(FrameAction, StrongestIsCommutativeAndIdempotent) {
  for (FrameAction a : kAll) {
    EXPECT_EQ(strongest(a, a), a) << frame_action_name(a);
    for (FrameAction b : kAll) {
      EXPECT_EQ(strongest(a, b), strongest(b, a))
          << frame_action_name(a) << " vs " << frame_action_name(b);
      // Never weaker than either side.
      EXPECT_GE(static_cast<int>(strongest(a, b)), static_cast<int>(a));
      EXPECT_GE(static_cast<int>(strongest(a, b)), static_cast<int>(b));
    }
  }
}

TEST(FrameAction, Names) {
  EXPECT_STREQ(frame_action_name(FrameAction::DEFAULT), "DEFAULT");
  EXPECT_STREQ(frame_action_name(FrameAction::RUN_ONLY), "RUN_ONLY");
  EXPECT_STREQ(frame_action_name(FrameAction::SKIP), "SKIP");
  EXPECT_STREQ(frame_action_name(static_cast<FrameAction>(42)), "?");
}

TEST(FrameExecStrategy, DefaultsAndEquality) {
  FrameExecStrategy s;
  EXPECT_EQ(s.cur_action, FrameAction::DEFAULT);
  EXPECT_EQ(s.recursive_action, FrameAction::DEFAULT);
  EXPECT_TRUE(s == FrameExecStrategy{});
  FrameExecStrategy skip_now{FrameAction::SKIP, FrameAction::DEFAULT};
  FrameExecStrategy skip_below{FrameAction::DEFAULT, FrameAction::SKIP};
  EXPECT_FALSE(skip_now == skip_below);
  EXPECT_FALSE(skip_now == s);
  EXPECT_TRUE(skip_now == (FrameExecStrategy{FrameAction::SKIP, FrameAction::DEFAULT}));
}

TEST(FrameExecStrategy, PythonBindingRoundTrip) {
  py::module_ m = fc();
  py::object FA = m.attr("FrameAction");
  py::object s = m.attr("FrameExecStrategy")(FA.attr("SKIP"), FA.attr("RUN_ONLY"));
  auto cpp = s.cast<FrameExecStrategy>();
  EXPECT_EQ(cpp.cur_action, FrameAction::SKIP);
  EXPECT_EQ(cpp.recursive_action, FrameAction::RUN_ONLY);
  EXPECT_EQ(
      py::repr(s).cast<std::string>(),
      "FrameExecStrategy(cur_action=FrameAction.SKIP, recursive_action=FrameAction.RUN_ONLY)");
  py::object d = m.attr("FrameExecStrategy")();
  EXPECT_EQ(d.cast<FrameExecStrategy>(), FrameExecStrategy{});
  EXPECT_TRUE(s.equal(m.attr("FrameExecStrategy")(FA.attr("SKIP"), FA.attr("RUN_ONLY"))));
  EXPECT_FALSE(s.equal(d));
  EXPECT_FALSE(s.equal(py::int_(2)));
  // Equal strategies hash alike, so they work as dict keys.
  EXPECT_EQ(py::hash(s),
            py::hash(m.attr("FrameExecStrategy")(FA.attr("SKIP"), FA.attr("RUN_ONLY"))));
}

}  // namespace
}  // namespace framecache
