// The fan-out window with injected time: what is counted, what falls out of the window,
// and the bounds on memory.
#include <gtest/gtest.h>

#include "cryptnono/enforcer/fanout.h"

namespace cryptnono::enforcer {
namespace {

constexpr uint64_t kSecond = 1'000'000'000ull;

Destination dest(uint32_t n, uint16_t port = 443) {
  Destination d;
  d.address.bytes[0] = 8;
  d.address.bytes[1] = static_cast<uint8_t>(n >> 16);
  d.address.bytes[2] = static_cast<uint8_t>(n >> 8);
  d.address.bytes[3] = static_cast<uint8_t>(n);
  d.port = port;
  return d;
}

FanoutLimits limits(uint64_t window_s, size_t procs = 100, size_t dests = 100) {
  return FanoutLimits{window_s * kSecond, procs, dests};
}

TEST(Fanout, CountsDistinctAddressPortPairs) {
  FanoutTracker t(limits(30));
  ProcessKey p{100, 5};
  uint64_t now = 1000 * kSecond;
  EXPECT_EQ(t.record(p, dest(1), now), 1u);
  EXPECT_EQ(t.record(p, dest(1), now + 1), 1u);       // same destination again
  EXPECT_EQ(t.record(p, dest(1, 80), now + 2), 2u);   // same address, other port
  EXPECT_EQ(t.record(p, dest(2), now + 3), 3u);
  Destination v6;
  v6.address.v6 = true;
  v6.address.bytes[0] = 0x26;
  v6.port = 443;
  EXPECT_EQ(t.record(p, v6, now + 4), 4u);
  // Another process (or the same pid with another start time) counts on its own.
  EXPECT_EQ(t.record(ProcessKey{100, 6}, dest(1), now + 5), 1u);
  EXPECT_EQ(t.record(ProcessKey{101, 5}, dest(1), now + 6), 1u);
  EXPECT_EQ(t.processes(), 3u);
}

TEST(Fanout, DestinationsOlderThanTheWindowAreNotCounted) {
  FanoutTracker t(limits(10));
  ProcessKey p{7, 1};
  uint64_t t0 = 500 * kSecond;
  EXPECT_EQ(t.record(p, dest(1), t0), 1u);
  EXPECT_EQ(t.record(p, dest(2), t0 + 4 * kSecond), 2u);
  // 10 s after the first: it is out (the window is (now - 10 s, now]); the second is in.
  EXPECT_EQ(t.record(p, dest(3), t0 + 10 * kSecond), 2u);
  // Seeing an old destination again refreshes it: it counts from its latest connect.
  EXPECT_EQ(t.record(p, dest(2), t0 + 13 * kSecond), 2u);  // 2 (refreshed) and 3
  // At 22 s the window starts after 12 s: 3 (seen at 10 s) is out, 2 (refreshed at 13 s) in.
  EXPECT_EQ(t.record(p, dest(4), t0 + 22 * kSecond), 2u);
  // At 23.5 s, 2 is out as well: 4 and 5 remain.
  EXPECT_EQ(t.record(p, dest(5), t0 + 23'500'000'000ull), 2u);
}

TEST(Fanout, TheWindowLengthIsTheOneConfigured) {
  // The same connects, two windows: only the longer one sees all three.
  for (uint64_t window : {5u, 60u}) {
    FanoutTracker t(limits(window));
    ProcessKey p{9, 9};
    uint64_t t0 = 100 * kSecond;
    t.record(p, dest(1), t0);
    t.record(p, dest(2), t0 + 20 * kSecond);
    size_t n = t.record(p, dest(3), t0 + 40 * kSecond);
    EXPECT_EQ(n, window == 60 ? 3u : 1u) << window;
  }
}

TEST(Fanout, ProcessesWithAnEmptyWindowAreForgotten) {
  FanoutTracker t(limits(10));
  uint64_t t0 = 100 * kSecond;
  t.record(ProcessKey{1, 1}, dest(1), t0);
  t.record(ProcessKey{2, 2}, dest(1), t0 + 5 * kSecond);
  EXPECT_EQ(t.processes(), 2u);
  t.expire(t0 + 11 * kSecond);  // process 1's last connect is out of the window
  EXPECT_EQ(t.processes(), 1u);
  t.record(ProcessKey{3, 3}, dest(1), t0 + 16 * kSecond);  // record() expires as well
  EXPECT_EQ(t.processes(), 1u);
  EXPECT_EQ(t.process_evictions(), 0u);  // forgetting an idle process is not an eviction
  t.forget(ProcessKey{3, 3});
  EXPECT_EQ(t.processes(), 0u);
  t.forget(ProcessKey{3, 3});  // twice is harmless
}

TEST(Fanout, TrackedProcessesAreBoundedLeastRecentlyActiveEvictedFirst) {
  FanoutTracker t(limits(60, /*procs=*/3, /*dests=*/100));
  uint64_t now = 100 * kSecond;
  for (uint32_t pid = 1; pid <= 3; ++pid) t.record(ProcessKey{pid, 1}, dest(pid), now + pid);
  t.record(ProcessKey{1, 1}, dest(50), now + 10);  // 1 is now the most recent
  t.record(ProcessKey{4, 1}, dest(1), now + 11);   // evicts 2, the least recent
  EXPECT_EQ(t.processes(), 3u);
  EXPECT_EQ(t.process_evictions(), 1u);
  EXPECT_EQ(t.record(ProcessKey{1, 1}, dest(51), now + 12), 3u);  // 1 kept its state
  EXPECT_EQ(t.record(ProcessKey{2, 1}, dest(2), now + 13), 1u);   // 2 starts afresh (evicts 3)
  EXPECT_EQ(t.process_evictions(), 2u);
}

TEST(Fanout, DestinationsPerProcessAreBoundedOldestEvictedFirst) {
  FanoutTracker t(limits(60, 10, /*dests=*/4));
  ProcessKey p{1, 1};
  uint64_t now = 100 * kSecond;
  for (uint32_t i = 1; i <= 4; ++i) EXPECT_EQ(t.record(p, dest(i), now + i), i);
  EXPECT_EQ(t.record(p, dest(1), now + 5), 4u);  // refresh 1: 2 is now the oldest
  EXPECT_EQ(t.record(p, dest(5), now + 6), 4u);  // evicts 2
  EXPECT_EQ(t.destination_evictions(), 1u);
  EXPECT_EQ(t.record(p, dest(1), now + 7), 4u);  // 1 is still there
  EXPECT_EQ(t.destination_evictions(), 1u);
  EXPECT_EQ(t.record(p, dest(2), now + 8), 4u);  // 2 was evicted: new again, evicts 3
  EXPECT_EQ(t.destination_evictions(), 2u);
}

TEST(Fanout, ManyProcessesAndDestinationsStayWithinTheBounds) {
  FanoutTracker t(limits(30, 64, 16));
  uint64_t now = 100 * kSecond;
  for (uint32_t i = 0; i < 100000; ++i) {
    size_t n = t.record(ProcessKey{i % 1000, 1}, dest(i), now + i);
    ASSERT_LE(n, 16u);
    ASSERT_LE(t.processes(), 64u);
  }
  EXPECT_GT(t.process_evictions(), 0u);
}

}  // namespace
}  // namespace cryptnono::enforcer
