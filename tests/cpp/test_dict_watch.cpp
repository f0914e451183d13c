// DICT_VERSION's tags on CPython 3.12+ (guards/dict_watch.h): a new tag on
// every change, the same tag while unchanged, and no entry left once a dict is
// gone. On 3.11 the tags are ma_version_tag and this file holds no test.
#include <gtest/gtest.h>

#include <algorithm>
#include <vector>

#include "framecache/cpython.h"
#include "support.h"

#if PY_VERSION_HEX >= 0x030C0000

namespace framecache {
namespace {

namespace py = pybind11;
using guards::dict_watch::tag;
using guards::dict_watch::watched_count;

TEST(DictWatch, SameTagWhileUnchangedNewTagOnEveryChange) {
  py::dict d;
  d["a"] = 1;
  const uint64_t first = tag(d.ptr());
  ASSERT_NE(first, 0u) << "a dict watcher slot must be available";
  EXPECT_EQ(tag(d.ptr()), first);
  std::vector<uint64_t> seen{first};
  const char* changes[] = {"d['a'] = 2", "d['b'] = 3", "del d['b']", "d.pop('a')",
                           "d.update(x=1)", "d.clear()", "d.setdefault('y', 0)"};
  py::dict ns;
  ns["d"] = d;
  for (const char* change : changes) {
    py::exec(change, ns);
    const uint64_t t = tag(d.ptr());
    EXPECT_NE(t, 0u) << change;
    for (uint64_t before : seen) EXPECT_NE(t, before) << change;
    EXPECT_EQ(tag(d.ptr()), t) << change;
    seen.push_back(t);
  }
}

TEST(DictWatch, DifferentDictsNeverShareATagAndDeadOnesLeaveTheTable) {
  const size_t before = watched_count();
  std::vector<uint64_t> tags;
  for (int i = 0; i < 300; ++i) {  // enough to grow the table, and to recycle dicts
    py::dict d;
    d["i"] = i;
    tags.push_back(tag(d.ptr()));
  }
  std::sort(tags.begin(), tags.end());
  EXPECT_EQ(std::adjacent_find(tags.begin(), tags.end()), tags.end());
  EXPECT_EQ(watched_count(), before);
  py::list keep;
  for (int i = 0; i < 100; ++i) {
    py::dict d;
    tag(d.ptr());
    keep.append(d);
  }
  EXPECT_EQ(watched_count(), before + 100);
  for (py::handle d : keep) EXPECT_NE(tag(d.ptr()), 0u);
  keep = py::list();
  EXPECT_EQ(watched_count(), before);
}

TEST(DictWatch, KeepsAPendingException) {
  py::dict d;
  PyErr_SetString(PyExc_ValueError, "pending");
  EXPECT_NE(tag(d.ptr()), 0u);
  ASSERT_TRUE(PyErr_ExceptionMatches(PyExc_ValueError));
  PyErr_Clear();
}

}  // namespace
}  // namespace framecache

#endif
