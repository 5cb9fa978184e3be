// ParsePositiveIntList (engine/tools/list_flag.h): the benchmarks' integer list flags.
#include "engine/tools/list_flag.h"

#include <cstdint>
#include <vector>

#include "gtest/gtest.h"

namespace dsinfer {
namespace {

TEST(ListFlag, ParsesCommaSeparatedPositiveIntegers) {
  const absl::StatusOr<std::vector<int64_t>> v = ParsePositiveIntList("1,8,32", "batches");
  ASSERT_TRUE(v.ok()) << v.status();
  EXPECT_EQ(*v, (std::vector<int64_t>{1, 8, 32}));
  // Empty items are skipped; values past 32 bits are kept.
  const absl::StatusOr<std::vector<int64_t>> w = ParsePositiveIntList(",4096,,8589934592,", "c");
  ASSERT_TRUE(w.ok()) << w.status();
  EXPECT_EQ(*w, (std::vector<int64_t>{4096, int64_t{8589934592}}));
}

TEST(ListFlag, RejectsItemsThatAreNotPositiveIntegers) {
  for (const char* text : {"1,x,3", "4k", "0", "-8", "1.5", "99999999999999999999"}) {
    const absl::StatusOr<std::vector<int64_t>> v = ParsePositiveIntList(text, "contexts");
    ASSERT_FALSE(v.ok()) << text;
    EXPECT_EQ(v.status().code(), absl::StatusCode::kInvalidArgument) << text;
    EXPECT_NE(v.status().message().find("--contexts: not a positive integer"),
              absl::string_view::npos)
        << v.status();
  }
}

TEST(ListFlag, EmptyListOnlyWhereAllowed) {
  for (const char* text : {"", ",", ",,"}) {
    const absl::StatusOr<std::vector<int64_t>> v = ParsePositiveIntList(text, "rows");
    ASSERT_FALSE(v.ok()) << text;
    EXPECT_EQ(v.status().message(), "--rows: empty");
    const absl::StatusOr<std::vector<int64_t>> e =
        ParsePositiveIntList(text, "contexts", /*allow_empty=*/true);
    ASSERT_TRUE(e.ok()) << e.status();
    EXPECT_TRUE(e->empty());
  }
}

}  // namespace
}  // namespace dsinfer
